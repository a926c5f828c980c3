"""The example workflows and the real FaceMend nodes in a live ComfyUI (``COMFYUI_PATH``).

- every example matches the live ``/object_info`` (ours and core nodes), and the core schemas
  recorded in ``tests/data/core_nodes.json`` are refreshed from it;
- random-weight checkpoints in each official container (``params_ema``, Lightning ``vqvae.``,
  raw and ``module.`` Refusion) are recognised by the model-info route;
- the API-format equivalents of the examples (converted from the UI files by
  ``fm_testing.workflows.ui_to_api``, the conversion the browser test checks against the
  frontend's own) run, and their saved images and masks are checked: the right size, pixels away
  from the face untouched, the face changed. The SD examples run only with
  ``COMFYUI_SD_CHECKPOINT`` (a Stable Diffusion 1.x checkpoint file); otherwise they are only
  validated (here against ``/object_info``, in the browser test by loading them);
- bad input comes back readable: a codebook model wired into CS-SFT Modulate, a model file
  missing from a saved workflow, an unreadable file in the model folder, a workflow saved by an
  older version with fewer widgets;
- ``/interrupt`` stops a long Diffusion Refine between two steps.

Substitutions, stated here once: the detector runs the RetinaFace MobileNet weights from
``../shared/weights`` (``retinaface_mobile0.25``; the examples name the ResNet-50 one), the input
image is the astronaut photo, the two CodeFormer chains cut 256 px crops (CodeFormer still runs at
512), the video example uses 2 frames, the refine example runs 4 steps (1 of them at strength
0.3), and the GFPGAN runs, the one-node example's included (CodeFormer runs
in the two chain examples), use ``GFPGANv1.pth`` written from the small GFPGAN v1 layout
(``tests/golden/gfpgan/layout_gfpgan_v1_small.json``: 15 M parameters instead of 87 M), so the
suite stays within minutes on a CPU. The full-size ``GFPGANv1.4.pth`` is still written and
recognised.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fm_testing.checkpoints import OFFICIAL_FILES, OfficialFile, write_official
from fm_testing.workflows import (
    CORE_NODES_FILE,
    EXAMPLES_DIR,
    VIRTUAL_NODES,
    check_workflow,
    core_subset,
    example_paths,
    facemend_schemas,
    load_core_nodes,
    load_workflow,
    ui_to_api,
)

FACE_IMAGE = "fm_astronaut.png"  # conftest.py writes it into the server's input folder
FACE_BOX = (178, 60, 273, 180)  # the astronaut's face (RetinaFace box, see shared/weights/README.md)
FACE_CORE = (195, 75, 255, 165)  # eyes, nose and mouth: inside the fully opaque part of the paste mask
SMALL_GFPGAN = OfficialFile("GFPGANv1.pth", "facerestore_models", "gfpgan/layout_gfpgan_v1_small.json", "params_ema", "gfpgan_v1")
BROKEN_FILE = "broken_download.pth"
SD_EXAMPLES = ("FaceMend 6 - SD txt2img, then Restore Faces", "FaceMend 7 - SD img2img on the face crops")
SD_CHECKPOINT = os.environ.get("COMFYUI_SD_CHECKPOINT")


@pytest.fixture(scope="module")
def official_models(live_comfy) -> dict[str, Path]:  # noqa: ANN001
    """The official files (random weights), the small GFPGANv1.pth and a broken file, written once."""
    written = {}
    for f in (*OFFICIAL_FILES, SMALL_GFPGAN):
        path = live_comfy.models[f.kind] / f.name
        if not path.is_file():
            write_official(live_comfy.models[f.kind], f)
        written[f.name] = path
    (live_comfy.models["facerestore_models"] / BROKEN_FILE).write_bytes(b"PK\x03\x04 this download was cut short")
    return written


@pytest.fixture(scope="module")
def live_schemas(comfy, official_models) -> dict[str, Any]:  # noqa: ANN001
    """/object_info after the model files were written (so the model combos list them)."""
    return comfy.object_info(refresh=True)


def _example(name: str) -> dict[str, Any]:
    return load_workflow(EXAMPLES_DIR / f"{name}.json")


def _set(prompt: dict[str, Any], class_type: str, **inputs: Any) -> None:
    hits = [v for v in prompt.values() if v["class_type"] == class_type]
    assert hits, f"no {class_type} in the prompt"
    for entry in hits:
        entry["inputs"].update(inputs)


def _prompt(name: str, schemas: dict[str, Any], **overrides: dict[str, Any]) -> dict[str, Any]:
    """The example as an API prompt, with this suite's substitutions (module docstring)."""
    prompt = ui_to_api(_example(name), schemas)
    types = {v["class_type"] for v in prompt.values()}
    if "LoadImage" in types:
        _set(prompt, "LoadImage", image=FACE_IMAGE)
    if "FaceMendDetectorLoader" in types:
        _set(prompt, "FaceMendDetectorLoader", detector="retinaface_mobile0.25")
    for v in prompt.values():
        if v["class_type"] == "FaceMendModelLoader" and v["inputs"]["model_name"].startswith("GFPGAN"):
            v["inputs"]["model_name"] = SMALL_GFPGAN.name
    if name == "FaceMend 1 - Restore faces in one node":  # CodeFormer runs in the chain examples
        _set(prompt, "FaceMendModelLoader", model_name=SMALL_GFPGAN.name)
        if v["class_type"] == "SaveImage":
            v["inputs"]["filename_prefix"] = f"fm_test/{name}"
    for class_type, inputs in overrides.items():
        _set(prompt, class_type, **inputs)
    return prompt


def _node_id(prompt: dict[str, Any], class_type: str) -> str:
    return next(k for k, v in prompt.items() if v["class_type"] == class_type)


def _input_photo(live_comfy) -> np.ndarray:  # noqa: ANN001
    from PIL import Image

    return np.asarray(Image.open(live_comfy.input_dir / FACE_IMAGE).convert("RGB"))


def _run_ok(comfy, prompt: dict[str, Any], timeout: float = 400) -> dict[str, Any]:  # noqa: ANN001
    entry = comfy.run(prompt, timeout=timeout)
    assert comfy.succeeded(entry), json.dumps(comfy.execution_error(entry), indent=1)[:3000]
    return entry


def _face_window(pad: int = 150) -> tuple[slice, slice]:
    x0, y0, x1, y1 = FACE_BOX
    return slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad)


def _check_restored(out: np.ndarray, src: np.ndarray) -> None:
    """Same size; the face changed; away from its aligned crop, bit-identical (PNG round trip)."""
    assert out.shape == src.shape
    ys, xs = _face_window()
    diff = np.abs(out.astype(int) - src.astype(int)).max(-1)
    x0, y0, x1, y1 = FACE_BOX
    assert diff[y0:y1, x0:x1].mean() > 2, "the face was not changed"
    outside = np.ones(diff.shape, bool)
    outside[ys, xs] = False
    assert diff[outside].max() == 0, "pixels away from the face were changed"


# --- schemas ---------------------------------------------------------------------------------


def test_examples_match_the_live_object_info_and_core_nodes_file_is_refreshed(live_schemas) -> None:  # noqa: ANN001
    core = load_core_nodes()
    for path in example_paths():
        problems = check_workflow(load_workflow(path), live_schemas, core["file_inputs"])
        assert not problems, f"{path.name}:\n" + "\n".join(problems)
    # the offline schemas of our nodes agree with what the server declares
    for node_id, schema in facemend_schemas().items():
        live = live_schemas[node_id]
        assert live["input_order"] == {k: v for k, v in schema["input_order"].items() if v}, node_id
        assert live["output"] == schema["output"] and live["output_name"] == schema["output_name"], node_id
    used = {n["type"] for p in example_paths() for n in load_workflow(p)["nodes"]}
    core_types = used - set(facemend_schemas()) - VIRTUAL_NODES
    fresh = core_subset(live_schemas, core_types, core["file_inputs"])
    if fresh != core:
        CORE_NODES_FILE.write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")
        pytest.fail(f"{CORE_NODES_FILE.name} was out of date with this ComfyUI and has been refreshed: review and commit it")


def test_official_containers_are_recognised(comfy, official_models) -> None:  # noqa: ANN001
    for f in (*OFFICIAL_FILES, SMALL_GFPGAN):
        name = f.name if f.kind == "facerestore_models" else f"refusion/{f.name}"
        r = comfy.get("/facemend/model_info", kind="facerestore_models", name=name)
        assert r.status_code == 200, r.text
        assert r.json()["arch"] == f.arch, (f, r.json())
    r = comfy.get("/facemend/model_info", kind="facerestore_models", name=BROKEN_FILE)
    assert r.status_code == 422 and BROKEN_FILE in r.json()["error"], r.text


# --- the examples run ----------------------------------------------------------------------
# Order matters for speed: ComfyUI reuses a node's output when the next prompt has the same node
# with the same inputs, so the refine example reuses the chain's detection and CodeFormer crops.


def test_modular_codebook_chain_runs(comfy, live_comfy, live_schemas) -> None:  # noqa: ANN001
    prompt = _prompt("FaceMend 2 - Detect, Codebook Restore, Paste Back", live_schemas, FaceMendDetect={"crop_size": 256})
    entry = _run_ok(comfy, prompt)
    (out,) = comfy.images(entry, _node_id(prompt, "SaveImage"))
    _check_restored(out, _input_photo(live_comfy))
    ui = comfy.ui(entry, _node_id(prompt, "FaceMendCodebookRestore"))
    assert "CodeFormer: fidelity 0.5" in json.dumps(ui)


def test_codebook_then_diffusion_refine_runs(comfy, live_comfy, live_schemas) -> None:  # noqa: ANN001
    # detection and fidelity as in the chain test, so ComfyUI reuses its detection and CodeFormer crops
    prompt = _prompt("FaceMend 8 - CodeFormer, then Diffusion Refine, slow on CPU", live_schemas, FaceMendDiffusionRefine={"steps": 4},
                     FaceMendCodebookRestore={"fidelity": 0.5}, FaceMendDetect={"crop_size": 256})
    entry = _run_ok(comfy, prompt)
    (out,) = comfy.images(entry, _node_id(prompt, "SaveImage"))
    _check_restored(out, _input_photo(live_comfy))


def test_one_node_restore_runs_with_its_mask(comfy, live_comfy, live_schemas) -> None:  # noqa: ANN001
    prompt = _prompt("FaceMend 1 - Restore faces in one node", live_schemas)
    entry = _run_ok(comfy, prompt)
    src = _input_photo(live_comfy)
    (out,) = comfy.images(entry, _node_id(prompt, "SaveImage"))
    _check_restored(out, src)
    (mask,) = comfy.images(entry, _node_id(prompt, "PreviewImage"))
    assert mask.shape == src.shape
    x0, y0, x1, y1 = FACE_CORE
    assert mask[y0:y1, x0:x1].min() >= 240, "the face is restored at full opacity"
    ys, xs = _face_window()
    outside = mask.copy()
    outside[ys, xs] = 0
    assert outside.max() == 0, "the mask reaches beyond the face"
    text = json.dumps(comfy.ui(entry, _node_id(prompt, "FaceMendRestoreFaces")))
    assert "1 face(s)" in text and "fidelity does not apply" in text  # a GFPGAN model ran here


def test_gfpgan_cs_sft_example_runs(comfy, live_comfy, live_schemas) -> None:  # noqa: ANN001
    prompt = _prompt("FaceMend 3 - GFPGAN with CS-SFT strength", live_schemas)
    entry = _run_ok(comfy, prompt)
    (out,) = comfy.images(entry, _node_id(prompt, "SaveImage"))
    _check_restored(out, _input_photo(live_comfy))
    assert "strength 0.8 (coarse x1.2, fine x0.7)" in json.dumps(comfy.ui(entry, _node_id(prompt, "FaceMendCSSFTModulate")))


def test_video_batch_example_runs(comfy, live_comfy, live_schemas) -> None:  # noqa: ANN001
    prompt = _prompt("FaceMend 9 - Video batch with face tracks", live_schemas, RepeatImageBatch={"amount": 2})
    entry = _run_ok(comfy, prompt)
    frames = comfy.images(entry, _node_id(prompt, "SaveImage"))
    assert len(frames) == 2
    src = _input_photo(live_comfy)
    for frame in frames:
        _check_restored(frame, src)  # frame 1 follows the face from frame 0 (detect_every 2)


@pytest.mark.parametrize("name", SD_EXAMPLES)
def test_stable_diffusion_examples_run(comfy, live_comfy, live_schemas, name: str) -> None:  # noqa: ANN001
    if not SD_CHECKPOINT:
        pytest.skip("COMFYUI_SD_CHECKPOINT is not set: the SD examples are only validated (schemas, browser load)")
    ckpt = _example(name)
    loader = next(n for n in ckpt["nodes"] if n["type"] == "CheckpointLoaderSimple")
    target = live_comfy.models["checkpoints"] / loader["widgets_values"][0]
    if not target.exists():
        os.symlink(Path(SD_CHECKPOINT).resolve(), target)
    schemas = comfy.object_info(refresh=True)
    over: dict[str, dict[str, Any]] = {"KSampler": {"steps": 4}}
    if name == "FaceMend 6 - SD txt2img, then Restore Faces":
        over["EmptyLatentImage"] = {"width": 512, "height": 512}
    prompt = _prompt(name, schemas, **over)
    entry = _run_ok(comfy, prompt, timeout=1800)
    (out,) = comfy.images(entry, _node_id(prompt, "SaveImage"))
    assert out.shape[:2] == (512, 512) and out.std() > 1
    if name == "FaceMend 7 - SD img2img on the face crops":
        _check_restored(out, _input_photo(live_comfy))


# --- bad input ---------------------------------------------------------------------------------


def test_codebook_model_in_cs_sft_modulate_is_a_readable_error(comfy, live_schemas) -> None:  # noqa: ANN001
    # RestoreFormer's Lightning checkpoint: the server loads it fully (vqvae. prefix), then refuses it
    prompt = _prompt("FaceMend 3 - GFPGAN with CS-SFT strength", live_schemas, FaceMendModelLoader={"model_name": "RestoreFormer.ckpt"})
    entry = comfy.run(prompt, timeout=300)
    err = comfy.execution_error(entry)
    assert err is not None and err["node_type"] == "FaceMendCSSFTModulate", entry["status"]
    assert "RestoreFormer" in err["exception_message"] and "FaceMend Codebook Restore" in err["exception_message"]
    # the loader before it did run: the file itself is fine
    assert err["node_id"] == _node_id(prompt, "FaceMendCSSFTModulate")


def test_saved_workflow_with_a_missing_model_file_is_rejected_readably(comfy, live_schemas) -> None:  # noqa: ANN001
    prompt = _prompt("FaceMend 2 - Detect, Codebook Restore, Paste Back", live_schemas, FaceMendModelLoader={"model_name": "codeformer_v0.1.0_custom.pth"})
    status, body = comfy.try_queue(prompt)
    # ComfyUI refuses the outputs that depend on the loader and runs the others (Detect's preview)
    assert status in (200, 400), body
    errors = json.dumps(body["node_errors"][_node_id(prompt, "FaceMendModelLoader")])
    assert "codeformer_v0.1.0_custom.pth" in errors and "model_name" in errors and "not in" in errors
    if status == 200:
        assert set(body["node_errors"]) == {_node_id(prompt, "FaceMendModelLoader")}
        assert comfy.succeeded(comfy.wait(body["prompt_id"], timeout=120))


def test_unreadable_model_file_is_a_readable_error_and_the_server_lives_on(comfy, live_schemas) -> None:  # noqa: ANN001
    prompt = _prompt("FaceMend 2 - Detect, Codebook Restore, Paste Back", live_schemas, FaceMendModelLoader={"model_name": BROKEN_FILE})
    entry = comfy.run(prompt, timeout=120)
    err = comfy.execution_error(entry)
    assert err is not None and err["node_type"] == "FaceMendModelLoader", entry["status"]
    assert BROKEN_FILE in err["exception_message"]
    assert comfy.get("/object_info/FaceMendModelLoader").status_code == 200


def test_older_workflow_without_a_newer_widget_is_named_by_the_server(comfy, live_schemas) -> None:  # noqa: ANN001
    """An API prompt saved before 'opacity' existed: the server names the missing input (the
    frontend fills the default when it loads an older UI file: see test_browser.py)."""
    prompt = _prompt("FaceMend 1 - Restore faces in one node", live_schemas)
    node = _node_id(prompt, "FaceMendRestoreFaces")
    del prompt[node]["inputs"]["opacity"]
    status, body = comfy.try_queue(prompt)
    assert status == 400, body
    text = json.dumps(body["node_errors"][node])
    assert "opacity" in text and "missing" in text.lower()


def test_interrupt_stops_a_long_diffusion_refine(comfy, live_schemas) -> None:  # noqa: ANN001
    import websocket

    prompt = _prompt(
        "FaceMend 8 - CodeFormer, then Diffusion Refine, slow on CPU", live_schemas,
        FaceMendDetect={"crop_size": 128},
        FaceMendDiffusionRefine={"steps": 1000, "strength": 1.0},
    )
    # refine the detected crops directly (no CodeFormer pass), from the DataParallel-saved file
    refine, detect = _node_id(prompt, "FaceMendDiffusionRefine"), _node_id(prompt, "FaceMendDetect")
    prompt[refine]["inputs"]["image"] = [detect, 0]
    del prompt[_node_id(prompt, "FaceMendCodebookRestore")]
    for k, v in list(prompt.items()):
        if v["class_type"] == "FaceMendModelLoader":
            if v["inputs"]["model_name"].startswith("refusion/"):
                v["inputs"]["model_name"] = "refusion/refusion_dataparallel.pth"
            else:
                del prompt[k]  # CodeFormer's loader: nothing uses it now
    ws = websocket.create_connection(f"ws://127.0.0.1:{comfy.port}/ws?clientId={comfy.client_id}", timeout=300)
    try:
        prompt_id = comfy.queue(prompt)
        steps_seen = 0
        deadline = time.monotonic() + 300
        while steps_seen < 2 and time.monotonic() < deadline:
            msg = ws.recv()
            if isinstance(msg, str):
                data = json.loads(msg)
                if data.get("type") == "progress" and data["data"].get("node") == refine and data["data"].get("prompt_id") == prompt_id:
                    steps_seen += 1
        assert steps_seen >= 2, "the refine never reported progress"
    finally:
        ws.close()
    started = time.monotonic()
    comfy.interrupt(prompt_id)
    entry = comfy.wait(prompt_id, timeout=120)
    assert time.monotonic() - started < 60
    assert not comfy.succeeded(entry)
    (msg,) = comfy.messages(entry, "execution_interrupted")
    assert msg["node_type"] == "FaceMendDiffusionRefine"
