"""StyleGAN2's "fused" bias + leaky ReLU, in plain PyTorch.

StyleGAN2 implementations ship this as a compiled CUDA kernel (``fused_bias_act``); the maths is
only ``scale * leaky_relu(x + bias, slope)``, so here it is two ordinary ops that run on any device
and in any dtype (PyTorch has no fused equivalent we could call instead).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: The gain that keeps activations' variance after a leaky ReLU with slope 0.2 (StyleGAN2's choice).
DEFAULT_SCALE = math.sqrt(2.0)


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    negative_slope: float = 0.2,
    scale: float = DEFAULT_SCALE,
) -> torch.Tensor:
    """``scale * leaky_relu(x + bias, negative_slope)``.

    Args:
        x: ``(B, C, ...)`` features, any float dtype.
        bias: ``(C,)`` per-channel bias added along dim 1, or ``None``. It is cast to ``x``'s dtype
            so reduced-precision activations stay reduced (as the CUDA kernel does).
        negative_slope: leaky ReLU slope.
        scale: output gain.

    Returns:
        Tensor shaped like ``x``, same dtype.
    """
    if bias is not None:
        x = x + bias.to(x.dtype).view(1, -1, *([1] * (x.ndim - 2)))
        if not torch.is_grad_enabled():  # x is our own temporary: skip two full-size allocations
            return F.leaky_relu_(x, negative_slope).mul_(scale)
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + scaled leaky ReLU; its only parameter is ``bias`` ``(C,)`` (official key name)."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = DEFAULT_SCALE) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)
