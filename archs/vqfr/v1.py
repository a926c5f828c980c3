"""VQFR v1 (Gu et al., ECCV 2022): VQ codebook at the coarsest level + parallel decoder.

A multi-level encoder quantises its coarsest features against a learned codebook; the texture
decoder rebuilds features from the codes; the main decoder walks the same levels, warping the
texture features toward the degraded input with texture warping modules (DCNv2) and fusing them.
State-dict layout is the official ``VQFRv1`` one (``VQFR_v1-33a1fac5.pth``).

Levels are numbered ``i = 0 .. L-1`` (official names ``Level_{2**i}``): level ``i`` works at
``1 / 2**i`` of the input resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops.vq import ResnetBlock, run_in_full_precision
from .layers import Resample, TextureWarping, norm_act, upsample_offset


def _res(cin: int, cout: int) -> ResnetBlock:
    """v1's residual block: the shared VQ-GAN block with its 1x1 shortcut named ``shortcut_conv``."""
    return ResnetBlock(cin, cout, shortcut_name="shortcut_conv")


def level_name(i: int) -> str:
    """Official name of level ``i``: ``"Level_{2**i}"``."""
    return f"Level_{2**i}"


class KmeansQuantizer(nn.Module):
    """Nearest-code quantiser with 1x1 projections (official ``L2VectorQuantizerKmeans``, inference only)."""

    def __init__(self, in_dim: int, code_dim: int, num_code: int) -> None:
        super().__init__()
        self.quant_conv = nn.Conv2d(in_dim, code_dim, 1)
        self.post_quant_conv = nn.Conv2d(code_dim, in_dim, 1)
        self.embedding = nn.Embedding(num_code, code_dim)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code (squared L2) for each position of ``z (B, code_dim, h, w)``: ``(B, h * w)`` int64.

        Computed in fp32 whatever the autocast state: distances in half precision would pick
        different codes.
        """
        b, c, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            emb = self.embedding.weight
            flat = z.to(emb.dtype).permute(0, 2, 3, 1).reshape(-1, c)
            dist = flat.pow(2).sum(1, keepdim=True) + emb.pow(2).sum(1) - 2 * flat @ emb.t()
        return dist.argmin(1).view(b, h * w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, in_dim, h, w)`` -> (quantised features ``(B, in_dim, h, w)``, indices ``(B, h * w)``)."""
        z = self.quant_conv(x)
        b, _, h, w = z.shape
        idx = self.indices(z)
        # contiguous: a channels-last view here would make the whole decoder run in channels-last
        # kernels, ~10x less accurate in fp32 on the CPU for batches > 1.
        zq = self.embedding(idx).view(b, h, w, -1).permute(0, 3, 1, 2).to(z.dtype).contiguous()
        return self.post_quant_conv(zq), idx


class Encoder(nn.Module):
    """``conv_in`` then per level: optional bilinear downsample + conv, ``num_blocks`` ResnetBlocks."""

    def __init__(self, channels: Sequence[int], down: Sequence[int], num_blocks: int) -> None:
        super().__init__()
        self.levels = len(channels)
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.encoder_dict = nn.ModuleDict()
        self.pre_downsample_dict = nn.ModuleDict()
        for i, ch in enumerate(channels):
            prev = channels[max(i - 1, 0)]
            self.encoder_dict[level_name(i)] = nn.Sequential(*[_res(ch, ch) for _ in range(num_blocks)])
            self.pre_downsample_dict[level_name(i)] = Resample(prev, ch, down[i], "down")
        top = channels[-1]
        out = nn.Sequential(*norm_act(top), nn.Conv2d(top, top, 3, padding=1))
        self.enc_convout_dict = nn.ModuleDict({level_name(self.levels - 1): out})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, 3, H, W)`` in [-1, 1] -> coarsest features ``(B, channels[-1], H / s, W / s)``."""
        x = self.conv_in(x)
        for i in range(self.levels):
            x = self.encoder_dict[level_name(i)](self.pre_downsample_dict[level_name(i)](x))
        return self.enc_convout_dict[level_name(self.levels - 1)](x)


class TextureDecoder(nn.Module):
    """Texture branch: from the quantised features up to full resolution, keeping each level's features."""

    def __init__(self, channels: Sequence[int], up: Sequence[int], num_blocks: int) -> None:
        super().__init__()
        self.levels = len(channels)
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        for i in reversed(range(self.levels)):
            prev = channels[min(i + 1, self.levels - 1)]
            blocks = [_res(channels[i], channels[i]) for _ in range(num_blocks)]
            self.decoder_dict[level_name(i)] = nn.Sequential(*blocks)
            self.pre_upsample_dict[level_name(i)] = Resample(prev, channels[i], up[i], "up")
        self.conv_out = nn.Sequential(*norm_act(channels[0]), nn.Conv2d(channels[0], 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Quantised ``(B, C_top, h, w)`` -> per-level features, index ``i`` = level ``i``."""
        feats: list[torch.Tensor] = [x] * self.levels
        for i in reversed(range(self.levels)):
            x = self.decoder_dict[level_name(i)](self.pre_upsample_dict[level_name(i)](x))
            feats[i] = x
        return feats


class MainDecoder(nn.Module):
    """Main branch: warps each level's texture features toward the input and fuses them."""

    def __init__(self, channels: Sequence[int], up: Sequence[int], inpfeat_dim: int, deformable_groups: int) -> None:
        super().__init__()
        self.levels = n = len(channels)
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        for i in reversed(range(n - 1)):
            self.decoder_dict[level_name(i)] = _res(2 * channels[i], channels[i])
            self.pre_upsample_dict[level_name(i)] = Resample(channels[i + 1], channels[i], up[i], "up")
        self.align_func_dict = nn.ModuleDict()
        for i in reversed(range(n)):
            self.align_func_dict[level_name(i)] = TextureWarping(
                channel=channels[i],
                cond_channels=inpfeat_dim,
                downscale=2**i,
                deformable_groups=deformable_groups,
                previous_offset_channel=0 if i == n - 1 else channels[i + 1],
                learned_downsample=True,
            )
        self.conv_out_1 = nn.Sequential(*norm_act(channels[0]))
        self.conv_out = nn.Sequential(nn.Conv2d(channels[0] + 3, 3, 3, padding=1))

    def forward(self, feats: Sequence[torch.Tensor], inpfeat: torch.Tensor, x_lq: torch.Tensor) -> torch.Tensor:
        top = self.levels - 1
        x, offset = self.align_func_dict[level_name(top)](feats[top], inpfeat)
        for i in reversed(range(top)):
            x = self.pre_upsample_dict[level_name(i)](x)
            warped, offset = self.align_func_dict[level_name(i)](feats[i], inpfeat, upsample_offset(offset))
            x = self.decoder_dict[level_name(i)](torch.cat([x, warped], dim=1))
        x = self.conv_out_1(x)
        return self.conv_out(torch.cat([x, x_lq.to(x.dtype)], dim=1))


class InpFeatConv(nn.Module):
    """3x3 conv extracting the degraded input's features that steer texture warping."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, out_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class VQFRv1(nn.Module):
    """VQFR v1 restorer.

    Args:
        channels: feature channels per level, finest first (release: 128,128,256,256,256,512).
        enc_down: encoder downsampling factor into each level (1 = none; release 1,2,2,2,2,2).
        dec_up: texture-decoder upsampling factor into each level (release 2,2,2,2,2,1).
        main_up: main-decoder upsampling factor into levels ``0 .. L-2`` (release 2,2,2,2,2).
        enc_blocks, dec_blocks: ResnetBlocks per level in the encoder / texture decoder (2 / 3).
        code_dim, num_code: codebook vector size and count (256 / 1024).
        inpfeat_dim: channels of the input features steering the warps (32).
        deformable_groups: DCN offset groups (4).

    ``precise_codes`` (instance attribute, default True): under autocast, run the encoder and the
    code search in fp32 so reduced precision cannot change the chosen codes; False runs them in
    the autocast dtype too (faster, may swap patches).
    """

    precise_codes: bool = True

    def __init__(
        self,
        channels: Sequence[int],
        enc_down: Sequence[int],
        dec_up: Sequence[int],
        main_up: Sequence[int],
        enc_blocks: int,
        dec_blocks: int,
        code_dim: int,
        num_code: int,
        inpfeat_dim: int,
        deformable_groups: int,
    ) -> None:
        super().__init__()
        self.inpfeat_extraction = InpFeatConv(inpfeat_dim)
        self.encoder = Encoder(channels, enc_down, enc_blocks)
        self.decoder = TextureDecoder(channels, dec_up, dec_blocks)
        self.main_decoder = MainDecoder(channels, main_up, inpfeat_dim, deformable_groups)
        self.quantizer = nn.Module()
        quantizer = KmeansQuantizer(channels[-1], code_dim, num_code)
        self.quantizer.quantize_dict = nn.ModuleDict({level_name(len(channels) - 1): quantizer})

    @property
    def codebook(self) -> KmeansQuantizer:
        return self.quantizer.quantize_dict[level_name(self.encoder.levels - 1)]

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (the total downscale, 32 for the release)."""
        return 2 ** (self.encoder.levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, 3, H, W)`` RGB in [-1, 1] (H, W multiples of the total downscale) -> main-branch
        output ``(B, 3, H, W)``, nominally [-1, 1] (not clamped)."""
        inpfeat = self.inpfeat_extraction(x)
        feats = self.decoder(self.quantised(x))
        return self.main_decoder(feats, inpfeat, x)

    def quantised(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder + codebook: ``x (B, 3, H, W)`` in [-1, 1] -> ``(B, channels[-1], H / s, W / s)``."""

        def encode(inp: torch.Tensor) -> torch.Tensor:
            return self.codebook(self.encoder(inp))[0]

        return run_in_full_precision(encode, x, self.encoder.conv_in.weight, self.precise_codes)
