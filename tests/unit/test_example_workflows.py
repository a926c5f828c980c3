"""The example workflows (``example_workflows/*.json``, UI format) match the nodes they use.

Without ComfyUI: FaceMend's nodes are checked against ``facemend.nodes.all_nodes()`` (input
names and types, widget values and their count, outputs), core ComfyUI nodes against the schemas
recorded in ``tests/data/core_nodes.json`` (refreshed from a live server's ``/object_info`` by
``tests/integration/test_example_workflows_live.py``). The same workflows run through a real
ComfyUI in that live test, converted to API format by :func:`fm_testing.workflows.ui_to_api`,
which the browser test checks against the frontend's own conversion.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from facemend.face.models import DETECTORS
from facemend.model_loaders.catalog import find_known
from facemend.nodes.loaders import REFUSION_PREFIX
from fm_testing.workflows import (
    VIRTUAL_NODES,
    check_workflow,
    example_paths,
    facemend_schemas,
    input_type,
    load_core_nodes,
    load_workflow,
    offline_schemas,
    socket_inputs,
    ui_to_api,
    widget_slots,
)

#: The examples issue 7 asks for (file stem -> what it shows).
REQUIRED_EXAMPLES = {
    "FaceMend 1 - Restore faces in one node": "one-node restore",
    "FaceMend 2 - Detect, Codebook Restore, Paste Back": "Detect -> Codebook Restore -> Paste Back",
    "FaceMend 3 - GFPGAN with CS-SFT strength": "GFPGAN with CS-SFT strength",
    "FaceMend 6 - SD txt2img, then Restore Faces": "SD txt2img (core nodes) -> face restore",
    "FaceMend 7 - SD img2img on the face crops": "Detect -> SD img2img on the crops (core KSampler) -> Paste Back",
    "FaceMend 8 - CodeFormer, then Diffusion Refine, slow on CPU": "Codebook Restore -> Diffusion Refine -> Paste Back",
    "FaceMend 9 - Video batch with face tracks": "a video-style batch",
    "FaceMend 4 - GPEN with its own face framing": "Detect (GPEN framing) -> GPEN Restore -> Paste Back",
    "FaceMend 5 - Face Quality, each face as much as it needs": "Face Quality -> per-face fidelity and opacity",
}

EXAMPLES = example_paths()


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(scope="module")
def schemas() -> dict:
    return offline_schemas()


@pytest.fixture(scope="module")
def file_inputs() -> list:
    return load_core_nodes()["file_inputs"]


def test_every_required_example_is_there_with_a_thumbnail() -> None:
    assert {p.stem for p in EXAMPLES} >= set(REQUIRED_EXAMPLES)
    for path in EXAMPLES:
        thumb = path.with_suffix(".jpg")
        assert thumb.is_file(), f"{path.name} has no {thumb.name}"
        data = thumb.read_bytes()
        assert data[:3] == b"\xff\xd8\xff", f"{thumb.name} is not a JPEG"
        assert 5_000 < len(data) < 300_000, f"{thumb.name}: {len(data)} bytes"


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_example_matches_the_node_schemas(path: Path, schemas: dict, file_inputs: list) -> None:
    workflow = load_workflow(path)
    assert workflow.get("version") == 0.4 and workflow["nodes"] and workflow["links"]
    problems = check_workflow(workflow, schemas, file_inputs)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_example_uses_official_file_names_and_explains_itself(path: Path) -> None:
    workflow = load_workflow(path)
    types = [n["type"] for n in workflow["nodes"]]
    assert any(t.startswith("FaceMend") for t in types)
    assert "MarkdownNote" in types or "Note" in types, "each example carries a note saying what it does"
    for node in workflow["nodes"]:
        values = node.get("widgets_values") or []
        if node["type"] == "FaceMendModelLoader":
            name = values[0]
            if name.startswith(REFUSION_PREFIX):
                assert name == REFUSION_PREFIX + "refusion.pth", name  # the official Refusion release name
            else:
                known = find_known(name)
                assert known is not None and known.kind == "facerestore_models", f"{name} is not an official file name"
        if node["type"] == "FaceMendDetectorLoader":
            assert values[0] in DETECTORS
        for (kind, name), value in zip(widget_slots(offline_schemas().get(node["type"], {})), values):
            if kind == "control":
                assert value == "fixed", f"{path.stem}: {node['type']}.{name} must not change between runs"


def test_core_nodes_file_covers_every_core_node_the_examples_use() -> None:
    core = load_core_nodes()["nodes"]
    ours = set(facemend_schemas())
    used = {n["type"] for p in EXAMPLES for n in load_workflow(p)["nodes"]}
    missing = used - ours - set(core) - VIRTUAL_NODES
    assert not missing, f"add {sorted(missing)} to tests/data/core_nodes.json (run the live test to refresh it)"
    assert all(info["input"] and "output" in info and "input_order" in info for info in core.values())


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_api_conversion_gives_a_complete_prompt(path: Path, schemas: dict) -> None:
    workflow = load_workflow(path)
    prompt = ui_to_api(workflow, schemas)
    real = [n for n in workflow["nodes"] if n["type"] not in VIRTUAL_NODES]
    assert sorted(prompt) == sorted(str(n["id"]) for n in real)
    for node_id, entry in prompt.items():
        schema = schemas[entry["class_type"]]
        required = list(schema["input"].get("required", {}))
        assert set(required) <= set(entry["inputs"]), (entry["class_type"], set(required) - set(entry["inputs"]))
        for name, value in entry["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                origin = prompt[value[0]]["class_type"]
                kind = dict((n, t) for n, t, _ in socket_inputs(schema)).get(name)
                if kind is None:  # a link into a widget (Face Quality's fidelity -> per_face_fidelity)
                    entries = {**schema["input"].get("required", {}), **schema["input"].get("optional", {})}
                    kind = input_type(entries[name])
                assert schemas[origin]["output"][value[1]] == kind, (node_id, name)
    # a FaceMend node's widgets arrive under their names, with the saved values
    for node in real:
        if node["type"].startswith("FaceMend"):
            slots = [s for s in widget_slots(schemas[node["type"]])]
            values = dict((s[1], v) for s, v in zip(slots, node["widgets_values"]) if s[0] == "value")
            inputs = prompt[str(node["id"])]["inputs"]
            linked = {i["name"] for i in node.get("inputs", []) if i.get("widget") and i.get("link") is not None}
            assert {k: inputs[k] for k in values if k not in linked} == {k: v for k, v in values.items() if k not in linked}


# --- the checker itself finds what would break a workflow ---------------------------------


@pytest.fixture(scope="module")
def chain() -> dict:
    return load_workflow(next(p for p in EXAMPLES if p.stem == "FaceMend 2 - Detect, Codebook Restore, Paste Back"))


def _node(workflow: dict, node_type: str) -> dict:
    return next(n for n in workflow["nodes"] if n["type"] == node_type)


def _problems(workflow: dict, schemas: dict, file_inputs: list) -> str:
    return "\n".join(check_workflow(workflow, schemas, file_inputs))


def test_checker_reports_missing_or_wrong_widget_values(chain: dict, schemas: dict, file_inputs: list) -> None:
    older = copy.deepcopy(chain)  # saved before a widget was added
    _node(older, "FaceMendPasteBack")["widgets_values"].pop()
    assert "6 widget values for 7 widgets" in _problems(older, schemas, file_inputs)
    bad = copy.deepcopy(chain)
    _node(bad, "FaceMendPasteBack")["widgets_values"][0] = "ellipse"
    assert "mask: 'ellipse' is not one of" in _problems(bad, schemas, file_inputs)
    bad = copy.deepcopy(chain)
    _node(bad, "FaceMendCodebookRestore")["widgets_values"][0] = 1.5
    assert "outside [0.0, 1.0]" in _problems(bad, schemas, file_inputs)


def test_checker_reports_unknown_nodes_renamed_inputs_and_wrong_links(chain: dict, schemas: dict, file_inputs: list) -> None:
    bad = copy.deepcopy(chain)
    _node(bad, "FaceMendDetect")["type"] = "FaceMendDetectV2"
    assert "unknown node type" in _problems(bad, schemas, file_inputs)
    bad = copy.deepcopy(chain)
    _node(bad, "FaceMendCodebookRestore")["inputs"][0]["name"] = "images"
    assert "input 'images' does not exist" in _problems(bad, schemas, file_inputs)
    bad = copy.deepcopy(chain)  # the faces link retargeted to Paste Back's crops input
    faces_link = next(link for link in bad["links"] if link[5] == "FACEMEND_FACES")
    faces_link[4] = 1
    text = _problems(bad, schemas, file_inputs)
    assert "FACEMEND_FACES -> FaceMendPasteBack.crops (IMAGE)" in text
    bad = copy.deepcopy(chain)
    restore = _node(bad, "FaceMendCodebookRestore")
    restore["inputs"][1]["link"] = None
    assert "required input 'model' (FACEMEND_MODEL) is not connected" in _problems(bad, schemas, file_inputs)


def test_seed_widgets_carry_a_control_value() -> None:
    """The frontend adds 'control_after_generate' after INT inputs named seed (our refine and
    CS-SFT seeds included): widgets_values must hold it, or every later value shifts by one."""
    schemas = facemend_schemas()
    slots = widget_slots(schemas["FaceMendDiffusionRefine"])
    i = slots.index(("value", "seed"))
    assert slots[i + 1] == ("control", "seed")
    assert ("upload", "image") in widget_slots(load_core_nodes()["nodes"]["LoadImage"])


def test_core_nodes_json_is_small_and_sorted() -> None:
    from fm_testing.workflows import CORE_NODES_FILE

    text = CORE_NODES_FILE.read_text()
    assert len(text) < 60_000
    assert json.loads(text) == json.loads(json.dumps(json.loads(text), sort_keys=True))


def test_widget_order_of_released_nodes_only_grows_at_the_end() -> None:
    """Saved workflows store widget values by position. ``tests/data/widget_order.json`` records
    each node's widgets as released; a node may only gain widgets after them. (Required widgets
    come before optional ones, so a widget added to a node that has optional widgets must itself
    be optional, or it shifts them.) When a node is added, record it there."""
    recorded = json.loads((Path(__file__).resolve().parents[1] / "data" / "widget_order.json").read_text())
    current = {
        node_id: [name if kind == "value" else f"{kind}:{name}" for kind, name in widget_slots(schema)]
        for node_id, schema in facemend_schemas().items()
    }
    assert set(current) == set(recorded), "record new nodes in tests/data/widget_order.json"
    for node_id, widgets in recorded.items():
        assert current[node_id][: len(widgets)] == widgets, (
            f"{node_id}: widgets were {widgets}, now {current[node_id]}: old workflows would load values into the "
            "wrong widgets. Keep the released order and add new widgets at the end (as optional inputs)."
        )
