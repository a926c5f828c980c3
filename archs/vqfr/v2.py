"""VQFR v2: VQGAN-style encoder/decoder, predicted codes, and a fidelity-controlled main branch.

The encoder's coarsest features are mapped to codebook indices by a classifier (``feat2index``,
the release's "Predict" code selection); the texture decoder rebuilds multi-level features from
the codes; the main branch warps and fuses them with the degraded input's features, and its
result is added to the texture features scaled by ``fidelity_ratio`` (0 = pure texture branch,
best quality; 1 = full main branch, best fidelity). State-dict layout is the official ``VQFRv2``
one (``VQFR_v2.pth``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.vq import AttnBlock, ResnetBlock, run_in_full_precision
from .layers import TextureWarping, norm_act, upsample_offset
from .v1 import level_name


def _res(cin: int, cout: int) -> ResnetBlock:
    """v2's residual block: the shared VQ-GAN block with its 1x1 shortcut named ``residual_func``."""
    return ResnetBlock(cin, cout, shortcut_name="residual_func")


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one zero row/column at the bottom/right."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, attention: bool) -> nn.Sequential:
    if attention:
        return nn.Sequential(_res(channels, channels), AttnBlock(channels), _res(channels, channels))
    return nn.Sequential(_res(channels, channels), _res(channels, channels))


def _stage(cin: int, cout: int, num_blocks: int, attention: bool) -> list[nn.Module]:
    """``num_blocks`` ResnetBlocks (the first maps ``cin -> cout``), each followed by attention if asked."""
    blocks: list[nn.Module] = []
    for j in range(num_blocks):
        blocks.append(_res(cin if j == 0 else cout, cout))
        if attention:
            blocks.append(AttnBlock(cout))
    return blocks


class Encoder(nn.Module):
    """``conv_in``; per level an optional Downsample and ResnetBlocks (attention at the coarsest);
    middle blocks; GroupNorm-SiLU-conv to ``code_dim``."""

    def __init__(self, channels: Sequence[int], num_blocks: int, attention: bool, code_dim: int) -> None:
        super().__init__()
        n = len(channels)
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for i in range(n):
            prev = channels[max(i - 1, 0)]
            down = [Downsample(prev)] if i != 0 else []
            self.blocks.append(nn.Sequential(*down, *_stage(prev, channels[i], num_blocks, attention and i == n - 1)))
        self.mid_blocks = _mid(channels[-1], attention)
        self.conv_out = nn.Sequential(*norm_act(channels[-1]), nn.Conv2d(channels[-1], code_dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [-1, 1] -> ``(B, code_dim, H / 2**(L-1), W / 2**(L-1))``."""
        x = self.conv_in(x)
        for blk in self.blocks:
            x = blk(x)
        return self.conv_out(self.mid_blocks(x))


class TextureDecoder(nn.Module):
    """Texture branch; ``blocks[k]`` builds level ``L-1-k``; ``conv_out`` maps level-0 features to RGB."""

    def __init__(self, channels: Sequence[int], num_blocks: int, attention: bool, code_dim: int) -> None:
        super().__init__()
        n = len(channels)
        self.conv_in = nn.Conv2d(code_dim, channels[-1], 3, padding=1)
        self.mid_blocks = _mid(channels[-1], attention)
        self.blocks = nn.ModuleList()
        for i in reversed(range(n)):
            prev = channels[min(i + 1, n - 1)]
            up = [Upsample(prev)] if i != n - 1 else []
            self.blocks.append(nn.Sequential(*up, *_stage(prev, channels[i], num_blocks, attention and i == n - 1)))
        self.conv_out = nn.Sequential(*norm_act(channels[0]), nn.Conv2d(channels[0], 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Code features ``(B, code_dim, h, w)`` -> per-level features, index ``i`` = level ``i``."""
        n = len(self.blocks)
        x = self.mid_blocks(self.conv_in(x))
        feats: list[torch.Tensor] = [x] * n
        for k, blk in enumerate(self.blocks):
            x = blk(x)
            feats[n - 1 - k] = x
        return feats


class MainBranch(nn.Module):
    """Main decoder: texture warping at every level, nearest-x2 + conv between levels."""

    def __init__(self, channels: Sequence[int], inpfeat_dim: int, deformable_groups: int) -> None:
        super().__init__()
        self.levels = n = len(channels)
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        self.align_func_dict = nn.ModuleDict()
        for i in reversed(range(n)):
            if i != n - 1:
                self.pre_upsample_dict[level_name(i)] = nn.Sequential(
                    nn.UpsamplingNearest2d(scale_factor=2), nn.Conv2d(channels[i + 1], channels[i], 3, padding=1)
                )
                self.decoder_dict[level_name(i)] = _res(2 * channels[i], channels[i])
            self.align_func_dict[level_name(i)] = TextureWarping(
                channel=channels[i],
                cond_channels=inpfeat_dim,
                downscale=2**i,
                deformable_groups=deformable_groups,
                previous_offset_channel=0 if i == n - 1 else channels[i + 1],
                learned_downsample=False,
            )

    def forward(self, feats: Sequence[torch.Tensor], inpfeat: torch.Tensor) -> torch.Tensor:
        """Per-level texture features + input features -> level-0 correction ``(B, channels[0], H, W)``."""
        top = self.levels - 1
        x, offset = self.align_func_dict[level_name(top)](feats[top], inpfeat)
        for i in reversed(range(top)):
            x = self.pre_upsample_dict[level_name(i)](x)
            warped, offset = self.align_func_dict[level_name(i)](feats[i], inpfeat, upsample_offset(offset))
            x = self.decoder_dict[level_name(i)](torch.cat([x, warped], dim=1))
        return x


class Codebook(nn.Module):
    """The code vectors (official ``L2VectorQuantizer``; v2 only looks codes up by index)."""

    def __init__(self, num_code: int, code_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_code, code_dim)


def fidelity_weight(fidelity: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor | float:
    """Validate ``fidelity`` (a float, a 0-d tensor, or one value per item ``(B,)``) in [0, 1].

    Returns a Python float, or a ``(B, 1, 1, 1)`` tensor with ``like``'s dtype and device.
    """
    if isinstance(fidelity, torch.Tensor):
        f = fidelity.detach().flatten().float()
        if f.numel() == 1 or (0 < f.numel() == batch and bool((f == f[0]).all())):
            fidelity = float(f[0].item())  # one value for the whole batch: the official scalar path
        else:
            if f.numel() != batch:
                raise ValueError(f"VQFR v2: got {f.numel()} fidelity values for {batch} faces")
            if bool(((f < 0) | (f > 1) | ~torch.isfinite(f)).any()):
                raise ValueError(f"VQFR v2: fidelity must lie in [0, 1]; got {f.tolist()}")
            return f.to(device=like.device, dtype=like.dtype).view(batch, 1, 1, 1)
    fidelity = float(fidelity)
    if not 0.0 <= fidelity <= 1.0:
        raise ValueError(f"VQFR v2: fidelity must lie in [0, 1]; got {fidelity}")
    return fidelity


class VQFRv2(nn.Module):
    """VQFR v2 restorer.

    Args:
        channels: feature channels per level, finest first (release: 64,128,128,256,256,512).
        enc_blocks, dec_blocks: ResnetBlocks per level (2 / 2).
        enc_attention, dec_attention: self-attention at the coarsest level and in the middle.
        code_dim, num_code: codebook vector size and count (256 / 1024).
        inpfeat_dim: channels of the input features steering the warps (32).
        deformable_groups: DCN offset groups (4).

    ``precise_codes`` (instance attribute, default True): under autocast, run the encoder and the
    code classifier in fp32 so reduced precision cannot change the predicted codes; False runs
    the encoder in the autocast dtype too (faster, may swap patches).
    """

    precise_codes: bool = True

    def __init__(
        self,
        channels: Sequence[int],
        enc_blocks: int,
        enc_attention: bool,
        dec_blocks: int,
        dec_attention: bool,
        code_dim: int,
        num_code: int,
        inpfeat_dim: int,
        deformable_groups: int,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(channels, enc_blocks, enc_attention, code_dim)
        self.feat2index = nn.Sequential(nn.LayerNorm(code_dim), nn.Linear(code_dim, num_code))
        self.decoder = TextureDecoder(channels, dec_blocks, dec_attention, code_dim)
        self.main_branch = MainBranch(channels, inpfeat_dim, deformable_groups)
        self.inpfeat_extraction = nn.Conv2d(3, inpfeat_dim, 3, padding=1)
        self.quantizer = Codebook(num_code, code_dim)

    def indices(self, enc: torch.Tensor) -> torch.Tensor:
        """Predicted code index per position of ``enc (B, code_dim, h, w)``: ``(B, h * w)`` int64.

        The classifier always runs in fp32 (weights' dtype), even under autocast.
        """

        def classify(e: torch.Tensor) -> torch.Tensor:
            return self.feat2index(e.flatten(2).transpose(1, 2))  # (B, h * w, num_code) logits

        return run_in_full_precision(classify, enc, self.feat2index[1].weight).argmax(-1)

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (the total downscale, 32 for the release)."""
        return 2 ** (self.main_branch.levels - 1)

    def forward(self, x: torch.Tensor, fidelity: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Restore ``x (B, 3, H, W)`` RGB in [-1, 1] (H, W multiples of 2**(L-1), 512 for the release).

        Args:
            fidelity: the official ``fidelity_ratio`` in [0, 1], a float or one value per item
                ``(B,)``. The official model takes one scalar; per item it is applied as
                ``texture + fidelity[b] * main`` to each item ``b``, which is what separate calls give.

        Returns:
            ``(B, 3, H, W)``, nominally [-1, 1] (not clamped); the official ``res['main_dec']``.
        """
        b = x.shape[0]
        weight = fidelity_weight(fidelity, b, x)
        enc = run_in_full_precision(self.encoder, x, self.encoder.conv_in.weight, self.precise_codes)
        _, c, h, w = enc.shape
        # contiguous (B, C, h, w): a channels-last view would make the decoder run in channels-last
        # kernels, ~10x less accurate in fp32 on the CPU for batches > 1.
        codes = self.quantizer.embedding(self.indices(enc))  # (B, h * w, C)
        quant = codes.transpose(1, 2).contiguous().view(b, c, h, w).to(enc.dtype)
        feats = self.decoder(quant)
        base = feats[0]
        if isinstance(weight, float) and weight == 0.0:
            main = base  # texture + 0 * main_branch(...) == texture for finite values; skip the branch
        else:
            inpfeat = self.inpfeat_extraction(x)
            corr = self.main_branch(feats, inpfeat)
            main = base + (weight.to(corr.dtype) if isinstance(weight, torch.Tensor) else weight) * corr
        return self.decoder.conv_out(main)
