"""FaceMend Paste Back: blend restored crops into the original frames (thin node over ``face.pipeline``)."""

from __future__ import annotations

from typing import Any

import torch

from ..face.color import COLOR_MODES
from ..face.masks import MASK_MODES
from ..face.models import FaceModels
from ..face.pipeline import paste_back
from ..face.records import FaceSet
from ..face.settings import PASTE
from ..runtime import Progress
from .images import check_finite, rgb_view
from .inputs import parse_per_face
from .spec import In, NodeDef, NodeResult, Out


class FaceMendPasteBack(NodeDef):
    NODE_ID = "FaceMendPasteBack"
    DISPLAY_NAME = "FaceMend Paste Back"
    CATEGORY = "FaceMend/face"
    DESCRIPTION = (
        "Blends face crops (restored by any node) back into the image they were cut from by 'FaceMend Detect', with a "
        "soft mask, optional colour correction and antialiased warping. Outputs the image and the blend mask; frames "
        "without faces pass through unchanged."
    )
    INPUTS = (
        In("image", "IMAGE", "The image batch that went into 'FaceMend Detect' (or a uniformly resized copy)."),
        In("crops", "IMAGE", "Face crops to paste, one per detected face in the same order and size (e.g. restored)."),
        In("faces", "FACEMEND_FACES", "The faces output of 'FaceMend Detect'."),
        In("mask", "COMBO", "Blend mask: box (feathered square), parsing (face parts from the parser) or "
           "box+parsing (parts with the box's soft edge, never a hard edge at the crop border).", default=PASTE.mask,
           options=MASK_MODES),
        In("feather", "FLOAT", "Width of the mask's soft edge, as a fraction of the face size.", default=PASTE.feather,
           min=0.0, max=1.0, step=0.01),
        In("erode", "FLOAT", "Shrink the mask inwards by this fraction of the face size before feathering.",
           default=PASTE.erode, min=0.0, max=0.5, step=0.01),
        In("color_correction", "COMBO", "Match the crop's colours to the original face: none, adain (mean and "
           "contrast), wavelet (low frequencies from the original) or histogram.", default=PASTE.color, options=COLOR_MODES),
        In("opacity", "FLOAT", "How strongly the crops replace the original (1 = fully).", default=PASTE.opacity, min=0.0,
           max=1.0, step=0.01),
        In("parse_classes", "STRING", "Parsing masks: face parts to include, comma-separated, from skin, brows, eyes, "
           "nose, mouth, hair, ears, neck.", default=PASTE.parse_classes),
        In("detector", "FACEMEND_DETECTOR", "Needed for parsing masks: a detector loaded with a parser "
           "(bisenet or parsenet).", optional=True),
        In("per_face_opacity", "STRING", "Optional: one opacity per face, comma-separated in face order (e.g. the "
           "opacity output of 'FaceMend Face Quality'), multiplied with 'opacity'. A face at 0 is left untouched: "
           "the output there is the input, bit for bit.", default="", optional=True),
    )
    OUTPUTS = (
        Out("IMAGE", "image", "The image with the crops blended in."),
        Out("MASK", "mask", "Where and how much the crops were blended (0 = original pixel, untouched)."),
    )

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        faces = kw["faces"]
        if not isinstance(faces, FaceSet):
            raise ValueError("FaceMend Paste Back: 'faces' must come from 'FaceMend Detect'.")
        models = kw.get("detector")
        if models is not None and not isinstance(models, FaceModels):
            raise ValueError("FaceMend Paste Back: 'detector' must come from 'FaceMend Load Face Detector'.")
        frames = rgb_view(kw["image"])
        crops = rgb_view(kw["crops"], "crops", allow_empty=True)
        if len(faces) == 0:  # Detect kept no face: its crops are a placeholder (or empty); nothing to paste
            crops = crops[:0]
        check_finite(frames)
        opacity = float(kw.get("opacity", PASTE.opacity))
        per_face = parse_per_face(kw.get("per_face_opacity"), "per_face_opacity", cls.DISPLAY_NAME, count=len(faces) or None,
                                  unit="faces")
        if per_face is not None and len(faces):
            opacity = opacity * torch.tensor(per_face if len(per_face) > 1 else per_face * len(faces))
        progress = Progress(max(len(faces), 1), "FaceMend paste")
        image, mask = paste_back(
            frames, crops, faces, mask=kw.get("mask", PASTE.mask), erode=kw.get("erode", PASTE.erode),
            feather=kw.get("feather", PASTE.feather), color=kw.get("color_correction", PASTE.color),
            opacity=opacity, models=models,
            parse_classes=kw.get("parse_classes", PASTE.parse_classes), progress=progress,
        )
        progress.close()
        text = f"{len(faces)} face(s) pasted back" if len(faces) else "no face to paste: image passed through"
        return NodeResult((image.permute(0, 2, 3, 1), mask), ui={"text": [text]})


NODES: list[type[NodeDef]] = [FaceMendPasteBack]
