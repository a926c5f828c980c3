"""FaceMend Detect: find, order and select faces, and cut aligned crops (thin node over ``face.pipeline``)."""

from __future__ import annotations

from typing import Any

from ..face.alignment import ALIGN_METHODS
from ..face.detection import DEFAULT_MAX_SIDE
from ..face.models import FaceModels
from ..face.pipeline import MAX_CROP, MIN_CROP, detect_and_align, rgb_view
from ..face.preview import draw_preview
from ..face.records import BORDERS
from ..face.selection import ORDERS, SELECTIONS
from ..runtime import Progress
from .images import bchw_to_image
from .spec import In, NodeDef, NodeResult, Out


class FaceMendDetect(NodeDef):
    NODE_ID = "FaceMendDetect"
    DISPLAY_NAME = "FaceMend Detect Faces"
    CATEGORY = "FaceMend/face"
    DESCRIPTION = (
        "Finds faces with RetinaFace, picks and orders them, and cuts one square crop per face aligned to the FFHQ "
        "5-point template (the framing GFPGAN/CodeFormer were trained on). Restore the crops with any node, then "
        "use 'FaceMend Paste Back' with the faces output. Frames without faces give no crops and pass through."
    )
    INPUTS = (
        In("detector", "FACEMEND_DETECTOR", "Face detector from 'FaceMend Load Face Detector'."),
        In("image", "IMAGE", "Image or batch of frames to search for faces."),
        In("confidence", "FLOAT", "Minimum detector confidence for a face (facexlib's helper uses a fixed 0.97; "
           "lower finds more small or turned faces, and more false ones).", default=0.8, min=0.05, max=1.0, step=0.01),
        In("min_face_size", "INT", "Ignore faces whose box's shorter side is smaller than this many pixels.",
           default=20, min=0, max=8192, step=1),
        In("select", "COMBO", "Which faces to keep: all, the largest one, or the positions listed in 'indices'.",
           default="all", options=SELECTIONS),
        In("indices", "STRING", "With select = indices: face positions in the chosen order, counted from 0, e.g. "
           "'0,2' or '1-3' or '0,2-4'. The preview shows each face's number.", default="0"),
        In("order", "COMBO", "How faces are numbered: area (largest first), left-to-right, top-to-bottom, confidence "
           "(highest first) or center-distance (closest to the centre first).", default="area", options=ORDERS),
        In("max_faces", "INT", "Keep at most this many faces per frame, first in order (video: this many tracks; 0 = no limit).",
           default=0, min=0, max=256, step=1),
        In("crop_size", "INT", "Side of the square face crops in pixels (512 for GFPGAN/CodeFormer). Larger crops "
           "are pasted back with antialiasing.", default=512, min=MIN_CROP, max=MAX_CROP, step=8),
        In("padding", "FLOAT", "Context around the face (facexlib's crop_ratio): 1.0 is the standard FFHQ framing; "
           "1.5 shows the face at 2/3 of the crop with more hair and background.", default=1.0, min=1.0, max=4.0,
           step=0.05),
        In("border", "COMBO", "Fill for crop pixels outside the image: grey (as the official code), edge, reflect "
           "or black.", default="grey", options=BORDERS),
        In("alignment", "COMBO", "How landmarks are fitted to the FFHQ template: lmeds (exactly the official "
           "GFPGAN/CodeFormer fit, robust to one bad landmark) or least-squares (uses all five points; steadier for "
           "video).", default="lmeds", options=ALIGN_METHODS),
        In("video", "BOOLEAN", "Treat the batch as video frames: faces keep the same number across frames (matched "
           "frame to frame), and order/selection apply to whole tracks.", default=False),
        In("detect_every", "INT", "Video only: run the full detector every N frames and follow faces in between "
           "(faster; use 1 for fast motion).", default=1, min=1, max=120, step=1),
        In("landmark_smoothing", "FLOAT", "Video only: smooth landmarks over time to stop alignment jitter "
           "(Gaussian sigma in frames; 0 = off, 1-2 typical).", default=0.0, min=0.0, max=10.0, step=0.1),
        In("detect_max_side", "INT", "Frames whose long side exceeds this are shrunk for detection only (crops "
           "still come from the full image). Bounds memory on huge images.", default=DEFAULT_MAX_SIDE, min=256,
           max=8192, step=32),
    )
    OUTPUTS = (
        Out("IMAGE", "crops", "Aligned face crops (one per kept face, frame by frame, in the chosen order)."),
        Out("FACEMEND_FACES", "faces", "Where each crop came from; connect to 'FaceMend Paste Back'."),
        Out("IMAGE", "preview", "The frames (at most 1024 px) with numbered boxes: green kept, grey skipped."),
    )

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        models = kw["detector"]
        if not isinstance(models, FaceModels):
            raise ValueError("FaceMend Detect: 'detector' must come from 'FaceMend Load Face Detector'.")
        frames = rgb_view(kw["image"])
        progress = Progress(frames.shape[0], "FaceMend detect")
        result = detect_and_align(
            models, frames, threshold=kw.get("confidence", 0.8), min_size=kw.get("min_face_size", 20),
            select=kw.get("select", "all"), indices=kw.get("indices", "0"), order=kw.get("order", "area"),
            max_faces=kw.get("max_faces", 0), crop_size=kw.get("crop_size", 512), padding=kw.get("padding", 1.0),
            border=kw.get("border", "grey"), alignment=kw.get("alignment", "lmeds"), max_side=kw.get("detect_max_side", DEFAULT_MAX_SIDE),
            video=kw.get("video", False), detect_every=kw.get("detect_every", 1),
            smoothing=kw.get("landmark_smoothing", 0.0), progress=progress,
        )
        progress.close()
        preview = draw_preview(frames, result.found)
        faces = result.faces
        text = f"{len(faces)} face(s) in {faces.num_frames} frame(s)"
        missing = faces.frames_without_faces()
        if missing:
            text += f"; none in {len(missing)} frame(s)"
        return NodeResult((bchw_to_image(result.crops), faces, preview), ui={"text": [text]})


NODES: list[type[NodeDef]] = [FaceMendDetect]
