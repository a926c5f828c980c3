"""Live ComfyUI: the pack loads, its schemas reach /object_info, prompts run, errors and
interruption come back through the HTTP API, the model-info route and help pages are served.

Needs ``COMFYUI_PATH`` (skipped otherwise; see docs/testing.md). The probe nodes
(``tests/integration/probe_pack``) go through FaceMend's own V3 converter, so these tests check
the converter whatever FaceMend nodes exist yet.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facemend.nodes import all_nodes
from facemend.nodes.spec import NodeDef

HERE = Path(__file__).resolve().parent
FACE_IMAGE = "fm_astronaut.png"  # the harness (conftest.py) writes it into the server's input folder
PACK_MODULE = "custom_nodes.comfyui-facemend"

#: Stable node ids (DESIGN.md); each must have a help page.
DESIGN_NODE_IDS = (
    "FaceMendModelLoader", "FaceMendDetectorLoader", "FaceMendDetect", "FaceMendCodebookRestore",
    "FaceMendCSSFTModulate", "FaceMendDiffusionRefine", "FaceMendPasteBack", "FaceMendRestoreFaces",
)


def _probe_module() -> Any:
    spec = importlib.util.spec_from_file_location("facemend_probe_pack", HERE / "probe_pack" / "__init__.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _input_spec(info: dict[str, Any], name: str) -> tuple[str, str, dict[str, Any]]:
    """(group, type, options) of input ``name`` in an /object_info entry."""
    for group in ("required", "optional"):
        if name in info["input"].get(group, {}):
            entry = info["input"][group][name]
            return group, entry[0], (entry[1] if len(entry) > 1 else {})
    raise AssertionError(f"input {name!r} missing from {info['name']}: {json.dumps(info['input'])[:500]}")


def _check_schema(info: dict[str, Any], node: type[NodeDef]) -> None:
    """The /object_info entry matches the NodeDef it was converted from."""
    assert info["display_name"] == node.DISPLAY_NAME
    assert info["category"] == node.CATEGORY
    assert info["description"] == node.DESCRIPTION
    assert info["output_node"] == node.OUTPUT_NODE
    for spec in node.inputs():
        group, type_, opts = _input_spec(info, spec.id)
        assert group == ("optional" if spec.optional else "required"), spec.id
        assert type_ == spec.type, spec.id
        assert opts.get("tooltip") == spec.tooltip, spec.id
        for attr in ("default", "min", "max", "step"):
            if getattr(spec, attr) is not None:
                expected = getattr(spec, attr)
                if (node.NODE_ID, spec.id, attr) == ("FaceMendDetectorLoader", "detector", "default"):
                    # follows the server's facedetection folder, which holds only the MobileNet file
                    expected = "retinaface_mobile0.25"
                assert opts.get(attr) == pytest.approx(expected), (spec.id, attr)
        if spec.type == "COMBO":
            assert opts.get("facemend_model_kind") == spec.model_kind, spec.id
            if spec.model_kind is None:  # model lists are the server's folders, checked separately
                assert opts.get("options") == spec.choices(), spec.id
    assert info["output"] == [o.type for o in node.OUTPUTS]
    assert info["output_name"] == [o.name for o in node.OUTPUTS]
    assert info["output_tooltips"] == [o.tooltip for o in node.OUTPUTS]


# --- the pack is loaded ---------------------------------------------------------------------


def test_object_info_lists_every_facemend_node(comfy) -> None:  # noqa: ANN001
    info = comfy.object_info()
    ours = {name for name, entry in info.items() if entry.get("python_module") == PACK_MODULE}
    expected = {n.NODE_ID: n for n in all_nodes()}
    assert ours == set(expected), f"pack exposes {sorted(ours)}, schemas define {sorted(expected)}"
    for node_id, node in expected.items():
        assert node.CATEGORY.startswith("FaceMend/"), node_id
        assert node.DESCRIPTION.strip(), node_id
        _check_schema(info[node_id], node)


def test_pack_entry_point_ran_and_web_extension_is_listed(comfy) -> None:  # noqa: ANN001
    # The route is registered by comfy_entrypoint(); the JS files come from WEB_DIRECTORY.
    r = comfy.get("/facemend/model_info", kind="facerestore_models", name="nothere.pth")
    assert r.status_code == 404 and "nothere.pth" in r.json()["error"]
    extensions = comfy.get("/extensions").json()
    ours = sorted(e for e in extensions if e.startswith("/extensions/comfyui-facemend/"))
    expected = sorted(
        "/extensions/comfyui-facemend/" + p.relative_to(HERE.parents[1] / "web").as_posix()
        for p in (HERE.parents[1] / "web").rglob("*.js")
    )
    assert ours == expected and expected


@pytest.mark.parametrize("node_id", sorted(set(DESIGN_NODE_IDS)))
def test_help_page_is_served_where_the_frontend_looks(comfy, node_id: str) -> None:  # noqa: ANN001
    # ComfyUI frontend 1.35: /extensions/<pack folder>/docs/<NodeId>/<locale>.md, then <NodeId>.md.
    r = comfy.get(f"/extensions/comfyui-facemend/docs/{node_id}.md")
    assert r.status_code == 200
    assert "text/html" not in r.headers.get("content-type", "")
    assert r.text.startswith("# ")


# --- the converter, through a real server -------------------------------------------------


def test_probe_schemas_survive_the_v3_conversion(comfy, probe_model: str) -> None:  # noqa: ANN001
    probe = _probe_module()
    info = comfy.object_info(refresh=True)
    for node in (probe.ProbeAllInputs, probe.ProbeFail, probe.ProbeSlow):
        assert info[node.NODE_ID]["python_module"] == "custom_nodes.facemend_probe"
        _check_schema(info[node.NODE_ID], node)
    # a model combo lists the server's model folder (the extra_model_paths folder here)
    _, _, opts = _input_spec(info["FaceMendProbeAllInputs"], "model_name")
    assert probe_model in opts["options"]


def _load_image(node_id: str = "1") -> dict[str, Any]:
    """A LoadImage node reading the harness's face photo from the server's input folder."""
    return {node_id: {"class_type": "LoadImage", "inputs": {"image": FACE_IMAGE}}}


def _input_face(live_comfy) -> np.ndarray:  # noqa: ANN001
    from PIL import Image

    return np.asarray(Image.open(live_comfy.input_dir / FACE_IMAGE).convert("RGB"))


def test_core_only_prompt_runs(comfy, live_comfy) -> None:  # noqa: ANN001
    prompt = {
        **_load_image("1"),
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "fm_core"}},
    }
    entry = comfy.run(prompt)
    assert comfy.succeeded(entry), comfy.execution_error(entry)
    (out,) = comfy.images(entry, "3")
    src = _input_face(live_comfy)
    assert out.shape == src.shape
    assert np.abs(out.astype(int) - (255 - src.astype(int))).max() <= 1


def test_probe_runs_with_every_input_type_and_sends_its_ui(comfy, live_comfy, probe_model: str) -> None:  # noqa: ANN001
    values = {"count": 7, "ratio": 0.25, "label": "héllo\nworld", "flag": False, "choice": "c", "model_name": probe_model}
    prompt = {**_load_image("1"), "2": {"class_type": "FaceMendProbeAllInputs", "inputs": {"image": ["1", 0], **values}}}
    entry = comfy.run(prompt)
    assert comfy.succeeded(entry), comfy.execution_error(entry)
    ui = comfy.ui(entry, "2")
    assert json.loads(ui["text"][0]) == values
    faces = ui["facemend_faces"]
    assert [f["index"] for f in faces] == [0, 1] and all(len(f["box"]) == 4 for f in faces)
    assert faces[0]["box"] == pytest.approx([128.0, 102.4, 384.0, 409.6])
    (preview,) = comfy.images(entry, "2")
    assert ui["images"][0]["type"] == "temp"
    assert np.array_equal(preview, _input_face(live_comfy))


def test_invalid_widget_values_are_rejected_with_node_errors(comfy, probe_model: str) -> None:  # noqa: ANN001
    good = {"count": 1, "ratio": 0.5, "label": "x", "flag": True, "choice": "a", "model_name": probe_model}
    for bad in ({"choice": "zzz"}, {"model_name": "missing.pth"}):
        prompt = {**_load_image("1"), "2": {"class_type": "FaceMendProbeAllInputs", "inputs": {"image": ["1", 0], **good, **bad}}}
        status, body = comfy.try_queue(prompt)
        assert status == 400, body
        (key,) = bad
        errors = body["node_errors"]["2"]["errors"]
        assert any(key in json.dumps(e) for e in errors), errors


def test_node_exception_comes_back_as_readable_execution_error(comfy) -> None:  # noqa: ANN001
    message = f"FaceMend probe: readable message {time.time_ns()}"
    entry = comfy.run({"7": {"class_type": "FaceMendProbeFail", "inputs": {"message": message}}})
    assert not comfy.succeeded(entry)
    err = comfy.execution_error(entry)
    assert err is not None
    assert err["node_id"] == "7" and err["node_type"] == "FaceMendProbeFail"
    assert err["exception_type"].endswith("ValueError")
    assert err["exception_message"].strip() == message


def test_interrupt_stops_a_running_node(comfy) -> None:  # noqa: ANN001
    prompt_id = comfy.queue({"5": {"class_type": "FaceMendProbeSlow", "inputs": {"seconds": 120.0}}})
    comfy.wait_running(prompt_id)
    time.sleep(0.5)
    started = time.monotonic()
    comfy.interrupt(prompt_id)
    entry = comfy.wait(prompt_id, timeout=30)
    assert time.monotonic() - started < 30
    assert not comfy.succeeded(entry)
    (msg,) = comfy.messages(entry, "execution_interrupted")
    assert msg["node_type"] == "FaceMendProbeSlow"
    assert "done" not in json.dumps(comfy.ui(entry, "5"))


# --- model-info route -----------------------------------------------------------------------


def test_model_info_route_validates_names(comfy, probe_model: str) -> None:  # noqa: ANN001
    def ask(prefix: str = "", **params: str) -> tuple[int, dict[str, Any]]:
        r = comfy.get(prefix + "/facemend/model_info", **params)
        return r.status_code, r.json()

    assert ask(kind="facerestore_models", name="../../comfyui.db")[0] == 400
    assert ask(kind="facerestore_models", name="/etc/passwd")[0] == 400
    assert ask(kind="checkpoints", name="x.safetensors")[0] == 400
    # the frontend calls it through api.fetchApi, i.e. under /api
    status, body = ask("/api", kind="facerestore_models", name="nothere.pth")
    assert status == 404 and "nothere.pth" in body["error"]
    status, body = ask(kind="facerestore_models", name=probe_model)
    assert status == 422, body
    assert probe_model in body["error"] and str(Path.home()) not in body["error"]
