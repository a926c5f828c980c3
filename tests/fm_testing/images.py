"""Real test images: the astronaut photo and its FFHQ-aligned 512 face crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def _find_shared_weights() -> Path:
    """``shared/weights`` beside the checkout (CI: ``../shared``), searched upwards."""
    root = Path(__file__).resolve().parents[2]
    for base in (root, *root.parents):
        cand = base / "shared" / "weights"
        if cand.is_dir():
            return cand
    return root.parent / "shared" / "weights"


WEIGHTS_DIR = _find_shared_weights()
RETINAFACE_MOBILENET = WEIGHTS_DIR / "detection_mobilenet0.25_Final.pth"


def astronaut_rgb() -> np.ndarray:
    """``skimage.data.astronaut()``: ``(512, 512, 3)`` uint8 RGB, public domain."""
    from skimage import data

    return data.astronaut()


def astronaut_image() -> torch.Tensor:
    """The astronaut as a ComfyUI IMAGE: ``(1, 512, 512, 3)`` float32 in ``[0, 1]``."""
    return torch.from_numpy(astronaut_rgb()).float().div(255).unsqueeze(0)


def face_crop_512() -> torch.Tensor:
    """The astronaut's face aligned to the FFHQ 5-point template at 512 px.

    ``(1, 3, 512, 512)`` RGB float32 in ``[0, 1]``. Made once with facexlib's RetinaFace
    (mobilenet0.25, ``../shared/weights``) + ``cv2.estimateAffinePartial2D(LMEDS)`` + ``warpAffine``
    (the official GFPGAN/CodeFormer alignment) and stored as PNG so every parity test sees the
    same pixels regardless of later changes to our own pipeline.
    """
    import cv2

    bgr = cv2.imread(str(DATA_DIR / "astronaut_face_512.png"), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).unsqueeze(0).contiguous()
