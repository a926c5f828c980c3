"""Colour correction of restored crops against the original crops (batched, any device).

Inputs are RGB float ``(n, 3, S, S)`` in ``[0, 1]``; ``reference`` is the original image's crop at
the same alignment. Results are clamped to ``[0, 1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

COLOR_MODES = ("none", "adain", "wavelet", "histogram")


def adain(x: torch.Tensor, reference: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Match each channel's mean and standard deviation to ``reference``'s.

    Args:
        weight: optional ``(n, 1, S, S)`` pixel weights (e.g. the blend mask) for the statistics;
            crops whose weights sum to almost nothing use uniform weights.
    """
    n = x.shape[0]
    if weight is None:
        w = torch.ones_like(x[:, :1])
    else:
        w = weight.to(x.dtype)
        empty = w.flatten(1).sum(1) < 1.0
        if bool(empty.any()):
            w = torch.where(empty.view(n, 1, 1, 1), torch.ones_like(w), w)
    total = w.flatten(1).sum(1).view(n, 1, 1, 1)

    def stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (t * w).sum(dim=(2, 3), keepdim=True) / total
        var = ((t - mean) ** 2 * w).sum(dim=(2, 3), keepdim=True) / total
        return mean, (var + eps).sqrt()

    mx, sx = stats(x)
    mr, sr = stats(reference)
    return ((x - mx) / sx * sr + mr).clamp(0, 1)


def _a_trous_blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """3x3 binomial blur with holes (``dilation`` px apart), replicate borders."""
    k1 = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    k = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 3, 3)
    p = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(p, k, groups=x.shape[1], dilation=dilation)


def wavelet_levels(size: int) -> int:
    """Decomposition depth: 5 levels at 512 px (as CodeFormer's wavelet colour fix), one more per doubling."""
    return max(1, 5 + int(round(math.log2(max(size, 16) / 512))))


def low_frequency(x: torch.Tensor, levels: int) -> torch.Tensor:
    """The residual low-pass of an a-trous wavelet decomposition with ``levels`` levels."""
    for i in range(levels):
        x = _a_trous_blur(x, 2**i)
    return x


def wavelet(x: torch.Tensor, reference: torch.Tensor, levels: int | None = None) -> torch.Tensor:
    """Keep ``x``'s high frequencies, take the low frequencies (colour, shading) from ``reference``."""
    levels = levels or wavelet_levels(x.shape[-1])
    return (x - low_frequency(x, levels) + low_frequency(reference, levels)).clamp(0, 1)


def histogram_match(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram matching: the k-th darkest value of ``x`` becomes ``reference``'s k-th.

    Exact for equal-sized crops (rank transfer by sorting; no binning).
    """
    n, c, h, w = x.shape
    flat = x.reshape(n, c, -1)
    ref_sorted = torch.sort(reference.reshape(n, c, -1), dim=-1).values
    order = torch.argsort(flat, dim=-1, stable=True)
    out = torch.empty_like(flat)
    out.scatter_(-1, order, ref_sorted)
    return out.view(n, c, h, w)


def correct_color(x: torch.Tensor, reference: torch.Tensor, mode: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Apply colour correction ``mode`` (one of :data:`COLOR_MODES`) to restored crops ``x``."""
    if mode not in COLOR_MODES:
        raise ValueError(f"FaceMend: unknown colour correction {mode!r}; choose one of {', '.join(COLOR_MODES)}")
    if mode == "none":
        return x
    if x.shape != reference.shape:
        raise ValueError(f"colour correction: shapes differ {tuple(x.shape)} vs {tuple(reference.shape)}")
    if mode == "adain":
        return adain(x, reference, weight)
    if mode == "wavelet":
        return wavelet(x, reference)
    return histogram_match(x, reference)
