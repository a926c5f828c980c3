"""The one ComfyUI IMAGE adapter: IMAGE/MASK <-> ``(B, C, H, W)`` and the input checks every node shares.

ComfyUI IMAGE: ``(B, H, W, C)`` float32 in ``[0, 1]``, RGB (C=3; some nodes emit 1 or 4).
ComfyUI MASK: ``(B, H, W)`` float32 in ``[0, 1]``. FaceMend's library works on ``(B, C, H, W)``.
Inputs are never modified: ComfyUI caches node outputs and shares them between nodes.
"""

from __future__ import annotations

import torch


def rgb_view(image: torch.Tensor, name: str = "image", allow_empty: bool = False) -> torch.Tensor:
    """ComfyUI IMAGE ``(B, H, W, C)`` -> ``(B, 3, H, W)`` *view* (no copy): 1 channel is repeated,
    a 4th (alpha) channel ignored. Values are not checked here (see :func:`check_finite`).

    Raises:
        ValueError: not a 4-D float tensor, 2 or 5+ channels, or an empty image (an empty batch
            is accepted with ``allow_empty``).
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"FaceMend: {name} must be an IMAGE batch (B, H, W, C); got {shape}.")
    b, h, w, c = image.shape
    if (b == 0 and not allow_empty) or h == 0 or w == 0:
        raise ValueError(f"FaceMend: {name} is empty (shape {tuple(image.shape)}).")
    if c == 1:
        image = image.expand(-1, -1, -1, 3)
    elif c == 4:
        image = image[..., :3]
    elif c != 3:
        raise ValueError(f"FaceMend: {name} has {c} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA).")
    if not image.is_floating_point():
        raise ValueError(f"FaceMend: {name} must be a float IMAGE in [0, 1]; got dtype {image.dtype}.")
    return image.permute(0, 3, 1, 2)


def check_finite(frames: torch.Tensor, name: str = "image", chunk: int = 4) -> None:
    """Refuse NaN/Inf in ``(B, ...)`` frames, checking ``chunk`` frames at a time (bounded memory)."""
    for i in range(0, frames.shape[0], chunk):
        if not bool(torch.isfinite(frames[i:i + chunk]).all()):
            bad = [i + j for j, ok in enumerate(torch.isfinite(frames[i:i + chunk]).flatten(1).all(1).tolist()) if not ok]
            raise ValueError(f"FaceMend: {name} frame(s) {bad} contain NaN or Inf values; fix the node that produced them.")


def image_to_bchw(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """ComfyUI IMAGE ``(B, H, W, C)`` -> RGB ``(B, 3, H, W)`` float32, contiguous (a new tensor),
    refusing NaN/Inf; an empty batch is allowed. For whole frames prefer :func:`rgb_view` (no copy).

    Raises:
        ValueError: wrong rank, unsupported channel count, a non-float image, or NaN/Inf values.
    """
    x = rgb_view(image, name, allow_empty=True)
    check_finite(x, name)
    return x.float().contiguous()


def bchw_to_image(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ComfyUI IMAGE ``(B, H, W, 3)`` float32, clamped to ``[0, 1]``."""
    return x.clamp(0, 1).permute(0, 2, 3, 1).float().contiguous()


#: Grey value of the placeholder crop Detect emits when it keeps no face.
PLACEHOLDER_VALUE = 0.5
#: What a restore node says when it receives the placeholder (or an empty batch).
NO_FACE = "no face (Detect kept none): passed through, nothing restored"


def placeholder_crops(size: int) -> torch.Tensor:
    """A one-image IMAGE batch ``(1, size, size, 3)`` of flat grey, emitted by Detect when it kept no face.

    Core nodes (Preview Image, Save Image, VAE Encode, Image Scale ...) cannot take an empty batch,
    so a frame without faces sends this instead; the faces bundle then holds no face, Paste Back
    ignores the crops, and the restore nodes pass it through without running a model
    (:func:`is_placeholder`).
    """
    return torch.full((1, size, size, 3), PLACEHOLDER_VALUE, dtype=torch.float32)


def is_placeholder(crops: torch.Tensor) -> bool:
    """True for Detect's no-face placeholder: a single flat grey image (also after a resize or a
    format change by core nodes, which keep a flat image flat). Real face crops are never flat."""
    if not isinstance(crops, torch.Tensor) or crops.ndim != 4 or crops.shape[0] != 1 or crops.numel() == 0:
        return False
    lo, hi = float(crops.amin()), float(crops.amax())
    return hi - lo < 1e-4 and abs(hi - PLACEHOLDER_VALUE) < 1e-3
