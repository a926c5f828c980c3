// Unit tests for web/*.js without a browser: `node --test tests/js` (Node >= 18).
// A fake `window.comfyAPI` (app + api), DOM and canvas stand in for the ComfyUI frontend; the
// browser end-to-end test is tests/integration/test_browser.py.

import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath, pathToFileURL } from "node:url";
import path from "node:path";

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../web");
let importCounter = 0;

// --- fakes ---------------------------------------------------------------------------------

class FakeContext {
  constructor() { this.calls = []; this.font = ""; }
  measureText(text) { return { width: 10 * String(text).length }; }
}
for (const name of ["strokeRect", "fillRect", "fillText", "drawImage", "save", "restore"]) {
  FakeContext.prototype[name] = function (...args) { this.calls.push([name, ...args]); };
}

function fakeElement(tag) {
  const el = { tagName: tag.toUpperCase(), dataset: {}, textContent: "", className: "", id: "" };
  if (tag === "canvas") {
    el.width = 0; el.height = 0; el.ctx = new FakeContext();
    el.getContext = () => el.ctx;
    el.toDataURL = () => `data:image/png;base64,FAKE${el.width}x${el.height}`;
  }
  return el;
}

class FakeImage {
  constructor(w = 0, h = 0) { this.naturalWidth = w; this.naturalHeight = h; this.complete = w > 0; }
  set src(value) {
    this._src = value;
    const m = /FAKE(\d+)x(\d+)/.exec(value);
    this.naturalWidth = m ? Number(m[1]) : 1; this.naturalHeight = m ? Number(m[2]) : 1; this.complete = true;
    queueMicrotask(() => this.onload?.());
  }
  get src() { return this._src; }
}

function installEnv() {
  const env = { registered: [], requests: [], answers: new Map(), nodes: [] };
  const head = { children: [], appendChild(c) { this.children.push(c); } };
  globalThis.document = {
    head,
    createElement: fakeElement,
    getElementById: (id) => head.children.find((c) => c.id === id) ?? null,
  };
  globalThis.Image = FakeImage;
  globalThis.window = {
    comfyAPI: {
      app: {
        app: {
          registerExtension: (ext) => env.registered.push(ext),
          graph: { get nodes() { return env.nodes; }, getNodeById: (id) => env.nodes.find((n) => n.id === id) ?? null },
        },
      },
      api: {
        api: {
          fetchApi: async (route) => {
            env.requests.push(route);
            const params = new URL(route, "http://127.0.0.1").searchParams;
            const answer = (await env.answers.get(params.get("name"))) ?? { status: 404, body: { error: "not there" } };
            return { ok: answer.status === 200, status: answer.status, statusText: "", json: async () => answer.body };
          },
        },
      },
    },
  };
  return env;
}

async function load(file) {
  const env = installEnv();
  const module = await import(`${pathToFileURL(path.join(WEB, file)).href}?n=${importCounter++}`);
  return { env, module, ext: env.registered.at(-1) };
}

function fakeNode(type, widgets = [], id = 1) {
  return {
    id, type, comfyClass: type, size: [200, 100], widgets,
    addDOMWidget(name, widgetType, element, options) {
      const w = { name, type: widgetType, element, options };
      this.widgets.push(w);
      return w;
    },
    computeSize() { return [200, 160]; },
    setSize(size) { this.size = size; },
    setDirtyCanvas() { this.dirtied = (this.dirtied ?? 0) + 1; },
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

const LOADER_DEF = {
  name: "FaceMendModelLoader",
  input: {
    required: {
      model_name: ["COMBO", { options: ["a.pth", "b.safetensors"], facemend_model_kind: "facerestore_models" }],
      precision: ["COMBO", { options: ["auto", "fp32"] }],
    },
    optional: { detector: ["COMBO", { options: ["d.pth"], facemend_model_kind: "facedetection" }] },
  },
};

// Shaped like the server's answers (model_loaders/info.py describe_spec).
const NODE_WIDGETS = {
  FaceMendCSSFTModulate: ["strength", "strength_coarse", "strength_fine", "noise", "seed"],
  FaceMendCodebookRestore: ["fidelity", "per_face_fidelity"],
  FaceMendGPENRestore: ["strength", "normalize", "per_face_strength"],
  FaceMendDiffusionRefine: ["sampler", "steps", "max_sigma", "eps", "schedule", "seed", "strength"],
  FaceMendRestoreFaces: ["fidelity", "strength"],
};
function controlWidgets(node, applies, restoreFaces) {
  const table = {};
  for (const [type, widgets] of Object.entries(NODE_WIDGETS)) {
    table[type] = Object.fromEntries(widgets.map((w) => [w, type === node && applies.includes(w)]));
  }
  table.FaceMendRestoreFaces = { fidelity: restoreFaces === "fidelity", strength: restoreFaces === "strength" };
  return table;
}

const CODEFORMER = {
  name: "b.safetensors", kind: "facerestore_models", arch: "codeformer", display_name: "CodeFormer",
  family: "codebook", node: "FaceMendCodebookRestore", node_name: "FaceMend Codebook Restore",
  licence: "S-Lab 1.0 (non-commercial)", parameters: 94_100_000, controls: ["fidelity"], fixed: {},
  widgets: ["fidelity", "per_face_fidelity"], restore_faces: true, input_size: 512, hparams: {},
  control_widgets: controlWidgets("FaceMendCodebookRestore", ["fidelity", "per_face_fidelity"], "fidelity"),
};

async function loaderNode(env, ext, value = "a.pth") {
  await ext.beforeRegisterNodeDef({}, LOADER_DEF);
  const calls = [];
  const combo = { name: "model_name", type: "combo", value, callback: (v) => calls.push(v) };
  const node = fakeNode("FaceMendModelLoader", [combo, { name: "precision", type: "combo", value: "auto" }]);
  env.nodes.push(node);
  ext.nodeCreated(node);
  return { node, combo, calls };
}

// --- model info ----------------------------------------------------------------------------

test("modelInputs finds the model-file combos the schema declares (restorer kinds only)", async () => {
  const { module } = await load("facemend_model_info.js");
  assert.deepEqual(module.modelInputs(LOADER_DEF), [["model_name", "facerestore_models"]]);
  assert.deepEqual(module.modelInputs({ input: { required: { x: ["INT", { default: 1 }] } } }), []);
  assert.deepEqual(module.modelInputs({}), []);
});

test("formatModelInfo: architecture, size, licence, the node by its display name, widget controls; lines fit", async () => {
  const { module } = await load("facemend_model_info.js");
  const text = module.formatModelInfo(CODEFORMER);
  for (const part of ["CodeFormer [codeformer]", "94.1M params", "licence: S-Lab 1.0 (non-commercial)",
    "controls: fidelity, per_face_fidelity", "use with: FaceMend Codebook Restore"]) {
    assert.ok(text.includes(part), `${part} not in ${text}`);
  }
  assert.ok(!text.includes("FaceMendCodebookRestore"), "no node ids in the user's text");
  assert.ok(text.split("\n").every((line) => line.length <= 45), text);
  const colorization = { ...CODEFORMER, controls: [], widgets: [], fixed: { fidelity: 0 } };
  assert.match(module.formatModelInfo(colorization), /controls: fidelity fixed at 0/);
  assert.match(module.formatModelInfo({ ...CODEFORMER, widgets: [], fixed: {} }), /controls: none/);
  assert.equal(module.formatModelInfo({ error: "bad file" }), "⚠ bad file");
  const tall = module.infoHeight(module.formatModelInfo({ ...CODEFORMER, status: "not downloaded yet: fetched from its official URL on first run" }));
  assert.ok(tall >= 30 + 15 * 6, `the box grows with the text (${tall} px)`);
});

test("the loader node shows the default file's info, then the info of each chosen file", async () => {
  const { env, ext } = await load("facemend_model_info.js");
  env.answers.set("a.pth", { status: 422, body: { error: "a.pth: unsupported model" } });
  env.answers.set("b.safetensors", { status: 200, body: CODEFORMER });
  const { node, combo, calls } = await loaderNode(env, ext);

  const info = node.widgets.find((w) => w.name === "facemend_model_info");
  assert.ok(info, "an info widget is added");
  assert.equal(info.serialize, false, "not saved in widgets_values");
  assert.equal(info.options.serialize, false, "not sent in the prompt");
  assert.equal(node.widgets.length, 3, "only one widget added");

  await settle();
  assert.deepEqual(env.requests, ["/facemend/model_info?kind=facerestore_models&name=a.pth"]);
  assert.equal(info.element.dataset.state, "error");
  assert.match(info.element.textContent, /a\.pth: unsupported model/);

  combo.value = "b.safetensors";
  combo.callback("b.safetensors");
  assert.deepEqual(calls, ["b.safetensors"], "the combo's own callback still runs");
  await settle();
  assert.equal(env.requests.at(-1), "/facemend/model_info?kind=facerestore_models&name=b.safetensors");
  assert.equal(info.element.dataset.state, "ok");
  assert.match(info.element.textContent, /CodeFormer \[codeformer\]/);
  assert.equal(node.facemendModelInfo.arch, "codeformer");
});

test("names are URL-encoded and a late answer for an older choice is ignored", async () => {
  const { env, ext } = await load("facemend_model_info.js");
  let release;
  env.answers.set("sub/slow file&.pth", new Promise((resolve) => { release = resolve; }));
  env.answers.set("b.safetensors", { status: 200, body: CODEFORMER });
  const { node, combo } = await loaderNode(env, ext, "sub/slow file&.pth");
  await settle();
  assert.equal(env.requests[0], "/facemend/model_info?kind=facerestore_models&name=sub%2Fslow%20file%26.pth");
  combo.value = "b.safetensors";
  combo.callback("b.safetensors");
  await settle();
  release({ status: 200, body: { ...CODEFORMER, arch: "gfpgan_v1", display_name: "GFPGAN v1" } });
  await settle();
  assert.equal(node.facemendModelInfo.arch, "codeformer");
});

test("a loaded workflow's file is described; other node types are left alone", async () => {
  const { env, ext } = await load("facemend_model_info.js");
  env.answers.set("b.safetensors", { status: 200, body: CODEFORMER });
  const { node, combo } = await loaderNode(env, ext);
  combo.value = "b.safetensors"; // as configure() sets it, without a callback
  ext.loadedGraphNode(node);
  await settle();
  assert.equal(node.facemendModelInfo?.arch, "codeformer");

  const other = fakeNode("KSampler", [{ name: "seed", type: "number", value: 1 }]);
  ext.nodeCreated(other);
  ext.loadedGraphNode(other);
  assert.equal(other.widgets.length, 1);
});

test("an empty model folder says what to do instead of asking the server", async () => {
  const { env, ext } = await load("facemend_model_info.js");
  const { node } = await loaderNode(env, ext, null);
  await settle();
  assert.equal(env.requests.length, 0);
  assert.match(node.facemendInfoElement.textContent, /no model chosen.*facerestore_models/);
});

// --- controls that do not apply ------------------------------------------------------------

const RESTOREFORMER = { ...CODEFORMER, name: "a.pth", arch: "restoreformer", display_name: "RestoreFormer", controls: [],
  widgets: [], control_widgets: controlWidgets("FaceMendCodebookRestore", [], null) };
const GFPGAN_WIDGETS = ["strength", "strength_coarse", "strength_fine", "noise", "seed"];
const GFPGAN = { ...CODEFORMER, name: "g.pth", arch: "gfpgan_clean", display_name: "GFPGAN v1 clean", family: "gfpgan",
  node: "FaceMendCSSFTModulate", node_name: "FaceMend CS-SFT Modulate", widgets: GFPGAN_WIDGETS,
  controls: [...GFPGAN_WIDGETS, "face_index"], control_widgets: controlWidgets("FaceMendCSSFTModulate", GFPGAN_WIDGETS, "strength") };
const REFUSION = { ...CODEFORMER, arch: "refusion_nafnet", display_name: "Refusion", family: "refusion",
  node: "FaceMendDiffusionRefine", node_name: "FaceMend Diffusion Refine", restore_faces: false,
  control_widgets: controlWidgets("FaceMendDiffusionRefine", NODE_WIDGETS.FaceMendDiffusionRefine, null) };

test("inapplicableControls names the control widgets the model does not take", async () => {
  const { module } = await load("facemend_model_info.js");
  const marks = (type, info) => Object.fromEntries(module.inapplicableControls(type, info));
  assert.deepEqual(marks("FaceMendRestoreFaces", CODEFORMER), { strength: "n/a: CodeFormer" });
  assert.deepEqual(marks("FaceMendRestoreFaces", GFPGAN), { fidelity: "n/a: GFPGAN v1 clean" });
  assert.deepEqual(marks("FaceMendRestoreFaces", RESTOREFORMER),
    { fidelity: "n/a: RestoreFormer", strength: "n/a: RestoreFormer" });
  assert.deepEqual(marks("FaceMendCodebookRestore", RESTOREFORMER),
    { fidelity: "n/a: RestoreFormer", per_face_fidelity: "n/a: RestoreFormer" });
  assert.deepEqual(marks("FaceMendCodebookRestore", CODEFORMER), {});
  assert.deepEqual(marks("FaceMendCSSFTModulate", GFPGAN), {});
  // a model in a node of another family: every control of that node is greyed out
  assert.deepEqual(Object.keys(marks("FaceMendCSSFTModulate", CODEFORMER)), GFPGAN_WIDGETS);
  // nothing is greyed out on a guess: no info, an error, or a node that takes no model
  assert.deepEqual(marks("FaceMendRestoreFaces", null), {});
  assert.deepEqual(marks("FaceMendRestoreFaces", { error: "bad file" }), {});
  assert.deepEqual(marks("KSampler", RESTOREFORMER), {});
});

test("misplacedModel flags a model wired into a node of another family, naming where it belongs", async () => {
  const { module } = await load("facemend_model_info.js");
  assert.equal(module.misplacedModel("FaceMendCSSFTModulate", CODEFORMER), "⚠ CodeFormer belongs in FaceMend Codebook Restore");
  assert.equal(module.misplacedModel("FaceMendCodebookRestore", CODEFORMER), null);
  assert.equal(module.misplacedModel("FaceMendRestoreFaces", GFPGAN), null);
  assert.equal(module.misplacedModel("FaceMendRestoreFaces", REFUSION), "⚠ Refusion belongs in FaceMend Diffusion Refine");
  assert.equal(module.misplacedModel("FaceMendCodebookRestore", null), null);
  assert.equal(module.misplacedModel("KSampler", CODEFORMER), null);
});

const CONSUMER_DEFS = {
  FaceMendRestoreFaces: ["fidelity", "strength", "opacity"],
  FaceMendCodebookRestore: ["fidelity", "per_face_fidelity"],
  FaceMendCSSFTModulate: GFPGAN_WIDGETS,
};

async function registerConsumers(ext) {
  for (const name of Object.keys(CONSUMER_DEFS)) {
    await ext.beforeRegisterNodeDef({}, { name, input: { required: { model: ["FACEMEND_MODEL", {}] } } });
  }
}

function consumerNode(env, type, id) {
  const widgets = CONSUMER_DEFS[type].map((name) => ({ name, type: "number", value: 0.5 }));
  const node = fakeNode(type, widgets, id);
  node.inputs = [{ name: "image", link: null }, { name: "model", link: null }];
  node.source = null;
  node.getInputNode = (slot) => (node.inputs[slot].link != null ? node.source : null);
  env.nodes.push(node);
  return node;
}

function connect(loader, consumer, linkId = 11) {
  consumer.source = loader;
  consumer.inputs[1].link = linkId;
  loader.targets.push(consumer);
  consumer.onConnectionsChange?.(1, 1, true, { id: linkId }, consumer.inputs[1]);
}

async function wiredLoader(env, ext, value) {
  const made = await loaderNode(env, ext, value);
  made.node.outputs = [{ name: "model", links: [] }];
  made.node.targets = [];
  made.node.getOutputNodes = (slot) => (slot === 0 && made.node.targets.length ? made.node.targets : null);
  return made;
}

test("a restore node's controls are greyed out when the connected model does not take them", async () => {
  const { env, ext } = await load("facemend_model_info.js");
  env.answers.set("a.pth", { status: 200, body: RESTOREFORMER });
  env.answers.set("b.safetensors", { status: 200, body: CODEFORMER });
  const { node: loader, combo } = await wiredLoader(env, ext, "a.pth");
  await registerConsumers(ext);
  const restore = consumerNode(env, "FaceMendRestoreFaces", 2);
  ext.nodeCreated(restore);
  await settle();
  const widget = (name) => restore.widgets.find((w) => w.name === name);
  assert.ok(!widget("fidelity").disabled, "not connected: nothing marked");

  connect(loader, restore);
  assert.equal(widget("fidelity").disabled, true);
  assert.equal(widget("fidelity").label, "fidelity (n/a: RestoreFormer)");
  assert.equal(widget("strength").disabled, true);
  assert.ok(!widget("opacity").disabled, "other widgets untouched");
  assert.equal(widget("fidelity").value, 0.5, "the value is kept");

  combo.value = "b.safetensors"; // CodeFormer takes fidelity, not strength
  combo.callback("b.safetensors");
  await settle();
  assert.ok(!widget("fidelity").disabled);
  assert.equal(widget("fidelity").label, undefined, "the original label is back");
  assert.equal(widget("strength").disabled, true);
  assert.equal(widget("strength").label, "strength (n/a: CodeFormer)");

  // disconnected: nothing is known about the model any more
  restore.inputs[1].link = null;
  restore.onConnectionsChange(1, 1, false, null, restore.inputs[1]);
  assert.ok(!widget("strength").disabled);
});

test("a loaded workflow greys out controls once the loader's info arrives", async () => {
  const { env, ext } = await load("facemend_model_info.js");
  let release;
  env.answers.set("a.pth", new Promise((resolve) => { release = resolve; }));
  const { node: loader } = await wiredLoader(env, ext, "a.pth");
  await registerConsumers(ext);
  const restore = consumerNode(env, "FaceMendCodebookRestore", 3);
  ext.nodeCreated(restore);
  connect(loader, restore);
  ext.loadedGraphNode(restore);
  assert.ok(!restore.widgets[0].disabled, "loader info still loading");
  release({ status: 200, body: RESTOREFORMER });
  await settle();
  assert.deepEqual(restore.widgets.map((w) => w.disabled), [true, true]);
});

test("a model wired into another family's node greys out all its controls and flags the node", async () => {
  const { env, ext } = await load("facemend_model_info.js");
  env.answers.set("b.safetensors", { status: 200, body: CODEFORMER });
  const { node: loader } = await wiredLoader(env, ext, "b.safetensors");
  await registerConsumers(ext);
  const modulate = consumerNode(env, "FaceMendCSSFTModulate", 4);
  ext.nodeCreated(modulate);
  await settle();
  connect(loader, modulate);
  assert.deepEqual(modulate.widgets.map((w) => w.disabled), GFPGAN_WIDGETS.map(() => true));
  assert.equal(modulate.facemendWarning, "⚠ CodeFormer belongs in FaceMend Codebook Restore");
  const ctx = new FakeContext();
  modulate.onDrawForeground(ctx);
  assert.ok(ctx.calls.some(([name, text]) => name === "fillText" && /belongs in FaceMend Codebook Restore/.test(text)));
  modulate.inputs[1].link = null;
  modulate.onConnectionsChange(1, 1, false, null, modulate.inputs[1]);
  assert.equal(modulate.facemendWarning, null, "disconnected: no warning");
});

// --- node summaries ------------------------------------------------------------------------

test("summaryText joins a node's UI text; other payloads give none", async () => {
  const { module } = await load("facemend_summary.js");
  assert.equal(module.summaryText({ text: ["1 face(s) restored", "resized"] }), "1 face(s) restored\nresized");
  assert.equal(module.summaryText({ text: "no face found: image passed through" }), "no face found: image passed through");
  assert.equal(module.summaryText({ images: [] }), null);
  assert.equal(module.summaryText(null), null);
  assert.ok(module.isFaceMendNode("FaceMendDetect") && !module.isFaceMendNode("KSampler"));
  assert.ok(!module.isFaceMendNode("FaceMendProbeAllInputs"), "the test probe pack is not ours");
});

test("a FaceMend node shows its summary after each run, in a widget that is never saved", async () => {
  const { ext } = await load("facemend_summary.js");
  const node = fakeNode("FaceMendDetect", [{ name: "confidence", type: "number", value: 0.8 }]);
  const seen = [];
  node.onExecuted = (output) => seen.push(output);
  ext.nodeCreated(node);
  node.onExecuted({ text: ["2 face(s) found; 2 kept"] });
  const widget = node.widgets.find((w) => w.name === "facemend_summary");
  assert.ok(widget && widget.serialize === false && widget.options.serialize === false);
  assert.equal(widget.element.textContent, "2 face(s) found; 2 kept");
  assert.equal(seen.length, 1, "the node's own onExecuted still runs");
  node.onExecuted({ text: ["no face found: image passed through"] });
  assert.equal(node.widgets.filter((w) => w.name === "facemend_summary").length, 1, "one widget, updated");
  assert.equal(widget.element.textContent, "no face found: image passed through");

  const other = fakeNode("KSampler", []);
  ext.nodeCreated(other);
  other.onExecuted?.({ text: ["x"] });
  assert.equal(other.widgets.length, 0, "other packs' nodes are left alone");
});

test("a new FaceMend node's seed is fixed after each run; other packs' nodes keep theirs", async () => {
  const { ext } = await load("facemend_summary.js");
  const control = () => ({ name: "control_after_generate", type: "combo", value: "randomize" });
  const refine = fakeNode("FaceMendDiffusionRefine", [{ name: "seed", type: "number", value: 0 }, control()]);
  ext.nodeCreated(refine);
  assert.equal(refine.widgets[1].value, "fixed");
  const ksampler = fakeNode("KSampler", [{ name: "seed", type: "number", value: 0 }, control()]);
  ext.nodeCreated(ksampler);
  assert.equal(ksampler.widgets[1].value, "randomize");
});
