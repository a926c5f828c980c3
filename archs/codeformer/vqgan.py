"""CodeFormer's VQ-GAN: encoder, codebook and generator (state-dict layout of sczhou/CodeFormer).

The encoder and generator are flat ``blocks`` lists (``encoder.blocks.<i>``, ``generator.blocks.<i>``)
mixing convolutions, residual blocks, single-head attention, resampling and a final norm, exactly
in the official order, so official checkpoints load with ``strict=True``. Feature maps are
``(B, C, H, W)``; the networks are written to run ``channels_last``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.vq import group_norm, map_attention, norm_swish, pad_downsample, upsample_conv

#: The fixed VQ-GAN shape of every released CodeFormer: base width, channel multipliers per
#: resolution (512 -> 16), residual blocks per resolution, attention at 16x16, 256-d codes.
BASE_CHANNELS = 64
CHANNEL_MULT = (1, 2, 2, 4, 4, 8)
RES_BLOCKS = 2
IMAGE_SIZE = 512
ATTN_RESOLUTION = 16
CODE_DIM = 256


class ResBlock(nn.Module):
    """``x + conv2(swish(norm2(conv1(swish(norm1(x))))))``, with a 1x1 ``conv_out`` shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_out = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(norm_swish(self.norm1, x))
        h = self.conv2(norm_swish(self.norm2, h, inplace=True))  # h is conv1's fresh output
        shortcut = x if self.conv_out is None else self.conv_out(x)
        return h.add_(shortcut)


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H*W`` positions, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        h = map_attention(self.q(h), self.k(h), self.v(h), heads=1)
        return self.proj_out(h).add_(x)


class Downsample(nn.Module):
    """Bottom/right zero pad + stride-2 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_downsample(self.conv, x)


class Upsample(nn.Module):
    """Nearest 2x upsampling + 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_conv(self.conv, x)


class Encoder(nn.Module):
    """``(B, 3, 512, 512)`` in ``[-1, 1]`` -> ``(B, 256, 16, 16)`` latent features.

    ``forward`` also returns the feature maps after the blocks listed in ``taps`` (block index ->
    the map right after that block), which CodeFormer's fusion layers read.
    """

    def __init__(self, code_dim: int = CODE_DIM) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, BASE_CHANNELS, 3, padding=1)]
        res = IMAGE_SIZE
        in_ch = BASE_CHANNELS
        for level, mult in enumerate(CHANNEL_MULT):
            out_ch = BASE_CHANNELS * mult
            for _ in range(RES_BLOCKS):
                blocks.append(ResBlock(in_ch, out_ch))
                in_ch = out_ch
                if res == ATTN_RESOLUTION:
                    blocks.append(AttnBlock(in_ch))
            if level != len(CHANNEL_MULT) - 1:
                blocks.append(Downsample(in_ch))
                res //= 2
        blocks += [ResBlock(in_ch, in_ch), AttnBlock(in_ch), ResBlock(in_ch, in_ch)]
        # The official VQ-GAN ends with a GroupNorm straight into the conv (no swish in between).
        blocks += [group_norm(in_ch), nn.Conv2d(in_ch, code_dim, 3, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, taps: frozenset[int] = frozenset()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        tapped: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                tapped[i] = x
        return x, tapped


class Generator(nn.Module):
    """``(B, 256, 16, 16)`` code features -> ``(B, 3, 512, 512)`` image in about ``[-1, 1]``.

    The blocks are run one by one by :class:`~.codeformer.CodeFormer`, which fuses encoder
    features in after some of them; ``forward`` is the plain decoder.
    """

    def __init__(self, code_dim: int = CODE_DIM) -> None:
        super().__init__()
        in_ch = BASE_CHANNELS * CHANNEL_MULT[-1]
        res = IMAGE_SIZE // 2 ** (len(CHANNEL_MULT) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(code_dim, in_ch, 3, padding=1)]
        blocks += [ResBlock(in_ch, in_ch), AttnBlock(in_ch), ResBlock(in_ch, in_ch)]
        for level in reversed(range(len(CHANNEL_MULT))):
            out_ch = BASE_CHANNELS * CHANNEL_MULT[level]
            for _ in range(RES_BLOCKS):
                blocks.append(ResBlock(in_ch, out_ch))
                in_ch = out_ch
                if res == ATTN_RESOLUTION:
                    blocks.append(AttnBlock(in_ch))
            if level != 0:
                blocks.append(Upsample(in_ch))
                res *= 2
        blocks += [group_norm(in_ch), nn.Conv2d(in_ch, 3, 3, padding=1)]  # no swish, as officially
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Codebook(nn.Module):
    """The VQ codebook (``quantize.embedding.weight``: ``(codebook_size, code_dim)``)."""

    def __init__(self, codebook_size: int, code_dim: int = CODE_DIM) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, code_dim)

    def lookup(self, indices: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Code vectors for ``indices`` ``(B, H*W)`` (row-major) -> ``(B, code_dim, H, W)`` float.

        A row gather; the official one-hot matrix product gives bit-identical values.
        """
        b = indices.shape[0]
        codes = F.embedding(indices, self.embedding.weight)  # (B, HW, D)
        return codes.reshape(b, height, width, -1).permute(0, 3, 1, 2)
