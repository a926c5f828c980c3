"""No face never breaks the graph (live ComfyUI over HTTP).

A picture without faces goes through Detect; core nodes on the crops output (Preview Image, Save
Image, Image Scale, Image Invert) keep working on Detect's placeholder crop, the restore node
passes it through without running its model, and Paste Back hands the image through unchanged,
bit for bit, to Save Image. A face index that does not exist is named in Detect's summary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from fm_testing.checkpoints import official, write_official

NO_FACE_IMAGE = "fm_no_face.png"  # conftest.py writes it into the server's input folder
FACE_IMAGE = "fm_astronaut.png"


@pytest.fixture(scope="module")
def codeformer_file(live_comfy) -> str:  # noqa: ANN001
    f = official("codeformer.pth")
    if not (live_comfy.models[f.kind] / f.name).is_file():
        write_official(live_comfy.models[f.kind], f)
    return f.name


def _graph(image: str, codeformer: str, **detect: Any) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "FaceMendDetectorLoader", "inputs": {"detector": "retinaface_mobile0.25", "parser": "none"}},
        "3": {"class_type": "FaceMendDetect", "inputs": {"detector": ["2", 0], "image": ["1", 0], "crop_size": 256, **detect}},
        "4": {"class_type": "FaceMendModelLoader", "inputs": {"model_name": codeformer, "precision": "fp32"}},
        "5": {"class_type": "FaceMendCodebookRestore", "inputs": {"crops": ["3", 0], "model": ["4", 0], "fidelity": 0.5}},
        "6": {"class_type": "FaceMendPasteBack", "inputs": {"image": ["1", 0], "crops": ["5", 0], "faces": ["3", 1]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "fm_test/no_face"}},
        # core nodes straight on the crops output: the first place an empty batch used to fail
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        "9": {"class_type": "ImageScale", "inputs": {"image": ["3", 0], "upscale_method": "bilinear", "width": 128,
                                                     "height": 128, "crop": "disabled"}},
        "10": {"class_type": "ImageInvert", "inputs": {"image": ["9", 0]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "fm_test/no_face_crops"}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "fm_test/no_face_restored"}},
    }


def _complete(comfy, prompt: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN001
    """Fill every widget input a node requires with its default from the live /object_info (an API
    prompt must name them all)."""
    schemas = comfy.object_info()
    for entry in prompt.values():
        required = schemas[entry["class_type"]]["input"].get("required", {})
        for name, spec in required.items():
            if name in entry["inputs"]:
                continue
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if "default" in options:
                entry["inputs"][name] = options["default"]
            elif isinstance(spec[0], list) and spec[0]:
                entry["inputs"][name] = spec[0][0]
            elif spec[0] == "COMBO" and options.get("options"):
                entry["inputs"][name] = options["options"][0]
    return prompt


def _text(comfy, entry: dict[str, Any], node: str) -> str:  # noqa: ANN001
    return " ".join(comfy.ui(entry, node).get("text", []))


def test_a_picture_without_faces_runs_through_every_node(comfy, live_comfy, codeformer_file: str) -> None:  # noqa: ANN001
    entry = comfy.run(_complete(comfy, _graph(NO_FACE_IMAGE, codeformer_file)), timeout=300)
    assert comfy.succeeded(entry), comfy.execution_error(entry)
    assert "no face found" in _text(comfy, entry, "3")
    assert "nothing restored" in _text(comfy, entry, "5"), "the model must not run on the placeholder"
    assert "passed through" in _text(comfy, entry, "6")
    (saved,) = comfy.images(entry, "7")
    source = np.asarray(Image.open(live_comfy.input_dir / NO_FACE_IMAGE).convert("RGB"))
    assert np.array_equal(saved, source), "the image passes through Paste Back bit for bit"
    (crops,) = comfy.images(entry, "11")
    assert crops.shape == (128, 128, 3)  # the core nodes after Detect ran on the placeholder
    assert comfy.images(entry, "12")[0].shape == (256, 256, 3)


def test_a_face_index_that_does_not_exist_is_named(comfy, live_comfy, codeformer_file: str) -> None:  # noqa: ANN001
    entry = comfy.run(_complete(comfy, _graph(FACE_IMAGE, codeformer_file, select="indices", indices="5")), timeout=300)
    assert comfy.succeeded(entry), comfy.execution_error(entry)
    text = _text(comfy, entry, "3")
    assert "1 face(s) found" in text and "index 5 does not exist; valid: 0" in text, text
    (saved,) = comfy.images(entry, "7")
    source = np.asarray(Image.open(live_comfy.input_dir / FACE_IMAGE).convert("RGB"))
    assert np.array_equal(saved, source)


def test_cancel_stops_codebook_restore_within_about_one_face(comfy, live_comfy, codeformer_file: str) -> None:  # noqa: ANN001
    """/interrupt during Codebook Restore of 8 faces (CodeFormer on the CPU) stops it after the face
    in progress: the progress bar moves face by face, and the run ends long before the batch would.
    The measured latency is printed (run with -s to see it); the bound here is generous on purpose."""
    import json
    import time

    import websocket

    prompt = _complete(comfy, {
        "1": {"class_type": "LoadImage", "inputs": {"image": FACE_IMAGE}},
        "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 8}},
        "3": {"class_type": "FaceMendDetectorLoader", "inputs": {"detector": "retinaface_mobile0.25", "parser": "none"}},
        "4": {"class_type": "FaceMendDetect", "inputs": {"detector": ["3", 0], "image": ["2", 0], "crop_size": 512}},
        "5": {"class_type": "FaceMendModelLoader", "inputs": {"model_name": codeformer_file, "precision": "fp32"}},
        "6": {"class_type": "FaceMendCodebookRestore", "inputs": {"crops": ["4", 0], "model": ["5", 0], "fidelity": 0.4}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    })
    ws = websocket.create_connection(f"ws://127.0.0.1:{comfy.port}/ws?clientId={comfy.client_id}", timeout=600)
    try:
        prompt_id = comfy.queue(prompt)
        first = None
        deadline = time.monotonic() + 600
        while first is None and time.monotonic() < deadline:
            msg = ws.recv()
            if isinstance(msg, str):
                data = json.loads(msg)
                d = data.get("data", {})
                if data.get("type") == "progress" and d.get("node") == "6" and d.get("prompt_id") == prompt_id:
                    first = (d["value"], d["max"], time.monotonic())
        assert first is not None, "Codebook Restore never reported progress"
    finally:
        ws.close()
    value, total, _ = first
    assert total == 8 and value == 1, f"the bar moves face by face: {value}/{total}"
    started = time.monotonic()
    comfy.interrupt(prompt_id)
    entry = comfy.wait(prompt_id, timeout=600)
    latency = time.monotonic() - started
    assert not comfy.succeeded(entry)
    (msg,) = comfy.messages(entry, "execution_interrupted")
    assert msg["node_type"] == "FaceMendCodebookRestore"
    print(f"\ninterrupt latency, Codebook Restore, 8 CodeFormer faces on the CPU: {latency:.2f} s")
    assert latency < 60, latency
