"""A test-only ComfyUI node pack for the live-server tests (never shipped, never in a workflow).

The live server loads it next to FaceMend (``tests/integration/conftest.py`` links it into the
temporary ``custom_nodes``). Its nodes are plain :class:`~facemend.nodes.spec.NodeDef` classes
turned into V3 nodes by FaceMend's own converter (``extension/v3.py``), so the converter,
UI payloads (previews, text, ``facemend_faces``), interruption and error reporting are exercised
in a real ComfyUI whatever FaceMend nodes exist yet.

It imports the checkout under test as ``facemend`` from ``$FACEMEND_PROBE_IMPORT_ROOT`` (a folder
holding a ``facemend`` link to the checkout), a copy separate from the one ComfyUI loads.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

_root = os.environ.get("FACEMEND_PROBE_IMPORT_ROOT")
if _root and _root not in sys.path:
    sys.path.insert(0, _root)

import torch  # noqa: E402

from facemend import runtime  # noqa: E402
from facemend.nodes.spec import In, NodeDef, NodeResult, Out  # noqa: E402

CATEGORY = "FaceMendProbe"


class ProbeAllInputs(NodeDef):
    """Every input type of the NodeDef contract; returns what it received."""

    NODE_ID = "FaceMendProbeAllInputs"
    DISPLAY_NAME = "FaceMend Probe (all inputs)"
    CATEGORY = CATEGORY
    DESCRIPTION = "Test probe: one input of every kind, previews the image with two face boxes."
    OUTPUT_NODE = True
    INPUTS = (
        In("image", "IMAGE", "any image"),
        In("count", "INT", "an integer", default=3, min=0, max=10, step=1),
        In("ratio", "FLOAT", "a float", default=0.5, min=0.0, max=1.0, step=0.05),
        In("label", "STRING", "a string", default="probe", multiline=True),
        In("flag", "BOOLEAN", "a boolean", default=True),
        In("choice", "COMBO", "a combo", default="b", options=("a", "b", "c")),
        In("model_name", "COMBO", "a restoration model file", options=lambda: runtime.list_models("facerestore_models"),
           model_kind="facerestore_models"),
        In("mask", "MASK", "an optional mask", optional=True),
    )
    OUTPUTS = (
        Out("IMAGE", "inverted", "1 - image"),
        Out("MASK", "mask", "the mask, or ones"),
        Out("STRING", "values", "JSON of the widget values received"),
        Out("INT", "count", "the count"),
    )

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        image: torch.Tensor = kw["image"]
        b, h, w, _ = image.shape
        mask = kw.get("mask")
        if mask is None:
            mask = torch.ones(b, h, w)
        values = {k: kw[k] for k in ("count", "ratio", "label", "flag", "choice", "model_name")}
        faces = [
            {"frame": 0, "index": 0, "box": [0.25 * w, 0.2 * h, 0.75 * w, 0.8 * h], "score": 0.99},
            {"frame": 0, "index": 1, "box": [0.02 * w, 0.02 * h, 0.2 * w, 0.2 * h], "score": 0.5},
        ]
        return NodeResult(
            (1.0 - image, mask, json.dumps(values, sort_keys=True), int(kw["count"])),
            ui={"text": [json.dumps(values, sort_keys=True)], "images": [image], "facemend_faces": faces},
        )


class ProbeFail(NodeDef):
    """Raises the given message: checks that errors reach /history as execution_error."""

    NODE_ID = "FaceMendProbeFail"
    DISPLAY_NAME = "FaceMend Probe (fail)"
    CATEGORY = CATEGORY
    DESCRIPTION = "Test probe: raises ValueError(message)."
    OUTPUT_NODE = True
    INPUTS = (In("message", "STRING", "the error message", default="probe failure"),)
    OUTPUTS = ()

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        raise ValueError(kw["message"])


class ProbeSlow(NodeDef):
    """Works for ``seconds``, checking for interruption like FaceMend's long loops do."""

    NODE_ID = "FaceMendProbeSlow"
    DISPLAY_NAME = "FaceMend Probe (slow)"
    CATEGORY = CATEGORY
    DESCRIPTION = "Test probe: sleeps in small steps, calling runtime.check_interrupted()."
    OUTPUT_NODE = True
    INPUTS = (In("seconds", "FLOAT", "how long to run", default=60.0, min=0.0, max=600.0, step=0.1),)
    OUTPUTS = (Out("STRING", "done", "'done' when it ran to the end"),)

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        steps = max(int(kw["seconds"] / 0.05), 1)
        progress = runtime.Progress(steps, desc="probe")
        for _ in range(steps):
            runtime.check_interrupted()
            time.sleep(0.05)
            progress.update()
        return NodeResult(("done",), ui={"text": ["done"]})


async def comfy_entrypoint():  # noqa: ANN201
    from facemend.extension.v3 import FaceMendExtension

    return FaceMendExtension([ProbeAllInputs, ProbeFail, ProbeSlow])
