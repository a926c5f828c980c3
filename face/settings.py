"""The defaults of the face stages, written once: nodes, the command line and the library read them here.

``DETECT`` holds Detect's (and Restore Faces') detection and cropping defaults, ``PASTE`` Paste
Back's blending defaults. A node's widget default, the CLI's option default and the library's
keyword default are all these values, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..archs.framing import FFHQ
from .detection import DEFAULT_MAX_SIDE


@dataclass(frozen=True)
class DetectSettings:
    """Detection, selection and crop defaults (see :func:`facemend.face.pipeline.detect_and_align`).

    Attributes:
        threshold: minimum detector confidence (facexlib's helper uses a fixed 0.97).
        min_size: faces whose box's shorter side is below this many source pixels are ignored.
        select, indices, order, max_faces: which faces are kept and how they are numbered.
        crop_size: side of the square crops in pixels.
        padding: facexlib ``crop_ratio`` (1 = the standard framing).
        border: fill of crop pixels outside the frame.
        alignment: landmark fit, ``"lmeds"`` or ``"least-squares"``.
        max_side: frames with a longer side are shrunk for detection only.
        video, detect_every, smoothing: video-mode options.
        framing: name of the face framing the crops are aligned to (``"ffhq"``, ``"gpen"``).
    """

    threshold: float = 0.8
    min_size: float = 20.0
    select: str = "all"
    indices: str = "0"
    order: str = "area"
    max_faces: int = 0
    crop_size: int = 512
    padding: float = 1.0
    border: str = "grey"
    alignment: str = "lmeds"
    max_side: int = DEFAULT_MAX_SIDE
    video: bool = False
    detect_every: int = 1
    smoothing: float = 0.0
    framing: str = FFHQ.name


@dataclass(frozen=True)
class PasteSettings:
    """Paste-back defaults (see :func:`facemend.face.pipeline.paste_back`).

    Attributes:
        mask: ``"box"``, ``"parsing"`` or ``"box+parsing"``.
        erode, feather: mask shrink and soft-edge width, as fractions of the face size.
        color: colour correction of the crop against the original face.
        opacity: blend strength in ``[0, 1]``.
        parse_classes: face-parsing groups kept in parsing masks.
    """

    mask: str = "box"
    erode: float = 0.05
    feather: float = 0.1
    color: str = "none"
    opacity: float = 1.0
    parse_classes: str = "skin, brows, eyes, nose, mouth"


DETECT = DetectSettings()
PASTE = PasteSettings()
