"""Loader nodes (filled in by the foundation and face-pipeline issues)."""

from __future__ import annotations

from .spec import NodeDef

NODES: list[type[NodeDef]] = []


# --- face pipeline (issue 3) -------------------------------------------------------------------

from typing import Any  # noqa: E402

from ..face.models import DETECTOR_FILES, DETECTORS, PARSER_FILES, PARSERS, load_face_models  # noqa: E402
from ..runtime import find_model  # noqa: E402
from .spec import In, Out, NodeResult  # noqa: E402


class FaceMendDetectorLoader(NodeDef):
    NODE_ID = "FaceMendDetectorLoader"
    DISPLAY_NAME = "FaceMend Load Face Detector"
    CATEGORY = "FaceMend/loaders"
    DESCRIPTION = (
        "Loads facexlib's RetinaFace face detector and, optionally, a face-parsing network (for parsing masks in Paste "
        "Back) from the models/facedetection folder, downloading facexlib's official files on first use."
    )
    INPUTS = (
        In("detector", "COMBO", "RetinaFace backbone: resnet50 (more accurate) or mobile0.25 (much faster). File: "
           "detection_Resnet50_Final.pth / detection_mobilenet0.25_Final.pth.", default="retinaface_resnet50",
           options=DETECTORS),
        In("parser", "COMBO", "Optional face-parsing network for parsing masks: bisenet (parsing_bisenet.pth) or "
           "parsenet (parsing_parsenet.pth); none skips it.", default="none", options=PARSERS),
    )
    OUTPUTS = (Out("FACEMEND_DETECTOR", "detector", "Face detector (and parser) for Detect and Paste Back."),)

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        return NodeResult((load_face_models(kw.get("detector", "retinaface_resnet50"), kw.get("parser", "none")),))

    @classmethod
    def fingerprint(cls, **kw: Any) -> Any:
        """Re-run when a model file appears, disappears or changes on disk."""
        files = [DETECTOR_FILES.get(kw.get("detector", ""))]
        if kw.get("parser", "none") in PARSER_FILES:
            files.append(PARSER_FILES[kw["parser"]])
        stamp = []
        for f in files:
            p = find_model("facedetection", f.filename) if f is not None else None
            stamp.append((str(p), p.stat().st_mtime_ns, p.stat().st_size) if p is not None else None)
        return tuple(stamp)


NODES.append(FaceMendDetectorLoader)
