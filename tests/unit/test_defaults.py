"""Each default is written once: the nodes' widgets, the CLI's options and the library's keywords agree.

Before the settings objects existed the CLI detected faces at confidence 0.5 while Detect used
0.8; these tests fail if any of the three drifts from :data:`DETECT`, :data:`PASTE` or :data:`RESTORE`.
"""

from __future__ import annotations

import inspect
from dataclasses import fields

from facemend.cli import build_parser
from facemend.face.pipeline import detect_and_align, paste_back
from facemend.face.settings import DETECT, PASTE
from facemend.model_loaders import RESTORE
from facemend.nodes.all_in_one import FaceMendRestoreFaces
from facemend.nodes.detect import FaceMendDetect
from facemend.nodes.gpen import FaceMendGPENRestore
from facemend.nodes.modulate import FaceMendCSSFTModulate
from facemend.nodes.paste import FaceMendPasteBack
from facemend.nodes.restore import FaceMendCodebookRestore

#: Detect widget -> DetectSettings field (the widget names are stable and predate the settings).
DETECT_WIDGETS = {
    "confidence": "threshold", "min_face_size": "min_size", "select": "select", "indices": "indices",
    "order": "order", "max_faces": "max_faces", "crop_size": "crop_size", "padding": "padding", "border": "border",
    "alignment": "alignment", "video": "video", "detect_every": "detect_every", "landmark_smoothing": "smoothing",
    "detect_max_side": "max_side", "framing": "framing",
}
PASTE_WIDGETS = {"mask": "mask", "feather": "feather", "erode": "erode", "color_correction": "color",
                 "opacity": "opacity", "parse_classes": "parse_classes"}


def _defaults(node) -> dict:  # noqa: ANN001
    return {i.id: i.default for i in node.inputs()}


def _restore_args() -> dict:
    parser = build_parser()
    args = parser.parse_args(["restore", "in.png", "-o", "out", "--model", "GFPGANv1.4.pth"])
    return vars(args)


def test_cli_and_nodes_use_the_same_defaults() -> None:
    cli = _restore_args()
    detect = _defaults(FaceMendDetect)
    assert cli["threshold"] == detect["confidence"] == DETECT.threshold
    restore_faces = _defaults(FaceMendRestoreFaces)
    assert cli["fidelity"] == restore_faces["fidelity"] == _defaults(FaceMendCodebookRestore)["fidelity"] == RESTORE.fidelity
    assert cli["strength"] == restore_faces["strength"] == _defaults(FaceMendCSSFTModulate)["strength"] == RESTORE.strength
    assert _defaults(FaceMendGPENRestore)["strength"] == RESTORE.strength
    from facemend.face.restore import RESTORE_FACES

    assert cli["auto_fidelity"] == restore_faces["auto_per_face"] == RESTORE_FACES.auto
    assert cli["skip_below"] == restore_faces["leave_alone_below"] == RESTORE_FACES.leave_alone_below


def test_detect_and_paste_widgets_default_to_the_settings() -> None:
    detect = _defaults(FaceMendDetect)
    assert {w: detect[w] for w in DETECT_WIDGETS} == {w: getattr(DETECT, f) for w, f in DETECT_WIDGETS.items()}
    paste = _defaults(FaceMendPasteBack)
    assert {w: paste[w] for w in PASTE_WIDGETS} == {w: getattr(PASTE, f) for w, f in PASTE_WIDGETS.items()}
    restore_faces = _defaults(FaceMendRestoreFaces)
    assert (restore_faces["select"], restore_faces["indices"]) == (DETECT.select, DETECT.indices)
    assert (restore_faces["mask"], restore_faces["color_correction"], restore_faces["opacity"]) == (
        PASTE.mask, PASTE.color, PASTE.opacity)
    assert set(DETECT_WIDGETS.values()) == {f.name for f in fields(DETECT)}


def test_library_keywords_default_to_the_settings() -> None:
    detect = inspect.signature(detect_and_align).parameters
    for f in fields(DETECT):
        assert detect[f.name].default == getattr(DETECT, f.name), f.name
    paste = inspect.signature(paste_back).parameters
    for f in fields(PASTE):
        assert paste[f.name].default == getattr(PASTE, f.name), f.name
