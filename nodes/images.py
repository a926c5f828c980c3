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
