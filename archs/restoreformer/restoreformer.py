"""RestoreFormer (Wang et al., CVPR 2022) and RestoreFormer++ (TPAMI 2023).

A VQ-GAN whose decoder attends, at its low-resolution levels, from the encoder's (degraded)
features to the decoder's high-quality dictionary features (multi-head cross-attention). State-dict
layout of wzhouxiff/RestoreFormerPlusPlus's ``VQVAEGANMultiHeadTransformer`` (identical to
TencentARC/GFPGAN's ``RestoreFormer``): ``RestoreFormer.pth`` (GFPGAN), ``RestoreFormer.ckpt`` and
``RestoreFormer++.ckpt`` (network under ``vqvae.`` in a Lightning checkpoint) load with
``strict=True``. RestoreFormer uses 8 heads and cross-attention at 16x16; RestoreFormer++ uses
4 heads and adds cross-attention at 32x32 (its extra ``decoder.up.4.attn.*`` blocks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.vq import (
    ResnetBlock,
    group_norm,
    map_attention,
    norm_swish,
    pad_downsample,
    residual_add,
    run_in_full_precision,
    upsample_conv,
    working_layout,
)


class MultiHeadAttnBlock(nn.Module):
    """Multi-head attention with a residual: self-attention on ``x``, or cross-attention whose
    queries come from ``y`` (normalised by ``norm2``) and keys/values from ``x`` (``norm1``)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} heads")
        self.heads = heads
        self.norm1 = group_norm(channels)
        self.norm2 = group_norm(channels)  # used only in cross-attention (present in every checkpoint)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        query = h if y is None else self.norm2(y)
        out = map_attention(self.q(query), self.k(h), self.v(h), heads=self.heads)
        return residual_add(self.proj_out(out), x)


class _Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (one per block, or none) and an
    optional ``downsample``/``upsample`` conv holder, as in the official ``nn.Module()`` containers."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)


class _Resample(nn.Module):
    """Holder of the resampling conv (state-dict key ``...sample.conv``)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=0 if stride == 2 else 1)


class _Mid(nn.Module):
    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = MultiHeadAttnBlock(channels, heads)
        self.block_2 = ResnetBlock(channels, channels)


class Encoder(nn.Module):
    """``(B, in_ch, S, S)`` -> latent ``(B, z_ch, S/2^(L-1), S/2^(L-1))`` plus the skip features the
    decoder's cross-attention reads (see :meth:`forward`)."""

    def __init__(
        self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_levels: Sequence[int], in_channels: int,
        z_out: int, heads: int,
    ) -> None:
        super().__init__()
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for level, mult in enumerate(ch_mult):
            block_out = ch * mult
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if level in attn_levels:
                    attns.append(MultiHeadAttnBlock(block_in, heads))
            down = _Level(blocks, attns)
            if level != len(ch_mult) - 1:
                down.downsample = _Resample(block_in, stride=2)
            self.down.append(down)
        self.mid = _Mid(block_in, heads)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_out, 3, padding=1)

    def forward(
        self, x: torch.Tensor, keep: frozenset[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor]:
        """Returns ``(latent, skips, mid)``: ``skips`` maps each level in ``keep`` to the level's output
        before downsampling, except the last level, whose skip is the middle block's first ResnetBlock
        output (the official ``hs['block_<last>_atten']``); ``mid`` is the middle block's output
        (``hs['mid_atten']``), which the decoder's middle attention reads."""
        skips: dict[int, torch.Tensor] = {}
        last = len(self.down) - 1
        h = self.conv_in(x)
        for level, down in enumerate(self.down):
            for i in range(self.num_res_blocks):
                h = down.block[i](h)
                if len(down.attn) > 0:
                    h = down.attn[i](h)
            if level != last:
                if level in keep:
                    skips[level] = h
                h = pad_downsample(down.downsample.conv, h)
        h = self.mid.block_1(h)
        if last in keep:
            skips[last] = h
        mid = self.mid.block_2(self.mid.attn_1(h))
        return self.conv_out(norm_swish(self.norm_out, mid)), skips, mid


class Decoder(nn.Module):
    """Latent ``(B, z_ch, s, s)`` -> image ``(B, out_ch, s*2^(L-1), ...)``; at ``attn_levels`` each
    ResnetBlock is followed by cross-attention from the encoder's skip feature of that level."""

    def __init__(
        self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_levels: Sequence[int], out_ch: int,
        z_channels: int, heads: int,
    ) -> None:
        super().__init__()
        self.num_res_blocks = num_res_blocks
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, heads)
        up_levels: list[nn.Module] = []
        for level in reversed(range(len(ch_mult))):
            block_out = ch * ch_mult[level]
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if level in attn_levels:
                    attns.append(MultiHeadAttnBlock(block_in, heads))
            up = _Level(blocks, attns)
            if level != 0:
                up.upsample = _Resample(block_in, stride=1)
            up_levels.insert(0, up)
        self.up = nn.ModuleList(up_levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor, mid_skip: torch.Tensor, skips: dict[int, torch.Tensor]) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h), mid_skip))
        for level in reversed(range(len(self.up))):
            up = self.up[level]
            for i in range(self.num_res_blocks + 1):
                h = up.block[i](h)
                if len(up.attn) > 0:
                    h = up.attn[i](h, skips[level])
            if level != 0:
                h = upsample_conv(up.upsample.conv, h)
        return self.conv_out(norm_swish(self.norm_out, h))


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook (``quantize.embedding.weight``: ``(n_embed, embed_dim)``)."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(B, D, H, W)`` -> the nearest code of each position, ``(B, D, H, W)``.

        Distances ``|z|^2 + |e|^2 - 2 z.e`` and the final ``z + (e - z)`` are computed as the
        official code does (in the codebook's dtype, autocast off) so the same codes are chosen and
        the values agree to the last bit or two.
        """
        e = self.embedding.weight
        with torch.autocast(device_type=z.device.type, enabled=False):
            b, d, h, w = z.shape
            flat = z.permute(0, 2, 3, 1).reshape(-1, d).to(e.dtype)
            dist = flat.square().sum(1, keepdim=True) + e.square().sum(1) - 2 * (flat @ e.t())
            codes = F.embedding(dist.argmin(dim=1), e)
            codes = flat + (codes - flat)
            return codes.reshape(b, h, w, d).permute(0, 3, 1, 2)


class RestoreFormer(nn.Module):
    """RestoreFormer / RestoreFormer++ generator on ``(B, 3, 512, 512)`` faces in ``[-1, 1]``.

    Args:
        n_embed, embed_dim: codebook size and code width (1024, 256).
        ch, ch_mult, num_res_blocks: VQ-GAN widths (64, (1, 2, 2, 4, 4, 8), 2).
        z_channels, double_z: latent width (256) and whether the encoder emits twice as many.
        in_channels, out_ch: image channels (3, 3).
        enc_attn_levels: encoder levels (0 = full resolution) with self-attention ((5,): 16x16).
        dec_attn_levels: decoder levels with cross-attention ((5,) RestoreFormer, (4, 5) RestoreFormer++).
        heads: attention heads (8 RestoreFormer, 4 RestoreFormer++; not recorded in checkpoints).

    ``precise_codes`` (instance attribute, default True): under fp16/bf16 autocast, run the encoder
    and ``quant_conv`` in fp32 (the nearest-code search always is) so reduced precision cannot change
    the chosen codes; False runs them in the autocast dtype too (faster, but codes flip: see
    :func:`~facemend.archs.ops.vq.run_in_full_precision`).
    """

    precise_codes: bool = True

    def __init__(
        self,
        n_embed: int = 1024,
        embed_dim: int = 256,
        ch: int = 64,
        ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        double_z: bool = False,
        in_channels: int = 3,
        out_ch: int = 3,
        enc_attn_levels: Sequence[int] = (5,),
        dec_attn_levels: Sequence[int] = (5,),
        heads: int = 8,
    ) -> None:
        super().__init__()
        self.dec_attn_levels = tuple(sorted(dec_attn_levels))
        self.last_level = len(ch_mult) - 1
        z_out = 2 * z_channels if double_z else z_channels
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, enc_attn_levels, in_channels, z_out, heads)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, dec_attn_levels, out_ch, z_channels, heads)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 3, H, W)`` RGB in ``[-1, 1]`` (``H, W`` multiples of 32; 512 for the released
        weights) -> restored image of the same shape, about ``[-1, 1]``."""
        keep = frozenset(self.dec_attn_levels) | {self.last_level}

        def encode(t: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor]:
            latent, skips, mid = self.encoder(t, keep)
            return self.quantize(self.quant_conv(latent)), skips, mid

        quant, skips, mid = run_in_full_precision(encode, x, self.quant_conv.weight, self.precise_codes)
        return self.decoder(self.post_quant_conv(quant), mid, skips)

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> restored RGB in ``[0, 1]`` (``x`` is not modified)."""
        out = self(working_layout(x * 2 - 1))
        return ((out.float() + 1) / 2).clamp_(0, 1)
