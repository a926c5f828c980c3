"""IMAGE/MASK <-> BCHW conversions and input checks shared by the nodes.

ComfyUI IMAGE: ``(B, H, W, C)`` float32 in ``[0, 1]``, RGB (C=3; some nodes emit 1 or 4).
ComfyUI MASK: ``(B, H, W)`` float32 in ``[0, 1]``. FaceMend's library works on ``(B, C, H, W)``.
"""

from __future__ import annotations

import torch


def image_to_bchw(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """ComfyUI IMAGE ``(B, H, W, C)`` -> RGB ``(B, 3, H, W)`` float32 in ``[0, 1]`` (a new tensor).

    1-channel images are repeated to RGB; a 4th (alpha) channel is dropped. NaNs are refused.

    Raises:
        ValueError: wrong rank, unsupported channel count, or NaN/Inf values.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"FaceMend: {name} must be an IMAGE batch (B, H, W, C); got {shape}.")
    c = image.shape[-1]
    if c == 1:
        image = image.expand(-1, -1, -1, 3)
    elif c == 4:
        image = image[..., :3]
    elif c != 3:
        raise ValueError(f"FaceMend: {name} has {c} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA).")
    if image.is_floating_point() and not torch.isfinite(image).all():
        raise ValueError(f"FaceMend: {name} contains NaN or Inf values; fix the node that produced it.")
    return image.permute(0, 3, 1, 2).float().contiguous()


def bchw_to_image(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ComfyUI IMAGE ``(B, H, W, 3)`` float32, clamped to ``[0, 1]``."""
    return x.clamp(0, 1).permute(0, 2, 3, 1).float().contiguous()
