"""The web extension in a real browser: headless Chromium driven over the DevTools protocol.

Needs ``COMFYUI_PATH`` (the live server, see conftest.py), a Chromium (``$CHROMIUM_PATH``, or
``chromium``/``chromium-browser`` on PATH; Debian: ``apt-get install chromium``) and the
``websocket-client`` package; skipped with the reason otherwise. No browser is downloaded.

What it checks, in the page ComfyUI serves:

1. both FaceMend extensions are registered (``app.extensions``);
2. a node with a model-file combo shows what the chosen file is, as soon as it is chosen
   through the widget (the architecture when a registered architecture's layout is available
   under ``tests/golden``, otherwise the server's readable error), identical to the route's answer;
   at the loader's default width the whole text is visible;
3. after a run, each FaceMend node shows its summary on the node (a picture without faces runs
   through Detect, Codebook Restore and Paste Back, and each says so); a model wired into a node
   of another family greys out that node's controls and flags it on the canvas before Run;
4. every example workflow is listed and served by ComfyUI's template route (with its thumbnail),
   loads without missing nodes, and the frontend's own API conversion (``graphToPrompt``) equals
   ``fm_testing.workflows.ui_to_api``, which the live tests use to run them;
5. in the one-node example, the control CodeFormer does not take (strength) is greyed out;
6. a workflow saved before a widget existed (one value fewer) loads with that widget's default.

Screenshots go to ``tests/integration/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
GOLDEN = HERE.parents[1] / "tests" / "golden"
FACE_IMAGE = "fm_astronaut.png"  # written by conftest.py into the server's input folder
NO_FACE_IMAGE = "fm_no_face.png"  # likewise
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--window-size=1400,900",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)


def _chromium() -> str | None:
    env = os.environ.get("CHROMIUM_PATH")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


class CDP:
    """A minimal synchronous Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        assert ws_url.startswith("ws://127.0.0.1:"), ws_url
        self._ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self._id = 0
        self.console: list[str] = []

    def close(self) -> None:
        self._ws.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg_id = self._id
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("method") == "Runtime.consoleAPICalled":
                args = msg["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.console.append("EXCEPTION " + json.dumps(msg["params"]["exceptionDetails"])[:500])
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
        raise TimeoutError(f"no answer to {method}")

    def evaluate(self, expression: str) -> Any:
        """Evaluate JS (awaiting promises) and return its JSON value."""
        res = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            detail = res["exceptionDetails"]
            text = detail.get("exception", {}).get("description") or detail.get("text")
            raise RuntimeError(f"JS error: {text}\nin: {expression[:300]}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60, what: str = "") -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise TimeoutError(f"timed out waiting for {what or expression}; last value {value!r}; console: {self.console[-15:]}")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@pytest.fixture(scope="module")
def browser(live_comfy) -> Iterator[CDP]:  # noqa: ANN001
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (set CHROMIUM_PATH, or apt-get install chromium)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        pytest.skip("websocket-client is not installed (pip install websocket-client)")
    import requests

    profile = Path(tempfile.mkdtemp(prefix="facemend-chromium-"))
    proc = subprocess.Popen(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    cdp = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=30).json()
        page = next(t for t in targets if t.get("type") == "page")
        cdp = CDP(page["webSocketDebuggerUrl"])
        cdp.call("Runtime.enable")
        cdp.call("Page.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
        yield cdp
    finally:
        if cdp is not None:
            cdp.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        shutil.rmtree(profile, ignore_errors=True)


def _write_sparse_safetensors(path: Path, layout: dict[str, tuple[int, ...]]) -> None:
    """A safetensors file with ``layout``'s keys and shapes and all-zero data, written sparse (no
    disk used for the data). Enough for the model-info route, which reads only the header."""
    header: dict[str, Any] = {}
    offset = 0
    for key, shape in layout.items():
        n = 4
        for d in shape:
            n *= int(d)
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)


def _known_checkpoint(live_comfy) -> tuple[str, str, str] | None:  # noqa: ANN001
    """(kind, file name, arch) of a file in a registered architecture's official layout, written
    from a ``tests/golden/**/*.json`` layout; ``None`` when no registered arch has one yet."""
    import torch

    from facemend.model_loaders import default_registry

    registry = default_registry()
    if not registry.specs:
        return None
    for path in sorted(GOLDEN.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
            layout = {k: tuple(int(d) for d in v) for k, v in data.items()}
        except (ValueError, TypeError, AttributeError):
            continue
        if not layout:
            continue
        meta = {k: torch.empty(s, device="meta") for k, s in layout.items()}
        try:
            spec = registry.detect(meta)
        except Exception:  # noqa: BLE001 - not a layout of a registered arch
            continue
        kind = "refusion" if spec.family == "refusion" else "facerestore_models"
        name = f"browser_{spec.id}.safetensors"
        _write_sparse_safetensors(live_comfy.models[kind] / name, layout)
        return kind, name, spec.id
    return None


def _model_node_type(object_info: dict[str, Any], kind: str) -> tuple[str, str]:
    """(node type, input name) of a node with a model-file combo of ``kind``; the real loader
    when it exists, else the probe."""
    candidates = []
    for node_type, info in object_info.items():
        for group in ("required", "optional"):
            for name, spec in info["input"].get(group, {}).items():
                if len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("facemend_model_kind") == kind:
                    candidates.append((node_type, name))
    candidates.sort(key=lambda c: (c[0] != "FaceMendModelLoader", c[0].startswith("FaceMendProbe"), c[0]))
    assert candidates, f"no node has a {kind} model combo"
    return candidates[0]


def _open_comfyui(browser: CDP, comfy) -> None:  # noqa: ANN001
    browser.call("Page.navigate", url=comfy.base_url + "/")
    browser.wait_for(
        "!!(window.comfyAPI?.app?.app?.graph && window.LiteGraph && window.comfyAPI.app.app.canvas)",
        timeout=120, what="the ComfyUI frontend",
    )
    names = browser.wait_for(
        """(() => { const n = (window.comfyAPI.app.app.extensions ?? []).map(e => e.name);
             return n.includes('FaceMend.ModelInfo') && n.includes('FaceMend.Summary') ? n : null })()""",
        timeout=60, what="FaceMend extensions",
    )
    assert "FaceMend.ModelInfo" in names and "FaceMend.Summary" in names
    # Node types are registered, and the start-up workflow is loaded (so it won't replace ours).
    browser.wait_for(
        """(() => { const t = window.LiteGraph.registered_node_types;
             return !!(t.LoadImage && t.FaceMendProbeAllInputs) && window.comfyAPI.app.app.graph.nodes.length > 0 })()""",
        timeout=60, what="node types and the start-up workflow",
    )
    # Start from an empty graph, at 1:1 scale, so the screenshots show our nodes.
    browser.evaluate("""(() => { const app = window.comfyAPI.app.app; app.graph.clear();
        app.canvas.ds.scale = 1; app.canvas.ds.offset = [90, 70]; app.canvas.setDirty(true, true); return true })()""")


def test_model_info_appears_when_a_file_is_chosen(browser: CDP, comfy, live_comfy, probe_model: str) -> None:  # noqa: ANN001
    known = _known_checkpoint(live_comfy)
    kind, name, arch = known if known else ("facerestore_models", probe_model, None)
    node_type, input_name = _model_node_type(comfy.object_info(refresh=True), kind)
    _open_comfyui(browser, comfy)

    browser.evaluate(f"""(() => {{
        const app = window.comfyAPI.app.app;
        const node = window.LiteGraph.createNode({json.dumps(node_type)});
        node.pos = [60, 80];
        app.graph.add(node);
        window.__fmNode = node;
        return true }})()""")
    browser.wait_for("!!window.__fmNode.facemendInfoElement", timeout=30, what="the info widget")
    # Choose the file the way the combo menu does (widget.setValue -> callback).
    browser.evaluate(f"""(() => {{
        const app = window.comfyAPI.app.app, node = window.__fmNode;
        const w = node.widgets.find(w => w.name === {json.dumps(input_name)});
        if (!w.options.values.includes({json.dumps(name)})) throw new Error('file not listed: ' + w.options.values);
        if (w.value === {json.dumps(name)}) w.value = null;
        w.setValue({json.dumps(name)}, {{ node, canvas: app.canvas }});
        return w.value }})()""")
    state = browser.wait_for(
        f"""(() => {{ const node = window.__fmNode, el = node.facemendInfoElement, name = {json.dumps(name)};
             if (el.dataset.state === 'ok' && node.facemendModelInfo?.name === name) return 'ok';
             if (el.dataset.state === 'error' && el.textContent.includes(name)) return 'error';
             return null }})()""",
        timeout=60, what="the model info text",
    )
    text = browser.evaluate("window.__fmNode.facemendInfoElement.textContent")
    browser.evaluate("window.comfyAPI.app.app.canvas.setDirty(true, true)")
    time.sleep(0.5)
    shot = browser.screenshot(ARTIFACTS / "browser_model_info.png")
    assert shot.stat().st_size > 10_000

    answer = comfy.get("/facemend/model_info", kind=kind, name=name).json()
    if arch is not None:
        assert state == "ok", text
        assert f"[{arch}]" in text and answer["licence"] in text, text
        assert browser.evaluate("window.__fmNode.facemendModelInfo.arch") == arch
    else:  # no architecture registered in this checkout yet: the server's readable error is shown
        assert state == "error", text
        assert answer["error"] in text
    # the info widget is not part of the saved workflow or of the prompt
    saved = browser.evaluate("JSON.stringify(window.__fmNode.serialize().widgets_values)")
    assert "facemend" not in saved.lower() and name in saved


def _write_codeformer(live_comfy) -> str:  # noqa: ANN001
    from fm_testing.checkpoints import official, write_official

    f = official("codeformer.pth")
    if not (live_comfy.models[f.kind] / f.name).is_file():
        write_official(live_comfy.models[f.kind], f)
    return f.name


def test_info_box_shows_all_of_its_text_at_the_default_width(browser: CDP, comfy, live_comfy) -> None:  # noqa: ANN001
    """Both a plain answer (a CodeFormer under its own name) and one with a long note (random weights
    under the official name differ from the official digest) fit the box at the loader's width."""
    official_name = _write_codeformer(live_comfy)
    src = live_comfy.models["facerestore_models"] / official_name
    shutil.copyfile(src, src.with_name("codeformer_renamed.pth"))
    comfy.object_info(refresh=True)
    for name in ("codeformer_renamed.pth", official_name):
        _check_info_box(browser, comfy, name)


def _check_info_box(browser: CDP, comfy, name: str) -> None:  # noqa: ANN001
    _open_comfyui(browser, comfy)
    browser.evaluate(f"""(() => {{
        const app = window.comfyAPI.app.app, node = window.LiteGraph.createNode('FaceMendModelLoader');
        node.pos = [60, 80]; app.graph.add(node); window.__fmLoader = node;
        const w = node.widgets.find(w => w.name === 'model_name');
        w.setValue({json.dumps(name)}, {{ node, canvas: app.canvas }});
        return true }})()""")
    browser.wait_for("window.__fmLoader.facemendModelInfo?.arch === 'codeformer'", timeout=60, what="CodeFormer's info")
    time.sleep(1.0)
    box = browser.evaluate("""(() => { const n = window.__fmLoader, el = n.facemendInfoElement;
        return { text: el.textContent, scroll: el.scrollHeight, client: el.clientHeight, width: n.size[0] } })()""")
    assert "use with: FaceMend Codebook Restore" in box["text"] and "controls: fidelity, per_face_fidelity" in box["text"]
    assert box["scroll"] <= box["client"] + 1, f"the info text is cut off: {box}"
    browser.evaluate("window.comfyAPI.app.app.canvas.setDirty(true, true)")
    time.sleep(0.5)
    assert browser.screenshot(ARTIFACTS / f"browser_info_box_{name}.png").stat().st_size > 10_000


def test_node_summaries_after_a_run_without_faces(browser: CDP, comfy, live_comfy) -> None:  # noqa: ANN001
    name = _write_codeformer(live_comfy)
    comfy.object_info(refresh=True)
    _open_comfyui(browser, comfy)
    browser.evaluate(f"""(() => {{
        const app = window.comfyAPI.app.app, LG = window.LiteGraph, add = (type, x, y) => {{
            const n = LG.createNode(type); n.pos = [x, y]; app.graph.add(n); return n }};
        const load = add('LoadImage', 10, 40);
        load.widgets.find(w => w.name === 'image').value = {json.dumps(NO_FACE_IMAGE)};
        const det = add('FaceMendDetectorLoader', 10, 420);
        det.widgets.find(w => w.name === 'detector').value = 'retinaface_mobile0.25';
        const model = add('FaceMendModelLoader', 10, 560);
        model.widgets.find(w => w.name === 'model_name').value = {json.dumps(name)};
        const detect = add('FaceMendDetect', 360, 40);
        detect.widgets.find(w => w.name === 'crop_size').value = 256;
        const restore = add('FaceMendCodebookRestore', 700, 40);
        const paste = add('FaceMendPasteBack', 700, 260);
        const save = add('SaveImage', 1040, 40);
        save.widgets.find(w => w.name === 'filename_prefix').value = 'fm_browser/no_face_' + Date.now();
        det.connect(0, detect, 0); load.connect(0, detect, 1);
        detect.connect(0, restore, 0); model.connect(0, restore, 1);
        load.connect(0, paste, 0); restore.connect(0, paste, 1); detect.connect(1, paste, 2);
        paste.connect(0, save, 0);
        window.__fm = {{ detect, restore, paste }};
        return true }})()""")
    browser.evaluate("window.comfyAPI.app.app.queuePrompt(0, 1).then(() => true)")
    texts = browser.wait_for(
        """(() => { const f = window.__fm; return f.paste.facemendSummary ? { detect: f.detect.facemendSummary,
             restore: f.restore.facemendSummary, paste: f.paste.facemendSummary } : null })()""",
        timeout=300, what="the node summaries")
    assert texts["detect"] == "no face found: image passed through", texts
    assert "nothing restored" in texts["restore"] and "passed through" in texts["paste"], texts
    saved = browser.evaluate("JSON.stringify(window.__fm.detect.serialize().widgets_values)")
    assert "no face" not in saved, "the summary is never saved in the workflow"
    browser.evaluate("window.comfyAPI.app.app.canvas.setDirty(true, true)")
    time.sleep(0.5)
    assert browser.screenshot(ARTIFACTS / "browser_no_face_summary.png").stat().st_size > 10_000


def test_a_model_in_a_node_of_another_family_is_flagged_before_run(browser: CDP, comfy, live_comfy) -> None:  # noqa: ANN001
    name = _write_codeformer(live_comfy)
    comfy.object_info(refresh=True)
    _open_comfyui(browser, comfy)
    browser.evaluate(f"""(() => {{
        const app = window.comfyAPI.app.app, LG = window.LiteGraph;
        const model = LG.createNode('FaceMendModelLoader'); model.pos = [20, 80]; app.graph.add(model);
        const modulate = LG.createNode('FaceMendCSSFTModulate'); modulate.pos = [420, 80]; app.graph.add(modulate);
        model.connect(0, modulate, 1);
        model.widgets.find(w => w.name === 'model_name').setValue({json.dumps(name)}, {{ node: model, canvas: app.canvas }});
        window.__fm = {{ modulate }};
        return true }})()""")
    state = browser.wait_for("""(() => { const m = window.__fm.modulate; return m.facemendWarning ? {
        warning: m.facemendWarning, greyed: m.widgets.filter(w => w.disabled).map(w => w.name) } : null })()""",
        timeout=60, what="the wrong-family warning")
    assert state["warning"] == "⚠ CodeFormer belongs in FaceMend Codebook Restore"
    assert {"strength", "strength_coarse", "strength_fine", "noise", "seed"} <= set(state["greyed"]), state
    browser.evaluate("window.comfyAPI.app.app.canvas.setDirty(true, true)")
    time.sleep(0.5)
    assert browser.screenshot(ARTIFACTS / "browser_wrong_family.png").stat().st_size > 10_000


# --- example workflows ----------------------------------------------------------------------


def _load_graph(browser: CDP, workflow: dict[str, Any]) -> dict[str, Any]:
    """Load a UI workflow as the template browser does; report node types the frontend lacks."""
    return browser.evaluate(f"""(async () => {{
        const app = window.comfyAPI.app.app, LG = window.LiteGraph;
        const wf = {json.dumps(workflow)};
        app.clean?.();
        await app.loadGraphData(wf, true, true, 'facemend-test');
        const nodes = app.graph.nodes;
        return {{
            count: nodes.length,
            missing: nodes.filter((n) => !LG.registered_node_types[n.type] || n.has_errors).map((n) => n.type),
            types: nodes.map((n) => n.type).sort(),
        }} }})()""")


def test_example_workflows_load_without_missing_nodes_and_convert_like_the_frontend(browser: CDP, comfy) -> None:  # noqa: ANN001
    from fm_testing.workflows import example_paths, load_workflow, ui_to_api

    listed = comfy.get("/api/workflow_templates").json().get("comfyui-facemend", [])
    assert sorted(listed) == sorted(p.stem for p in example_paths())
    schemas = comfy.object_info(refresh=True)
    _open_comfyui(browser, comfy)
    for path in example_paths():
        served = comfy.get(f"/api/workflow_templates/comfyui-facemend/{path.name}")
        assert served.status_code == 200
        workflow = served.json()
        assert workflow == load_workflow(path)
        thumb = comfy.get(f"/api/workflow_templates/comfyui-facemend/{path.stem}.jpg")
        assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
        state = _load_graph(browser, workflow)
        assert state["missing"] == [], (path.name, state)
        assert state["count"] == len(workflow["nodes"]), (path.name, state)
        theirs = browser.evaluate("window.comfyAPI.app.app.graphToPrompt().then((p) => p.output)")
        mine = ui_to_api(workflow, schemas)
        for entry in (*theirs.values(), *mine.values()):
            entry.pop("_meta", None)
        assert theirs == mine, path.name


def test_one_node_example_greys_out_the_control_its_model_does_not_take(browser: CDP, comfy) -> None:  # noqa: ANN001
    from fm_testing.workflows import EXAMPLES_DIR, load_workflow

    _open_comfyui(browser, comfy)
    workflow = load_workflow(EXAMPLES_DIR / "FaceMend 1 - Restore faces in one node.json")
    assert _load_graph(browser, workflow)["missing"] == []
    # codeformer.pth (or, when not in the folder, its catalog entry) takes fidelity, not strength
    widgets = browser.wait_for("""(() => {
        const node = window.comfyAPI.app.app.graph.nodes.find((n) => n.type === 'FaceMendRestoreFaces');
        const w = (name) => node.widgets.find((x) => x.name === name);
        return w('strength').disabled ? { strength: [w('strength').disabled, w('strength').label],
                                          fidelity: [!!w('fidelity').disabled, w('fidelity').label ?? 'fidelity'] } : null })()""",
        timeout=60, what="the strength widget greyed out")
    assert widgets["strength"] == [True, "strength (n/a: CodeFormer)"]
    assert widgets["fidelity"] == [False, "fidelity"]
    prompt = browser.evaluate("window.comfyAPI.app.app.graphToPrompt().then((p) => p.output)")
    restore = next(v for v in prompt.values() if v["class_type"] == "FaceMendRestoreFaces")
    assert restore["inputs"]["strength"] == 1.0, "a greyed-out value is still saved and sent"
    browser.evaluate("""(() => { const app = window.comfyAPI.app.app; app.canvas.ds.scale = 0.8;
        app.canvas.ds.offset = [60, 40]; app.canvas.setDirty(true, true); return true })()""")
    time.sleep(0.5)
    assert browser.screenshot(ARTIFACTS / "browser_example_one_node.png").stat().st_size > 10_000


def test_workflow_from_an_older_version_with_fewer_widgets_still_loads(browser: CDP, comfy) -> None:  # noqa: ANN001
    """Saved before 'opacity' existed (and before auto_per_face / leave_alone_below, the widgets
    added after it): the saved values stay where they were and the newer widgets get their
    defaults, so the prompt the frontend sends is complete."""
    import copy

    from fm_testing.workflows import EXAMPLES_DIR, load_workflow

    base = load_workflow(EXAMPLES_DIR / "FaceMend 1 - Restore faces in one node.json")
    saved = next(n for n in base["nodes"] if n["type"] == "FaceMendRestoreFaces")["widgets_values"]
    _open_comfyui(browser, comfy)
    for kept in (6, 7):  # before opacity; before auto_per_face and leave_alone_below
        workflow = copy.deepcopy(base)
        node = next(n for n in workflow["nodes"] if n["type"] == "FaceMendRestoreFaces")
        node["widgets_values"] = [0.33, *saved[1:kept]]
        state = _load_graph(browser, workflow)
        assert state["missing"] == [] and state["count"] == len(workflow["nodes"])
        prompt = browser.evaluate("window.comfyAPI.app.app.graphToPrompt().then((p) => p.output)")
        inputs = prompt[str(node["id"])]["inputs"]
        assert inputs["fidelity"] == 0.33 and inputs["color_correction"] == saved[5]
        assert inputs["opacity"] == (1.0 if kept == 6 else saved[6])
        assert inputs["auto_per_face"] is False and inputs["leave_alone_below"] == 0.0