// FaceMend: show what a chosen model file is (architecture, licence, parameters, controls) on
// the node, as soon as the file is picked, before anything runs.
//
// Which combos are model pickers is declared by the Python schema: an input whose options carry
// `facemend_model_kind` (set from `In(model_kind=...)`). The text comes from the pack's server
// route GET /facemend/model_info?kind=...&name=..., which only reads files listed in that model
// folder. Only official extension hooks are used; per-node handlers are chained on the node
// instance, never on a prototype.
//
// Controls that the connected model does not take are greyed out: the route's `control_widgets`
// says, for every node that takes a model, which of its control widgets steer this file's model
// (the server derives it from the family table). Those that do not are disabled and relabelled
// "(n/a: <model>)"; their values are kept (still saved and sent; the node ignores them and says so).
// A model wired into a node of another family is flagged on the canvas before Run, with the node
// it belongs to.

const { app } = window.comfyAPI.app;
const { api } = window.comfyAPI.api;

const EXTENSION = "FaceMend.ModelInfo";
const INFO_WIDGET = "facemend_model_info";
const INFO_KINDS = new Set(["facerestore_models", "refusion"]);

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

/** Human text for a /facemend/model_info answer: short lines that fit the loader at its default
 * width (~45 characters), nodes named by their display names, only controls that are widgets. */
export function formatModelInfo(info) {
  if (!info) return "";
  if (info.error) return `⚠ ${info.error}`;
  const millions = typeof info.parameters === "number" ? ` · ${(info.parameters / 1e6).toFixed(1)}M params` : "";
  const lines = [`${info.display_name} [${info.arch}]${millions}`, `licence: ${info.licence}`];
  if (info.node_name) lines.push(`use with: ${info.node_name}`);
  const widgets = info.widgets ?? [];
  const fixed = Object.entries(info.fixed ?? {}).map(([name, value]) => `${name} fixed at ${value}`);
  lines.push(`controls: ${[...widgets, ...fixed].join(", ") || "none"}`);
  if (info.status) lines.push(info.status);
  return lines.join("\n");
}

/** Pixel height that shows all of `text` in the info box (11 px font, ~45 characters a line). */
export function infoHeight(text) {
  const lines = String(text ?? "").split("\n").reduce((n, line) => n + Math.max(1, Math.ceil(line.length / 45)), 0);
  return Math.min(30 + 15 * lines, 240); // the DOM widget keeps ~20 px of its height for margins
}

/**
 * Which control widgets of a `nodeType` node do not apply to the model described by `info`.
 * Returns a Map widget name -> label suffix; empty when nothing is known (no info, an error,
 * a node type that takes no model), so nothing is greyed out on a guess.
 */
export function inapplicableControls(nodeType, info) {
  const marks = new Map();
  const widgets = info && !info.error ? info.control_widgets?.[nodeType] : undefined;
  if (!widgets) return marks;
  for (const [widget, applies] of Object.entries(widgets)) {
    if (!applies) marks.set(widget, `n/a: ${info.display_name ?? info.arch}`);
  }
  return marks;
}

/** The warning for a model wired into a node that does not take its family, or null. */
export function misplacedModel(nodeType, info) {
  if (!info || info.error || !info.control_widgets?.[nodeType] || nodeType === info.node) return null;
  if (nodeType === "FaceMendRestoreFaces" && info.restore_faces) return null;
  return `⚠ ${info.display_name} belongs in ${info.node_name}`;
}

/** The node feeding `node`'s `model` input (through links), or null. */
function modelSource(node) {
  const slot = node.inputs?.findIndex((input) => input.name === "model") ?? -1;
  if (slot < 0 || node.inputs[slot].link == null) return null;
  return node.getInputNode?.(slot) ?? null;
}

/** Grey out (disable and relabel) the control widgets of `node` that its model does not take,
 * and flag the node when the model belongs in another node. */
export function markControls(node) {
  const type = node.comfyClass ?? node.type;
  const info = modelSource(node)?.facemendModelInfo;
  const marks = inapplicableControls(type, info);
  let changed = false;
  for (const widget of node.widgets ?? []) {
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
  const warning = misplacedModel(type, info);
  if (warning !== (node.facemendWarning ?? null)) {
    node.facemendWarning = warning; // drawn above the node by drawWarning; never saved
    changed = true;
  }
  if (changed) node.setDirtyCanvas?.(true, true);
}

/** Draw `node.facemendWarning` (a model in the wrong node) as a red frame and a line below the node
 * (above it sit the title and the pack's badge). */
export function drawWarning(node, ctx) {
  if (!node.facemendWarning || !ctx) return;
  const title = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  ctx.save();
  ctx.strokeStyle = "#ff5252";
  ctx.lineWidth = 2;
  ctx.strokeRect(-3, -title - 3, node.size[0] + 6, node.size[1] + title + 6);
  ctx.fillStyle = "#ff5252";
  ctx.font = "bold 13px sans-serif";
  ctx.fillText(node.facemendWarning, 0, node.size[1] + 20);
  ctx.restore();
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
  const draw = node.onDrawForeground;
  node.onDrawForeground = function (ctx, ...rest) {
    const result = draw?.apply(this, [ctx, ...rest]);
    drawWarning(node, ctx);
    return result;
  };
}

/** Node types with a `model` input (the ones whose controls depend on the connected model). */
const modelConsumers = new Set();

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
  const size = node.computeSize?.(); // grow the node so the whole text shows
  if (size && size[1] > node.size[1]) node.setSize?.([node.size[0], size[1]]);
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
    getMinHeight: () => infoHeight(el.textContent),
    getMaxHeight: () => infoHeight(el.textContent),
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
    const takesModel = ["required", "optional"].some((g) => nodeData?.input?.[g]?.model?.[0] === "FACEMEND_MODEL");
    if (takesModel) modelConsumers.add(nodeData.name);
  },
  nodeCreated(node) {
    attach(node);
    if (modelConsumers.has(node.comfyClass ?? node.type)) watchConnections(node);
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
