"""What the three GFP-GAN generators share: channel tables, the CS-SFT step, noise, the forward loop.

GFP-GAN = a U-Net encoder whose bottleneck gives the StyleGAN2 latent codes, and whose decoder
levels (8, 16, ..., out_size px) give per-pixel ``scale``/``shift`` maps; a StyleGAN2 generator
(the "prior") modulates its features with them after the first conv of each level. With
``sft_half`` (all released models) only the second half of the channels is modulated:
the Channel-Split Spatial Feature Transform (CS-SFT) of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: A per-level modulation strength: one number for the whole batch or a ``(B,)`` tensor.
Strength = float | torch.Tensor

#: Levels at or below this resolution count as "coarse" (structure); above it as "fine" (texture).
COARSE_MAX_RESOLUTION = 64


def stylegan_channels(channel_multiplier: float, narrow: float) -> dict[int, int]:
    """StyleGAN2's channels per resolution (4 ... 1024), as the official ``channels`` dict."""
    return {
        4: int(512 * narrow),
        8: int(512 * narrow),
        16: int(512 * narrow),
        32: int(512 * narrow),
        64: int(256 * channel_multiplier * narrow),
        128: int(128 * channel_multiplier * narrow),
        256: int(64 * channel_multiplier * narrow),
        512: int(32 * channel_multiplier * narrow),
        1024: int(16 * channel_multiplier * narrow),
    }


def log2_size(out_size: int) -> int:
    """``log2(out_size)``; raises ``ValueError`` unless ``out_size`` is a power of two in [16, 1024]."""
    log_size = int(round(math.log2(out_size))) if out_size > 0 else 0
    if 2**log_size != out_size or not 16 <= out_size <= 1024:
        raise ValueError(f"GFPGAN out_size must be a power of two between 16 and 1024, got {out_size}")
    return log_size


def level_resolutions(out_size: int) -> list[int]:
    """Resolutions of the CS-SFT levels: ``[8, 16, ..., out_size]``."""
    return [2**i for i in range(3, log2_size(out_size) + 1)]


def level_strengths(
    out_size: int,
    strength: Strength = 1.0,
    strength_coarse: Strength = 1.0,
    strength_fine: Strength = 1.0,
) -> list[Strength]:
    """Per-level strengths: ``strength * strength_coarse`` for levels <= 64 px, ``* strength_fine`` above.

    Each argument is a float or a ``(B,)`` tensor; the products keep that form.
    """
    out: list[Strength] = []
    for res in level_resolutions(out_size):
        part = strength_coarse if res <= COARSE_MAX_RESOLUTION else strength_fine
        if isinstance(strength, torch.Tensor) or isinstance(part, torch.Tensor):
            out.append(torch.as_tensor(strength) * torch.as_tensor(part))
        else:
            out.append(float(strength) * float(part))
    return out


def apply_sft(
    out: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    strength: Strength,
    sft_half: bool,
) -> torch.Tensor:
    """The (channel-split) spatial feature transform with a strength.

    ``strength`` 1 is the paper: ``f * scale + shift`` (on the second half of the channels when
    ``sft_half``). Other strengths move linearly between the unmodulated StyleGAN2 feature
    (strength 0) and that result, and beyond it for strength > 1:
    ``f + strength * (f * scale + shift - f)``.

    Args:
        out: ``(B, C, H, W)`` generator features.
        scale, shift: ``(B, C or C/2, H, W)`` condition maps from the encoder.
        strength: float, or ``(B,)`` tensor for per-face strengths.
        sft_half: modulate only the second half of the channels.
    """
    if sft_half:
        keep, mod = torch.split(out, out.size(1) // 2, dim=1)
    else:
        keep, mod = None, out
    modulated = mod * scale + shift
    if isinstance(strength, torch.Tensor):
        s = strength.to(device=mod.device, dtype=torch.float32).view(-1, 1, 1, 1)
        modulated = mod + s * (modulated - mod)
    elif strength != 1.0:
        modulated = mod + strength * (modulated - mod)
    return modulated if keep is None else torch.cat([keep, modulated], dim=1)


def _apply_sft_(
    out: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, strength: Strength, sft_half: bool
) -> torch.Tensor:
    """:func:`apply_sft` computed in place in ``out`` (the forward pass's own fresh features).

    Same arithmetic in the same order as :func:`apply_sft` (so fp32 results are identical), in
    ``out``'s dtype; returns ``out``.
    """
    mod = out[:, out.size(1) // 2 :] if sft_half else out
    scale, shift = scale.to(mod.dtype), shift.to(mod.dtype)
    if isinstance(strength, torch.Tensor):
        s = strength.to(device=mod.device, dtype=mod.dtype).view(-1, 1, 1, 1)
        mod.add_(s * (mod * scale + shift - mod))
    elif strength != 1.0:
        mod.add_(strength * (mod * scale + shift - mod))
    else:
        mod.mul_(scale).add_(shift)
    return out


def prefers_channels_last(x: torch.Tensor) -> bool:
    """True when ``x`` will be convolved in fp16/bf16: it is half precision itself, or autocast to a
    half dtype is on for its device. Half-precision convs are fastest channels-last everywhere."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return True
    kind = x.device.type
    return torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) in (torch.float16, torch.bfloat16)


def _is_zero(strength: Strength) -> bool:
    if isinstance(strength, torch.Tensor):
        return False  # a per-face tensor is applied as is (cheap to check, not worth a sync)
    return strength == 0.0


def noise_resolutions(out_size: int) -> list[int]:
    """Spatial size of each of the ``2 * log2(out_size) - 3`` noise inputs (4, 8, 8, 16, 16, ...)."""
    n = (log2_size(out_size) - 2) * 2 + 1
    return [2 ** ((i + 5) // 2) for i in range(n)]


def seeded_noise(out_size: int, seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Reproducible noise inputs, one independent draw per face.

    Face ``k`` uses a CPU ``torch.Generator`` seeded with ``seeds[k] % 2**64`` and draws the layers
    in order, so a face's noise depends only on its seed (not on the batch or device).

    Returns:
        One ``(len(seeds), 1, r, r)`` float32 tensor per noise input, on ``device``.
    """
    per_face: list[list[torch.Tensor]] = []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed) % 2**64)
        per_face.append([torch.randn((1, 1, r, r), generator=g) for r in noise_resolutions(out_size)])
    return [torch.cat(layer, dim=0).to(device) for layer in zip(*per_face)]


class GFPGANBase(nn.Module):
    """The forward pass shared by the clean, original and bilinear GFP-GAN generators.

    Subclasses register, in the official order: ``conv_body_first``, ``conv_body_down``,
    ``final_conv``, ``conv_body_up``, ``toRGB``, ``final_linear``, ``stylegan_decoder`` (with
    ``style_mlp``, ``constant_input``, ``style_conv1``, ``to_rgb1``, ``style_convs``, ``to_rgbs``,
    ``noises``), ``condition_scale``, ``condition_shift``; and implement :meth:`encode_first`
    and :meth:`encode_final`. ``toRGB`` (intermediate RGB outputs used for training) and
    ``style_mlp`` (unused when the encoder's codes are already latents, as in every released
    model) exist so official checkpoints load strictly.
    """

    out_size: int
    num_style_feat: int
    different_w: bool
    input_is_latent: bool
    sft_half: bool
    log_size: int
    num_latent: int
    num_layers: int
    conv_body_down: nn.ModuleList
    conv_body_up: nn.ModuleList
    final_linear: nn.Module
    stylegan_decoder: nn.Module
    condition_scale: nn.ModuleList
    condition_shift: nn.ModuleList

    def encode_first(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_final(self, feat: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def stored_noise(self) -> list[torch.Tensor]:
        """The checkpoint's fixed noise buffers, ``(1, 1, r, r)`` each (official ``randomize_noise=False``)."""
        noises = self.stylegan_decoder.noises
        return [getattr(noises, f"noise{i}") for i in range(self.num_layers)]

    def forward(
        self,
        x: torch.Tensor,
        strengths: Sequence[Strength] | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Restore aligned faces.

        Args:
            x: ``(B, 3, S, S)`` RGB in ``[-1, 1]``, ``S == out_size``.
            strengths: one CS-SFT strength per level (see :func:`level_strengths`); ``None`` = all 1
                (the paper / official inference).
            noise: one tensor per noise input (``(1 or B, 1, r, r)``, see :func:`noise_resolutions`);
                ``None`` = the stored buffers (deterministic, as official ``randomize_noise=False``).

        Returns:
            ``(B, 3, S, S)`` RGB, nominally in ``[-1, 1]`` (not clamped).
        """
        b, _, h, w = x.shape
        if h != self.out_size or w != self.out_size:
            raise ValueError(f"GFPGAN expects {self.out_size}x{self.out_size} input, got {w}x{h}")
        levels = self.log_size - 2
        strengths = list(strengths) if strengths is not None else [1.0] * levels
        if len(strengths) != levels:
            raise ValueError(f"expected {levels} level strengths, got {len(strengths)}")
        noise = list(noise) if noise is not None else self.stored_noise()
        if len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise tensors, got {len(noise)}")

        # reduced precision runs channels-last throughout (oneDNN's and cuDNN's fast layout: bf16
        # convs 4.5x faster on an AMX CPU); a copy, the caller's tensor is untouched; the output
        # is NCHW again. fp32 keeps NCHW (on the CPU its channels-last 1x1 convs are slower).
        channels_last = prefers_channels_last(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        # encoder (U-Net down path); skips are used deepest first
        feat = self.encode_first(x)
        skips: list[torch.Tensor] = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = self.encode_final(feat)

        # latent codes from the bottleneck: (B, num_latent, num_style_feat)
        style = self.final_linear(feat.reshape(b, -1))
        dec = self.stylegan_decoder
        if self.different_w:
            style = style.view(b, -1, self.num_style_feat)
        if not self.input_is_latent:  # never the case for released models; kept for completeness
            style = dec.style_mlp(style)
        latent = style if style.ndim == 3 else style.unsqueeze(1).repeat(1, self.num_latent, 1)

        # StyleGAN2 generator, interleaved with the U-Net up path so each level's condition maps
        # are made just before they are used (same maths as computing them all first, less memory)
        out = dec.constant_input(b).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        out = dec.style_conv1(out, latent[:, 0], noise=noise[0])
        skip = dec.to_rgb1(out, latent[:, 1])
        for j in range(levels):
            # feat is this loop's own tensor (the previous block's output), so the skip is added in place
            feat = self.conv_body_up[j](feat.add_(skips[j].to(feat.dtype)))
            i = 2 * j + 1
            out = dec.style_convs[2 * j](out, latent[:, i], noise=noise[i])
            if not _is_zero(strengths[j]):
                scale = self.condition_scale[j](feat)
                shift = self.condition_shift[j](feat)
                out = _apply_sft_(out, scale, shift, strengths[j], self.sft_half)
            out = dec.style_convs[2 * j + 1](out, latent[:, i + 1], noise=noise[i + 1])
            skip = dec.to_rgbs[j](out, latent[:, i + 2], skip)
        return skip.contiguous()


def register_noise_buffers(module: nn.Module, out_size: int) -> None:
    """Register ``noise0 ... noiseN`` buffers (random normal, persistent) on ``module``."""
    for i, r in enumerate(noise_resolutions(out_size)):
        module.register_buffer(f"noise{i}", torch.randn(1, 1, r, r))


class ConstantInput(nn.Module):
    """The generator's learned ``(1, C, 4, 4)`` start tensor (key ``weight``), repeated over the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.repeat(batch, 1, 1, 1)


class NormStyleCode(nn.Module):
    """Pixel norm of style codes ``(B, F)``: ``x / sqrt(mean(x^2) + 1e-8)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def modulated_weight(
    weight: torch.Tensor, style: torch.Tensor, demodulate: bool, eps: float = 1e-8
) -> torch.Tensor:
    """Per-sample conv weights: ``weight * style`` over input channels, then (optionally) demodulated.

    Args:
        weight: ``(1, C_out, C_in, k, k)``, already multiplied by any equalised-lr scale.
        style: ``(B, C_in)`` modulation.

    Returns:
        ``(B, C_out, C_in, k, k)``.
    """
    b, c_in = style.shape
    w = weight * style.view(b, 1, c_in, 1, 1)
    if demodulate:
        demod = torch.rsqrt(w.pow(2).sum([2, 3, 4]) + eps)
        w = w * demod.view(b, -1, 1, 1, 1)
    return w


def grouped_conv(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """Convolve sample ``i`` of ``x`` ``(B, C_in, H, W)`` with ``weight[i]`` (``(B, C_out, C_in, k, k)``)."""
    b, c_in, h, w = x.shape
    c_out, k = weight.shape[1], weight.shape[-1]
    out = F.conv2d(x.reshape(1, b * c_in, h, w), weight.reshape(b * c_out, c_in, k, k), padding=padding, groups=b)
    return out.view(b, c_out, *out.shape[2:])


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    style: torch.Tensor,
    *,
    demodulate: bool,
    padding: int,
    gain: float = 1.0,
    upsample: bool = False,
    eps: float = 1e-8,
    weight_sq: torch.Tensor | None = None,
) -> torch.Tensor:
    """StyleGAN2's modulated conv, computed the cheapest exact way for the batch and layer size.

    Mathematically ``gain * conv(up(x), demod(weight * style))`` per sample, as the official
    ``ModulatedConv2d`` (``up`` = bilinear x2, ``align_corners=False``, when ``upsample``). Two
    equivalent ways:

    - *weight modulation* (the official "fused" form): fold style, demodulation and gain into
      the conv weight; one ordinary conv. Used for a single face whose activations are larger
      than its weight (the high-resolution layers).
    - *activation modulation*: ``conv(x * style) * demod`` with the shared weight, one batched
      conv (what oneDNN and cuDNN run fastest; grouped convs are not). Used for several faces and
      for layers whose weight outweighs the activations (512 channels at <= 64 px).

    The per-channel style commutes with the upsampling, so it is applied before it, on 4x fewer
    pixels. Results equal the official ones up to fp32 rounding (~1e-7 relative).

    Args:
        x: ``(B, C_in, H, W)`` features, any float dtype, any memory format (channels-last stays
            channels-last); never modified.
        weight: ``(1, C_out, C_in, k, k)`` conv weight (equalised-lr scale already applied), any
            float dtype.
        style: ``(B, C_in)`` modulation; style and demodulation maths run in fp32.
        demodulate: divide each output channel by the norm of its modulated weight.
        padding: conv padding.
        gain: constant output factor (StyleGAN2's ``sqrt(2)`` of the style conv), folded in.
        upsample: bilinear 2x upsampling of ``x`` before the conv.
        weight_sq: optional ``(C_out, C_in)`` fp32 ``sum_k weight**2`` (a cache of the caller's).

    Returns:
        ``(B, C_out, H', W')`` in the conv's dtype (the autocast dtype under autocast, else
        ``x``'s dtype), ``H' = 2H`` when ``upsample``; channels-last when ``x`` is.
    """
    b, c_in = style.shape
    c_out, k = weight.shape[1], weight.shape[-1]
    w = weight.reshape(c_out, c_in, k, k)
    with torch.autocast(device_type=x.device.type, enabled=False):  # small fp32 maths, never autocast
        s = style.float()
        if demodulate:
            sq = weight_sq if weight_sq is not None else w.float().pow(2).sum([2, 3])
            d = torch.rsqrt(s.pow(2) @ sq.t() + eps)  # (B, C_out)
            if gain != 1.0:
                d = d * gain
        else:
            d = torch.full((b, c_out), gain, dtype=torch.float32, device=s.device)
    side = x.shape[-2] * x.shape[-1] * (4 if upsample else 1)
    if b == 1 and side > c_out * k * k:
        # one pass over the weight, straight into the conv's dtype and the weight's layout
        scale = d.view(c_out, 1, 1, 1) * s.view(1, c_in, 1, 1)
        wm = torch.empty_like(w, dtype=_conv_dtype(x))
        torch.mul(w, scale, out=wm)
        if upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.conv2d(x, wm, padding=padding)
    xs = x * s.to(x.dtype).view(b, c_in, 1, 1)
    if upsample:
        xs = F.interpolate(xs, scale_factor=2, mode="bilinear", align_corners=False)
    out = F.conv2d(xs, w.to(xs.dtype), padding=padding)
    if not demodulate and gain == 1.0:
        return out
    return out.mul_(d.to(out.dtype).view(b, c_out, 1, 1))


def _conv_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a conv of ``x`` runs in: autocast's for ``x``'s device when it is on, else ``x``'s."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype
