"""Small building blocks shared by the VQ-GAN style restorers (CodeFormer, RestoreFormer, RestoreFormer++).

Everything here is plain PyTorch, device- and dtype-agnostic (fp32, fp16/bf16 autocast), and keeps
the memory format of its input (``channels_last`` feature maps stay ``channels_last``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def working_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format the VQ-GAN networks run best in for the current precision.

    Under reduced-precision autocast (bf16/fp16, CPU or GPU) feature maps go ``channels_last``: the
    convolutions then skip the NCHW <-> blocked reorders and use tensor cores / AMX. In fp32 they stay
    NCHW, because PyTorch's channels-last GroupNorm on the CPU accumulates its statistics sequentially
    and loses about 1e-4 (relative) at 512x512, which would break exact agreement with the official
    networks.
    """
    if torch.is_autocast_enabled(x.device.type):
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def group_norm(channels: int) -> nn.GroupNorm:
    """The VQ-GAN normalisation: 32 groups, ``eps=1e-6``, affine."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def norm_swish(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``swish(norm(x))`` as a new tensor (``x`` is not modified). ``swish(t) = t * sigmoid(t)`` = SiLU."""
    return F.silu(norm(x), inplace=True)


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
