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
for (const name of ["strokeRect", "fillRect", "fillText", "drawImage"]) {
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

const CODEFORMER = {
  name: "b.safetensors", kind: "facerestore_models", arch: "codeformer", display_name: "CodeFormer",
  family: "codebook", node: "FaceMendCodebookRestore", licence: "S-Lab 1.0 (non-commercial)",
  parameters: 94_100_000, controls: ["fidelity"], input_size: 512, hparams: {},
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

test("formatModelInfo shows architecture, size, licence, controls and the node to use", async () => {
  const { module } = await load("facemend_model_info.js");
  const text = module.formatModelInfo(CODEFORMER);
  for (const part of ["CodeFormer [codeformer]", "94.1M parameters", "licence: S-Lab 1.0 (non-commercial)",
    "controls: fidelity", "FaceMendCodebookRestore"]) assert.ok(text.includes(part), `${part} not in ${text}`);
  assert.match(module.formatModelInfo({ ...CODEFORMER, controls: [] }), /do not apply/);
  assert.equal(module.formatModelInfo({ error: "bad file" }), "⚠ bad file");
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

const RESTOREFORMER = { ...CODEFORMER, name: "a.pth", arch: "restoreformer", display_name: "RestoreFormer", controls: [] };
const GFPGAN = { ...CODEFORMER, name: "g.pth", arch: "gfpgan_clean", display_name: "GFPGAN v1 clean", family: "gfpgan",
  controls: ["strength", "strength_coarse", "strength_fine", "noise", "seed", "face_index"] };

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
  // nothing is greyed out on a guess: no info, an error, or a node without model controls
  assert.deepEqual(marks("FaceMendRestoreFaces", null), {});
  assert.deepEqual(marks("FaceMendRestoreFaces", { error: "bad file" }), {});
  assert.deepEqual(marks("FaceMendDiffusionRefine", RESTOREFORMER), {});
});

function consumerNode(env, type, id) {
  const widgets = Object.keys({ FaceMendRestoreFaces: { fidelity: 1, strength: 1, opacity: 1 },
    FaceMendCodebookRestore: { fidelity: 1, per_face_fidelity: 1 } }[type]).map((name) => ({ name, type: "number", value: 0.5 }));
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
  const restore = consumerNode(env, "FaceMendCodebookRestore", 3);
  ext.nodeCreated(restore);
  connect(loader, restore);
  ext.loadedGraphNode(restore);
  assert.ok(!restore.widgets[0].disabled, "loader info still loading");
  release({ status: 200, body: RESTOREFORMER });
  await settle();
  assert.deepEqual(restore.widgets.map((w) => w.disabled), [true, true]);
});

// --- face boxes ----------------------------------------------------------------------------

const FACES = [
  { frame: 0, index: 0, box: [100, 50, 300, 250], score: 0.99 },
  { frame: 1, index: 1, box: [10, 0, 60, 40], score: 0.8, image_size: [400, 400] },
];

test("facesForPreview maps previews to frames", async () => {
  const { module } = await load("facemend_faces.js");
  assert.deepEqual(module.facesForPreview(FACES, null, 0).map((f) => f.index), [0]);
  assert.deepEqual(module.facesForPreview(FACES, null, 1).map((f) => f.index), [1]);
  assert.deepEqual(module.facesForPreview(FACES, [1, 0], 0).map((f) => f.index), [1]);
  assert.deepEqual(module.facesForPreview([{ index: 3, box: [0, 0, 1, 1] }], null, 0).map((f) => f.index), [3]);
  assert.deepEqual(module.facesForPreview([{ frame: 0, index: 3, box: [0, 0] }], null, 0), []);
});

test("drawFaces strokes each box (scaled to the preview) and labels it with its index", async () => {
  const { module } = await load("facemend_faces.js");
  const ctx = new FakeContext();
  module.drawFaces(ctx, 200, 200, [FACES[1]]); // a 400 px frame shown in a 200 px preview
  const strokes = ctx.calls.filter((c) => c[0] === "strokeRect");
  assert.deepEqual(strokes, [["strokeRect", 5, 0, 25, 20]]);
  const labels = ctx.calls.filter((c) => c[0] === "fillText").map((c) => c[1]);
  assert.deepEqual(labels, ["1"]);
  const [, , labelY] = ctx.calls.find((c) => c[0] === "fillRect");
  assert.ok(labelY >= 0, "label stays inside the image for a box at the top edge");
  assert.notEqual(module.faceColour(0), module.faceColour(1));
});

test("a FaceMend node's previews are replaced once by annotated copies after it runs", async () => {
  const { env, ext } = await load("facemend_faces.js");
  const node = fakeNode("FaceMendDetect");
  const seen = [];
  node.onExecuted = (output) => seen.push(output);
  ext.nodeCreated(node);
  const output = { images: [{ filename: "p.png" }], facemend_faces: FACES };
  node.onExecuted(output);
  assert.deepEqual(seen, [output], "a previous onExecuted still runs");

  const original = [new FakeImage(400, 300)];
  node.imgs = original;
  node.onDrawForeground({});
  await settle();
  assert.notEqual(node.imgs, original);
  assert.equal(node.imgs.length, 1);
  assert.equal(node.imgs[0].naturalWidth, 400);
  assert.match(node.imgs[0].src, /^data:image\/png/);
  const annotated = node.imgs;
  node.onDrawForeground({});
  await settle();
  assert.equal(node.imgs, annotated, "not annotated twice");

  node.onExecuted({ images: [], facemend_faces: [] });
  const fresh = [new FakeImage(64, 64)];
  node.imgs = fresh;
  node.onDrawForeground({});
  await settle();
  assert.equal(node.imgs, fresh, "nothing drawn when no faces were found");
  assert.equal(env.registered.length, 1);
});

test("previews still loading are annotated once they are loaded; other nodes are not hooked", async () => {
  const { ext } = await load("facemend_faces.js");
  const node = fakeNode("FaceMendRestoreFaces");
  ext.nodeCreated(node);
  node.onExecuted({ facemend_faces: FACES });
  const loading = [new FakeImage(0, 0)];
  node.imgs = loading;
  node.onDrawForeground({});
  await settle();
  assert.equal(node.imgs, loading);
  loading[0].naturalWidth = 400; loading[0].naturalHeight = 300; loading[0].complete = true;
  node.onDrawForeground({});
  await settle();
  assert.notEqual(node.imgs, loading);

  const other = fakeNode("PreviewImage");
  ext.nodeCreated(other);
  assert.equal(other.onExecuted, undefined);
  assert.equal(other.onDrawForeground, undefined);
});

test("faces restored from history outputs reach the node", async () => {
  const { env, ext } = await load("facemend_faces.js");
  const node = fakeNode("FaceMendDetect", [], 7);
  env.nodes.push(node);
  ext.nodeCreated(node);
  ext.onNodeOutputsUpdated({ 7: { images: [], facemend_faces: FACES }, 8: { images: [] } });
  assert.equal(node.facemendFaces, FACES);
});
