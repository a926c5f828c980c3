// FaceMend: show each node's summary on the node after it runs ("1 face restored; CodeFormer:
// fidelity 0.6", "no face found: image passed through"). Every FaceMend node returns it as the
// `text` of its UI payload; the frontend shows none of that by itself. The line lives in a
// read-only widget that is neither saved in the workflow nor sent in the prompt.
//
// Also: a newly added FaceMend node's seed is "fixed" after each run (the frontend's default for
// an INT named seed is "randomize", which makes the node run again on every queue even when
// nothing changed). A loaded workflow keeps the choice it was saved with.

const { app } = window.comfyAPI.app;

const EXTENSION = "FaceMend.Summary";
const SUMMARY_WIDGET = "facemend_summary";

/** The summary text of a node's UI payload (`output.text`: a string or list of strings), or null. */
export function summaryText(output) {
  const text = output?.text;
  if (text == null) return null;
  const lines = (Array.isArray(text) ? text : [text]).map(String).filter((line) => line.length > 0);
  return lines.length ? lines.join("\n") : null;
}

/** Whether a node type is one of the pack's nodes (whose `text` is a summary for the user). */
export function isFaceMendNode(type) {
  return typeof type === "string" && type.startsWith("FaceMend") && !type.startsWith("FaceMendProbe");
}

function ensureStyle() {
  if (document.getElementById("facemend-summary-style")) return;
  const style = document.createElement("style");
  style.id = "facemend-summary-style";
  style.textContent = `
    .facemend-summary { font: 11px/1.35 sans-serif; white-space: pre-wrap; overflow: hidden;
      padding: 3px 6px; border-radius: 4px; color: var(--input-text, #ddd);
      background: var(--comfy-input-bg, #222); box-sizing: border-box; pointer-events: none;
      border-left: 3px solid #4caf50; }`;
  document.head.appendChild(style);
}

function height(text) {
  const lines = String(text).split("\n").reduce((n, line) => n + Math.max(1, Math.ceil(line.length / 45)), 0);
  return Math.min(28 + 15 * lines, 180); // the DOM widget keeps ~20 px of its height for margins
}

/** Put `text` on `node` (adding the summary widget the first time). */
export function showSummary(node, text) {
  if (text == null) return;
  let el = node.facemendSummaryElement;
  if (!el) {
    ensureStyle();
    el = document.createElement("div");
    el.className = "facemend-summary";
    const widget = node.addDOMWidget(SUMMARY_WIDGET, "facemend_summary", el, {
      serialize: false, // not part of the prompt
      hideOnZoom: false,
      getValue: () => "",
      setValue: () => {},
      getMinHeight: () => height(el.textContent),
      getMaxHeight: () => height(el.textContent),
    });
    widget.serialize = false; // not part of the saved workflow's widgets_values either
    node.facemendSummaryElement = el;
  }
  el.textContent = text;
  node.facemendSummary = text; // for other extensions and tests
  const size = node.computeSize?.();
  if (size) node.setSize?.([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
  node.setDirtyCanvas?.(true, true);
}

/** Set the seed's "control after generate" of a new FaceMend node to fixed. */
export function fixSeed(node) {
  const control = (node.widgets ?? []).find((w) => w.name === "control_after_generate");
  if (control && control.value !== "fixed") control.value = "fixed";
}

app.registerExtension({
  name: EXTENSION,
  nodeCreated(node) {
    if (!isFaceMendNode(node.comfyClass ?? node.type)) return;
    fixSeed(node); // configure() then restores a loaded workflow's own choice

    const previous = node.onExecuted;
    node.onExecuted = function (output, ...rest) {
      const result = previous?.apply(this, [output, ...rest]);
      // The model loader shows what its file is in its own info box; the rest show their summary.
      if (!node.facemendInfoElement) showSummary(node, summaryText(output));
      return result;
    };
  },
});
