// FaceMend: show what a chosen model file is (architecture, licence, parameters, controls) on
// the node, as soon as the file is picked, before anything runs.
//
// Which combos are model pickers is declared by the Python schema: an input whose options carry
// `facemend_model_kind` (set from `In(model_kind=...)`). The text comes from the pack's server
// route GET /facemend/model_info?kind=...&name=..., which only reads files listed in that model
// folder. Only official extension hooks are used; per-node handlers are chained on the node
// instance, never on a prototype.

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
    getMinHeight: () => 52,
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
  },
  loadedGraphNode(node) {
    attach(node);
    refresh(node);
  },
  async refreshComboInNodes() {
    // Model lists were re-read (R): a file may have appeared, gone or changed.
    for (const node of app.graph?.nodes ?? app.graph?._nodes ?? []) if (node.facemendModelPicker) refresh(node);
  },
});
