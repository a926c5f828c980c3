"""FaceMend Detect: find, order and select faces, and cut aligned crops (thin node over ``face.pipeline``)."""

from __future__ import annotations

from typing import Any

from ..archs import framings
from ..face.alignment import ALIGN_METHODS
from ..face.models import FaceModels
from ..face.pipeline import MAX_CROP, MIN_CROP, DetectResult, detect_and_align
from ..face.preview import draw_preview
from ..face.records import BORDERS
from ..face.selection import ORDERS, SELECTIONS, parse_indices
from ..face.settings import DETECT
from ..runtime import Progress
from .images import bchw_to_image, placeholder_crops, rgb_view
from .spec import In, NodeDef, NodeResult, Out


class FaceMendDetect(NodeDef):
    NODE_ID = "FaceMendDetect"
    DISPLAY_NAME = "FaceMend Detect Faces"
    CATEGORY = "FaceMend/face"
    DESCRIPTION = (
        "Finds faces with RetinaFace, picks and orders them, and cuts one square crop per face aligned to the FFHQ "
        "5-point template (the framing GFPGAN/CodeFormer were trained on; 'framing' switches to GPEN's). Restore the crops with any node, then "
        "use 'FaceMend Paste Back' with the faces output. When no face is kept, crops is one flat grey placeholder "
        "image (so the nodes after it keep working), Paste Back passes the image through unchanged and the restore "
        "nodes skip it."
    )
    INPUTS = (
        In("detector", "FACEMEND_DETECTOR", "Face detector from 'FaceMend Load Face Detector'."),
        In("image", "IMAGE", "Image or batch of frames to search for faces."),
        In("confidence", "FLOAT", "Minimum detector confidence for a face (facexlib's helper uses a fixed 0.97; "
           "lower finds more small or turned faces, and more false ones).", default=DETECT.threshold, min=0.05, max=1.0, step=0.01),
        In("min_face_size", "INT", "Ignore faces whose box's shorter side is smaller than this many pixels.",
           default=int(DETECT.min_size), min=0, max=8192, step=1),
        In("select", "COMBO", "Which faces to keep: all, the largest one, or the positions listed in 'indices'.",
           default=DETECT.select, options=SELECTIONS),
        In("indices", "STRING", "With select = indices: face positions in the chosen order, counted from 0, e.g. "
           "'0,2' or '1-3' or '0,2-4'. The preview shows each face's number.", default=DETECT.indices),
        In("order", "COMBO", "How faces are numbered: area (largest first), left-to-right, top-to-bottom, confidence "
           "(highest first) or center-distance (closest to the centre first).", default=DETECT.order, options=ORDERS),
        In("max_faces", "INT", "Keep at most this many faces per frame, first in order (video: this many tracks; 0 = no limit).",
           default=DETECT.max_faces, min=0, max=256, step=1),
        In("crop_size", "INT", "Side of the square face crops in pixels (512 for GFPGAN/CodeFormer). Larger crops "
           "are pasted back with antialiasing.", default=DETECT.crop_size, min=MIN_CROP, max=MAX_CROP, step=8),
        In("padding", "FLOAT", "Context around the face (facexlib's crop_ratio): 1.0 is the standard FFHQ framing; "
           "1.5 shows the face at 2/3 of the crop with more hair and background.", default=DETECT.padding, min=1.0, max=4.0,
           step=0.05),
        In("border", "COMBO", "Fill for crop pixels outside the image: grey (as the official code), edge, reflect "
           "or black.", default=DETECT.border, options=BORDERS),
        In("alignment", "COMBO", "How landmarks are fitted to the FFHQ template: lmeds (exactly the official "
           "GFPGAN/CodeFormer fit, robust to one bad landmark) or least-squares (uses all five points; steadier for "
           "video).", default=DETECT.alignment, options=ALIGN_METHODS),
        In("video", "BOOLEAN", "Treat the batch as video frames: faces keep the same number across frames (matched "
           "frame to frame), and order/selection apply to whole tracks.", default=DETECT.video),
        In("detect_every", "INT", "Video only: run the full detector every N frames and follow faces in between "
           "(faster; use 1 for fast motion).", default=DETECT.detect_every, min=1, max=120, step=1),
        In("landmark_smoothing", "FLOAT", "Video only: smooth landmarks over time to stop alignment jitter "
           "(Gaussian sigma in frames; 0 = off, 1-2 typical).", default=DETECT.smoothing, min=0.0, max=10.0, step=0.1),
        In("detect_max_side", "INT", "Frames whose long side exceeds this are shrunk for detection only (crops "
           "still come from the full image). Bounds memory on huge images.", default=DETECT.max_side, min=256,
           max=8192, step=32),
        In("framing", "COMBO", "Face framing of the crops: ffhq (GFP-GAN, CodeFormer, RestoreFormer, VQFR) or gpen "
           "(GPEN was trained on its own, smaller framing; its official alignment is least-squares). Restore Faces "
           "picks the model's own framing by itself.", default=DETECT.framing, options=lambda: list(framings()),
           optional=True),
    )
    OUTPUTS = (
        Out("IMAGE", "crops", "Aligned face crops (one per kept face, frame by frame, in the chosen order); one flat "
            "grey placeholder image when no face is kept."),
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
            models, frames, threshold=kw.get("confidence", DETECT.threshold), min_size=kw.get("min_face_size", DETECT.min_size),
            select=kw.get("select", DETECT.select), indices=kw.get("indices", DETECT.indices),
            order=kw.get("order", DETECT.order), max_faces=kw.get("max_faces", DETECT.max_faces),
            crop_size=kw.get("crop_size", DETECT.crop_size), padding=kw.get("padding", DETECT.padding),
            border=kw.get("border", DETECT.border), alignment=kw.get("alignment", DETECT.alignment),
            max_side=kw.get("detect_max_side", DETECT.max_side), video=kw.get("video", DETECT.video),
            detect_every=kw.get("detect_every", DETECT.detect_every),
            smoothing=kw.get("landmark_smoothing", DETECT.smoothing), framing=kw.get("framing", DETECT.framing),
            progress=progress,
        )
        progress.close()
        preview = draw_preview(frames, result.found)
        faces = result.faces
        text = detect_summary(result, kw.get("select", DETECT.select), kw.get("indices", DETECT.indices))
        crops = bchw_to_image(result.crops) if len(faces) else placeholder_crops(faces.crop_size)
        return NodeResult((crops, faces, preview), ui={"text": [text]})


def detect_summary(result: DetectResult, select: str, indices: str) -> str:
    """One line for the node: how many faces were found and kept, and why none were, if none were.

    A face index that does not exist is named, with the valid ones (``"1 face found; index 5
    does not exist; valid: 0"``); frames without a kept face are counted.
    """
    faces = result.faces
    found = sum(int(f.boxes.shape[0]) for f in result.found)
    frames = faces.num_frames
    where = f" in {frames} frame(s)" if frames > 1 else ""
    if found == 0:
        return f"no face found{where}: image passed through"
    parts = [f"{found} face(s) found{where}", f"{len(faces)} kept"]
    if select == "indices":
        most = max(int(f.boxes.shape[0]) for f in result.found)
        missing = [i for i in parse_indices(indices) if i >= most]
        if missing:
            valid = "0" if most == 1 else f"0-{most - 1}"
            label = "index" if len(missing) == 1 else "indices"
            parts.append(f"{label} {', '.join(map(str, missing))} does not exist; valid: {valid}")
    empty = faces.frames_without_faces()
    if len(faces) == 0:
        parts.append("image passed through")
    elif empty:
        parts.append(f"no face kept in {len(empty)} frame(s): passed through")
    return "; ".join(parts)


NODES: list[type[NodeDef]] = [FaceMendDetect]
