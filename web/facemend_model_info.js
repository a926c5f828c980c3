// FaceMend: show what a chosen model file is (architecture, licence, parameters, controls) on
// the node, as soon as the file is picked, before anything runs.
//
// Which combos are model pickers is declared by the Python schema: an input whose options carry
// `facemend_model_kind` (set from `In(model_kind=...)`). The text comes from the pack's server
// route GET /facemend/model_info?kind=...&name=..., which only reads files listed in that model
// folder. Only official extension hooks are used; per-node handlers are chained on the node
// instance, never on a prototype.
//
// Controls that the connected model does not take are greyed out: a fidelity/strength widget on a
// node whose `model` input comes from a loader is disabled and relabelled "(n/a: <model>)" when
// the route's `controls` for the loader's file do not include it. The value is kept (it is still
// saved and sent; the node ignores it and says so in the log).

const { app } = window.comfyAPI.app;
const { api } = window.comfyAPI.api;

const EXTENSION = "FaceMend.ModelInfo";
const INFO_WIDGET = "facemend_model_info";
const INFO_KINDS = new Set(["facerestore_models", "refusion"]);

/** Widgets that are model controls: node type -> {widget name: control it drives}. A widget is
 * applicable when the model-info `controls` of the model wired into the node include it. */
export const CONTROL_WIDGETS = {
  FaceMendCodebookRestore: { fidelity: "fidelity", per_face_fidelity: "fidelity" },
  FaceMendCSSFTModulate: { strength: "strength" },
  FaceMendGPENRestore: { strength: "strength", per_face_strength: "strength", normalize: "normalize" },
  FaceMendRestoreFaces: { fidelity: "fidelity", strength: "strength" },
};

/** nodeType name -> [[inputName, kind], ...] for node types with model-file combos. */
const modelInputsByType = new Map();

/** Model-file combos declared in a node definition from /object_info. */
export function modelInputs(nodeData) {
  const found = [];
  for (const group of ["required", "optional"]) {
    for (const [name, spec] of Object.entries(nodeData?.input?.[group] ?? {})) {
      const kind = Array.isArray(spec) ? spec[1]?.facemend_model_kind : undefined;
      if (kind && INFO_KINDS.has(kind)) found.push([name, kind]);
    }
  }
  return found;
}

/** Human text for a /facemend/model_info answer. */
export function formatModelInfo(info) {
  if (!info) return "";
  if (info.error) return `⚠ ${info.error}`;
  const millions = typeof info.parameters === "number" ? `${(info.parameters / 1e6).toFixed(1)}M parameters` : "";
  const controls = info.controls?.length ? `controls: ${info.controls.join(", ")}` : "no controls (fidelity/strength do not apply)";
  const lines = [
    `${info.display_name} [${info.arch}]${millions ? " · " + millions : ""}`,
    `licence: ${info.licence}`,
    controls + (info.node ? ` · use with ${info.node}` : ""),
  ];
  if (info.status) lines.push(info.status);
  return lines.join("\n");
}

/**
 * Which control widgets of a `nodeType` node do not apply to the model described by `info`.
 * Returns a Map widget name -> label suffix; empty when nothing is known (no info, an error,
 * a node type without control widgets), so nothing is greyed out on a guess.
 */
export function inapplicableControls(nodeType, info) {
  const marks = new Map();
  const widgets = CONTROL_WIDGETS[nodeType];
  if (!widgets || !info || info.error || !Array.isArray(info.controls)) return marks;
  for (const [widget, control] of Object.entries(widgets)) {
    if (!info.controls.includes(control)) marks.set(widget, `n/a: ${info.display_name ?? info.arch}`);
  }
  return marks;
}

/** The node feeding `node`'s `model` input (through links), or null. */
function modelSource(node) {
  const slot = node.inputs?.findIndex((input) => input.name === "model") ?? -1;
  if (slot < 0 || node.inputs[slot].link == null) return null;
  return node.getInputNode?.(slot) ?? null;
}

/** Grey out (disable and relabel) the control widgets of `node` that its model does not take. */
export function markControls(node) {
  const type = node.comfyClass ?? node.type;
  if (!CONTROL_WIDGETS[type]) return;
  const marks = inapplicableControls(type, modelSource(node)?.facemendModelInfo);
  let changed = false;
  for (const widget of node.widgets ?? []) {
    if (!(widget.name in CONTROL_WIDGETS[type])) continue;
    const reason = marks.get(widget.name);
    const marked = widget.facemendNotApplicable ?? null;
    if (reason === marked || (reason === undefined && marked === null)) continue;
    if (reason) {
      if (marked === null) widget.facemendLabel = widget.label;
      widget.label = `${widget.name} (${reason})`;
      widget.disabled = true;
      widget.facemendNotApplicable = reason;
    } else {
      widget.label = widget.facemendLabel;
      widget.disabled = false;
      widget.facemendNotApplicable = null;
    }
    changed = true;
  }
  if (changed) node.setDirtyCanvas?.(true, true);
}

/** Update the control widgets of every node fed by `loader`'s outputs. */
function markConsumers(loader) {
  for (let slot = 0; slot < (loader.outputs?.length ?? 0); slot++) {
    for (const target of loader.getOutputNodes?.(slot) ?? []) markControls(target);
  }
}

function watchConnections(node) {
  const previous = node.onConnectionsChange;
  node.onConnectionsChange = function (...args) {
    const result = previous?.apply(this, args);
    markControls(node);
    return result;
  };
}

async function fetchModelInfo(kind, name) {
  const query = `kind=${encodeURIComponent(kind)}&name=${encodeURIComponent(name)}`;
  try {
    const res = await api.fetchApi(`/facemend/model_info?${query}`);
    const body = await res.json();
    return res.ok ? body : { error: body?.error ?? `${res.status} ${res.statusText}` };
  } catch (e) {
    return { error: `could not ask the server about ${name}: ${e}` };
  }
}

function ensureStyle() {
  if (document.getElementById("facemend-model-info-style")) return;
  const style = document.createElement("style");
  style.id = "facemend-model-info-style";
  style.textContent = `
    .facemend-model-info { font: 11px/1.35 sans-serif; white-space: pre-wrap; overflow: hidden;
      padding: 4px 6px; border-radius: 4px; color: var(--input-text, #ddd);
      background: var(--comfy-input-bg, #222); box-sizing: border-box; pointer-events: none; }
    .facemend-model-info[data-state="error"] { color: #ff8a80; }
    .facemend-model-info[data-state="loading"] { opacity: 0.6; }`;
  document.head.appendChild(style);
}

function setInfo(node, state, text, info) {
  const el = node.facemendInfoElement;
  if (!el) return;
  el.dataset.state = state;
  el.textContent = text;
  node.facemendModelInfo = info ?? null; // for other extensions and tests
  node.setDirtyCanvas?.(true, true);
  markConsumers(node);
}

async function refresh(node) {
  const picked = node.facemendModelPicker;
  if (!picked) return;
  const [inputName, kind] = picked;
  const widget = node.widgets?.find((w) => w.name === inputName);
  const name = widget?.value;
  const ticket = (node.facemendInfoTicket = (node.facemendInfoTicket ?? 0) + 1);
  if (!name) {
    setInfo(node, "error", `⚠ no model chosen: put a file in the ${kind} folder and press R to refresh.`, null);
    return;
  }
  setInfo(node, "loading", `reading ${name} …`, null);
  const info = await fetchModelInfo(kind, String(name));
  if (ticket !== node.facemendInfoTicket) return; // a newer choice is on its way
  setInfo(node, info.error ? "error" : "ok", formatModelInfo(info), info);
}

function attach(node) {
  const inputs = modelInputsByType.get(node.comfyClass ?? node.type);
  if (!inputs?.length || node.facemendInfoElement) return;
  const [inputName] = inputs[0];
  const widget = node.widgets?.find((w) => w.name === inputName);
  if (!widget) return;
  ensureStyle();
  node.facemendModelPicker = inputs[0];

  const el = document.createElement("div");
  el.className = "facemend-model-info";
  const infoWidget = node.addDOMWidget(INFO_WIDGET, "facemend_info", el, {
    serialize: false, // not part of the prompt
    hideOnZoom: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => 60,
    getMaxHeight: () => 80,
  });
  infoWidget.serialize = false; // not part of the saved workflow's widgets_values either
  node.facemendInfoElement = el;

  const previous = widget.callback;
  widget.callback = function (...args) {
    const result = previous?.apply(this, args);
    refresh(node);
    return result;
  };
  const size = node.computeSize?.();
  if (size) node.setSize?.([Math.max(node.size[0], 320), Math.max(node.size[1], size[1])]);
  // New nodes show their default file at once; loaded ones are refreshed in loadedGraphNode.
  setTimeout(() => refresh(node), 0);
}

app.registerExtension({
  name: EXTENSION,
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const inputs = modelInputs(nodeData);
    if (inputs.length) modelInputsByType.set(nodeData.name, inputs);
  },
  nodeCreated(node) {
    attach(node);
    if (CONTROL_WIDGETS[node.comfyClass ?? node.type]) watchConnections(node);
  },
  loadedGraphNode(node) {
    attach(node);
    refresh(node);
    markControls(node);
  },
  async refreshComboInNodes() {
    // Model lists were re-read (R): a file may have appeared, gone or changed.
    for (const node of app.graph?.nodes ?? app.graph?._nodes ?? []) if (node.facemendModelPicker) refresh(node);
  },
});
