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

from ..ops.vq import AttnBlock, ResnetBlock, group_norm, pad_downsample, upsample_conv

#: The fixed VQ-GAN shape of every released CodeFormer: base width, channel multipliers per
#: resolution (512 -> 16), residual blocks per resolution, attention at 16x16, 256-d codes.
BASE_CHANNELS = 64
CHANNEL_MULT = (1, 2, 2, 4, 4, 8)
RES_BLOCKS = 2
IMAGE_SIZE = 512
ATTN_RESOLUTION = 16
CODE_DIM = 256


def res_block(in_channels: int, out_channels: int) -> ResnetBlock:
    """CodeFormer's residual block: the shared VQ-GAN block with its 1x1 shortcut named ``conv_out``."""
    return ResnetBlock(in_channels, out_channels, shortcut_name="conv_out")


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
                blocks.append(res_block(in_ch, out_ch))
                in_ch = out_ch
                if res == ATTN_RESOLUTION:
                    blocks.append(AttnBlock(in_ch))
            if level != len(CHANNEL_MULT) - 1:
                blocks.append(Downsample(in_ch))
                res //= 2
        blocks += [res_block(in_ch, in_ch), AttnBlock(in_ch), res_block(in_ch, in_ch)]
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
        blocks += [res_block(in_ch, in_ch), AttnBlock(in_ch), res_block(in_ch, in_ch)]
        for level in reversed(range(len(CHANNEL_MULT))):
            out_ch = BASE_CHANNELS * CHANNEL_MULT[level]
            for _ in range(RES_BLOCKS):
                blocks.append(res_block(in_ch, out_ch))
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
