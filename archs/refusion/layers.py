"""Building blocks shared by the Refusion / IR-SDE networks (official state-dict layout).

All blocks work on channels-first feature maps ``(B, C, H, W)`` of any float dtype and run under
fp16/bf16 autocast. Parameter names (``g``, ``mlp.1``, ``proj``, ``fn.fn.to_qkv`` ...) follow the
official ``module_util.py`` of Algolzw/image-restoration-sde so released checkpoints load strictly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """Bias-free LayerNorm over the channel axis of ``(B, C, H, W)`` with a learned gain ``g``.

    Matches the official ``LayerNorm``: biased variance, ``eps = 1e-5`` for fp32 inputs and
    ``1e-3`` otherwise. ``torch.nn.functional.layer_norm`` normalises trailing axes only (it would
    need two permutes and has no dtype-dependent eps), hence this small hand-written version. The
    statistics are computed in fp32 so fp16/bf16 inputs stay stable; the result has ``x``'s dtype.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        xf = x.float()
        var = torch.var(xf, dim=1, unbiased=False, keepdim=True)
        mean = torch.mean(xf, dim=1, keepdim=True)
        return ((xf - mean) * (var + eps).rsqrt() * self.g.float()).to(x.dtype)


class SimpleGate(nn.Module):
    """NAFNet's gate: split the channels (dim 1) in two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class SinusoidalTimeEmbedding(nn.Module):
    """Time steps ``(B,)`` (int or float) -> ``(B, dim)`` float32 ``[sin | cos]`` features.

    Frequencies ``exp(-i * log(10000) / (dim/2 - 1))`` for ``i < dim/2`` (the official
    ``SinusoidalPosEmb``). No parameters.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        step = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=t.device) * -step)
        args = t.float()[:, None] * freqs[None, :]
        return torch.cat((args.sin(), args.cos()), dim=-1)


def conv_nobias(dim_in: int, dim_out: int, kernel_size: int = 3) -> nn.Conv2d:
    """A 'same'-padded convolution without bias (the official ``default_conv``)."""
    return nn.Conv2d(dim_in, dim_out, kernel_size, padding=kernel_size // 2, bias=False)


class ConvAct(nn.Module):
    """Conv (no bias) -> optional FiLM ``x * (scale + 1) + shift`` -> SiLU (official ``Block``)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = conv_nobias(dim_in, dim_out, 3)

    def forward(self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.proj(x)
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return F.silu(x)


class ResBlock(nn.Module):
    """Two :class:`ConvAct` with an optional time FiLM on the first and a 1x1 skip projection.

    ``mlp`` (``SiLU -> Linear(time_dim, 2 * dim_out)``) exists only when ``time_dim`` is given;
    ``res_conv`` only when ``dim_in != dim_out`` (keys as in the official ``ResBlock``).
    """

    def __init__(self, dim_in: int, dim_out: int, time_dim: int | None = None) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim_out * 2)) if time_dim else None
        self.block1 = ConvAct(dim_in, dim_out)
        self.block2 = ConvAct(dim_out, dim_out)
        self.res_conv: nn.Module = conv_nobias(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        scale_shift = None
        if self.mlp is not None and time_emb is not None:
            emb = self.mlp(time_emb)[:, :, None, None]
            scale, shift = emb.chunk(2, dim=1)
            scale_shift = (scale, shift)
        h = self.block2(self.block1(x, scale_shift))
        return h + self.res_conv(x)


class LinearAttention(nn.Module):
    """Linear (softmax-kernel) attention over all positions, 4 heads of 32 channels.

    ``q`` is softmaxed over channels, ``k`` over positions; the output goes through a 1x1 conv and
    a :class:`ChannelLayerNorm` (``to_out.0`` / ``to_out.1``), as in the official module.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.scale = dim_head**-0.5
        self.heads = heads
        hidden = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), ChannelLayerNorm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        v = v / (h * w)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(out.reshape(b, -1, h, w))


class PreNormResidualAttention(nn.Module):
    """``x + LinearAttention(LayerNorm(x))``; keys ``fn.norm.g`` and ``fn.fn.*`` as the official
    ``Residual(PreNorm(dim, LinearAttention(dim)))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fn = _PreNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class _PreNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fn = LinearAttention(dim)
        self.norm = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


def downsample(dim_in: int, dim_out: int) -> nn.Conv2d:
    """Strided 4x4 convolution halving height and width (with bias)."""
    return nn.Conv2d(dim_in, dim_out, 4, 2, 1)


def upsample(dim_in: int, dim_out: int) -> nn.Sequential:
    """Nearest 2x upsampling then a 3x3 convolution with bias (keys ``1.weight``/``1.bias``)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim_in, dim_out, 3, 1, 1))


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "constant") -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom/right so H and W become multiples of ``multiple``.

    ``mode`` is ``"constant"`` (zeros, NAFNet) or ``"reflect"`` (the U-Nets; needs the pad to be
    smaller than the side).
    """
    h, w = x.shape[-2:]
    ph = (multiple - h % multiple) % multiple
    pw = (multiple - w % multiple) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode=mode)
