"""Small building blocks shared by the VQ-GAN style restorers (CodeFormer, RestoreFormer, RestoreFormer++).

Everything here is plain PyTorch, device- and dtype-agnostic (fp32, fp16/bf16 autocast), and keeps
the memory format of its input (``channels_last`` feature maps stay ``channels_last``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

T = TypeVar("T")


def working_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a ``channels_last`` tensor: the memory format the VQ-GAN networks run in.

    Convolutions on channels-last maps skip oneDNN's NCHW <-> blocked reorders on the CPU and use
    tensor cores on GPUs; the networks' GroupNorms keep fp32-exact statistics in this format
    (:class:`GroupNorm`), so results equal the NCHW reference to ~1e-6.
    """
    return x.contiguous(memory_format=torch.channels_last)


#: Elements per strip when channels-last GroupNorm statistics are gathered strip by strip (1 MiB
#: of fp32: small enough to stay in a core's L2 cache between the strip's four passes).
_GN_STRIP_ELEMENTS = 1 << 18


def channels_last_group_norm(
    x: torch.Tensor,
    groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    inplace: bool = False,
) -> torch.Tensor:
    """``F.group_norm`` for a ``channels_last`` fp32 map ``(B, C, H, W)`` with fp32-exact statistics.

    Hand-written because PyTorch's channels-last GroupNorm on the CPU accumulates each group's sums
    over all ``H*W`` positions in one fp32 running sum, which at 512x512 is off by ~1e-4 (relative)
    (the NCHW kernel is exact but would cost two layout conversions around every norm). Here the
    map is read as ``(B, H*W, C)`` rows in strips of ~1 MiB; per strip, the per-channel sums of
    ``x - x[first pixel]`` and of its square are row-vector products ``ones @ d`` (BLAS keeps
    blocked partial sums, so they are accurate to ~2e-7, and it is ~4x faster than a reduction over
    the rows); strip results are accumulated in fp64 and combined into group statistics. Then one
    fused ``scale * x + shift`` pass, written over ``x`` when ``inplace`` (which saves allocating, and
    page-faulting, a new 512x512 map). Returns a ``channels_last`` tensor.
    """
    b, c, h, w = x.shape
    per_group = c // groups
    rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view of the channels-last memory
    pivot = rows[:, :1, :]  # shifting by a sample of each channel avoids cancellation in E[x^2] - E[x]^2
    strip_rows = max(1, _GN_STRIP_ELEMENTS // (b * c))
    ones = x.new_ones(1, strip_rows)
    sums, squares = [], []
    for strip in rows.split(strip_rows, dim=1):
        d = strip - pivot  # (B, n, C), fresh and cache-resident
        row = ones[:, : d.shape[1]]
        sums.append(torch.matmul(row, d))  # (B, 1, C)
        squares.append(torch.matmul(row, d.square_()))
    s1 = torch.cat(sums, dim=1).double().sum(1)  # (B, C)
    s2 = torch.cat(squares, dim=1).double().sum(1)
    n = h * w
    mean_c = s1 / n
    var_c = s2 / n - mean_c.square()
    mean_c = mean_c + pivot.reshape(b, c).double()
    mean_g = mean_c.view(b, groups, per_group).mean(-1, keepdim=True)
    var_g = (var_c.view(b, groups, per_group) + (mean_c.view(b, groups, per_group) - mean_g).square()).mean(-1, keepdim=True)
    inv = torch.rsqrt(var_g.clamp_min(0) + eps).expand(b, groups, per_group).reshape(b, c)
    scale = inv if weight is None else inv * weight.double()
    shift = -mean_g.expand(b, groups, per_group).reshape(b, c) * scale
    if bias is not None:
        shift = shift + bias.double()
    shift4, scale4 = shift.to(x.dtype)[:, :, None, None], scale.to(x.dtype)[:, :, None, None]
    if inplace:
        return torch.addcmul(shift4, x, scale4, out=x)
    return torch.addcmul(shift4, x, scale4)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state-dict keys) that stays exact on ``channels_last``
    fp32 CPU maps of 64x64 and more (see :func:`channels_last_group_norm`); otherwise PyTorch's own."""

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Normalise ``x`` ``(B, C, H, W)``; with ``inplace=True`` the result may overwrite ``x``."""
        h, w = x.shape[-2:]
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and h * w >= 64 * 64
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.is_autocast_enabled("cpu")
        ):
            return channels_last_group_norm(x, self.num_groups, self.weight, self.bias, self.eps, inplace)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def group_norm(channels: int) -> nn.GroupNorm:
    """The VQ-GAN normalisation: 32 groups, ``eps=1e-6``, affine."""
    return GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def norm_swish(norm: nn.GroupNorm, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``swish(norm(x))`` (``swish(t) = t * sigmoid(t)`` = SiLU).

    ``x`` is left untouched unless ``inplace``, when its memory may be reused for the result (pass
    only intermediate maps nothing else reads).
    """
    out = norm(x, inplace=inplace) if isinstance(norm, GroupNorm) else norm(x)
    return F.silu(out, inplace=True)


def pad_downsample(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Stride-2 3x3 ``conv`` after padding one zero row/column at the bottom/right (VQ-GAN's downsample).

    ``(B, C, H, W)`` -> ``(B, C', H/2, W/2)`` for even ``H, W``.
    """
    return conv(F.pad(x, (0, 1, 0, 1)))


def upsample_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling followed by ``conv``: ``(B, C, H, W)`` -> ``(B, C', 2H, 2W)``."""
    return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _tokens(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, heads, H*W, C/heads)``; channel ``c`` goes to head ``c // (C/heads)``."""
    b, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(b, h * w, heads, c // heads).transpose(1, 2)


def map_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int = 1) -> torch.Tensor:
    """Multi-head dot-product attention between feature maps, through ``scaled_dot_product_attention``.

    Args:
        q: queries ``(B, C, H, W)``; each of the ``H*W`` positions is one query token.
        k, v: keys and values ``(B, C, H', W')``.
        heads: channels are split into ``heads`` contiguous groups of ``C/heads``; scores are scaled
            by ``(C/heads) ** -0.5`` (the convention of CodeFormer's and RestoreFormer's blocks).

    Returns:
        ``(B, C, H, W)`` (``channels_last`` strides), dtype of ``q``.
    """
    b, c, h, w = q.shape
    out = F.scaled_dot_product_attention(_tokens(q, heads), _tokens(k, heads), _tokens(v, heads))
    # (B, heads, HW, C/heads) -> (B, H, W, C) -> (B, C, H, W) viewed channels-last.
    return out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)


def residual_add(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``h + x`` for a block's fresh output ``h`` and its residual input ``x``.

    In place into ``h`` when the dtypes match (saves a full-size allocation); otherwise (under
    autocast, ``h`` in fp16/bf16 and ``x`` in fp32) out of place in the promoted dtype, which keeps
    an fp32 residual stream fp32.
    """
    return h.add_(x) if h.dtype == x.dtype else x + h


class ResnetBlock(nn.Module):
    """The VQ-GAN residual block: ``x + conv2(swish(norm2(conv1(swish(norm1(x))))))``.

    ``(B, in_ch, H, W)`` -> ``(B, out_ch, H, W)``, in the memory format of ``x``. When the widths
    differ the residual goes through a 1x1 conv whose state-dict name differs between the official
    codebases, given as ``shortcut_name``: ``"nin_shortcut"`` (RestoreFormer, RestoreFormer++),
    ``"conv_out"`` (CodeFormer), ``"shortcut_conv"`` (VQFR v1), ``"residual_func"`` (VQFR v2).
    """

    def __init__(self, in_ch: int, out_ch: int, shortcut_name: str = "nin_shortcut") -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self._shortcut_name = shortcut_name if in_ch != out_ch else None
        if self._shortcut_name is not None:
            setattr(self, shortcut_name, nn.Conv2d(in_ch, out_ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(norm_swish(self.norm1, x))
        h = self.conv2(norm_swish(self.norm2, h, inplace=True))  # h is conv1's fresh output
        shortcut = x if self._shortcut_name is None else getattr(self, self._shortcut_name)(x)
        return residual_add(h, shortcut)


class AttnBlock(nn.Module):
    """Single-head self-attention over all ``H*W`` positions with a residual (CodeFormer, VQFR v2):
    ``x + proj_out(attention(q(n), k(n), v(n)))`` with ``n = norm(x)``, scores scaled by ``C ** -0.5``.

    ``(B, C, H, W)`` -> same shape, in the memory format of ``x``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        out = map_attention(self.q(h), self.k(h), self.v(h), heads=1)
        if not x.is_contiguous(memory_format=torch.channels_last):
            # Back to NCHW for NCHW callers: a channels-last view would send the following convs
            # and GroupNorms down CPU kernels that are less accurate in fp32 (see GroupNorm).
            out = out.contiguous()
        return residual_add(self.proj_out(out), x)


def run_in_full_precision(
    fn: Callable[[torch.Tensor], T], x: torch.Tensor, weight: torch.Tensor, enabled: bool = True
) -> T:
    """``fn(x)`` with autocast off and ``x`` cast to ``weight``'s dtype (fp32 under autocast);
    plain ``fn(x)`` when not ``enabled`` (the networks' ``precise_codes = False``).

    Used for everything that decides which codebook entries are picked: in half precision the
    nearest / most likely code can change, which swaps a whole patch of the face (measured on
    CodeFormer at 512 px under CPU bf16 autocast: 3.5% of the codes flip and the output falls to
    22 dB PSNR against fp32; with the encoder in fp32 it stays at 39 dB).
    """
    if not enabled:
        return fn(x)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return fn(x.to(weight.dtype))
