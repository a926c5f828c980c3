"""GFP-GAN (TencentARC/GFPGAN): the registry entries and the generators, in plain PyTorch.

Networks (official checkpoints load unchanged):

- :class:`GFPGANv1Clean`: GFPGANCleanv1-NoCE-C2 (v1.2), GFPGANv1.3, GFPGANv1.4.
- :class:`GFPGANv1` with ``resample="fir"``: the original GFPGANv1 (GFPGANv1.pth);
  with ``resample="bilinear"``: GFPGANBilinear.

All three registry entries (``gfpgan_clean``, ``gfpgan_v1``, ``gfpgan_bilinear``) are driven by the CS-SFT Modulate node (family ``"gfpgan"``). Hyper-parameters come
from tensor shapes only:

- ``out_size`` = 2 ** (number of U-Net up blocks + 2); ``num_style_feat`` = the modulation
  width; ``num_mlp`` = number of style-MLP linears; ``narrow`` = constant-input channels / 512;
  ``channel_multiplier`` = decoder channels at 64 px / (256 * narrow);
  ``sft_half`` = the condition heads emit as many channels as the U-Net level has (else twice);
  ``different_w`` = the bottleneck linear emits one latent per generator layer.

The original GFPGANv1 and GFPGANBilinear have exactly the same keys *and* shapes for the same
hyper-parameters; they differ only in how they resample. The released checkpoints tell them
apart by their channel multiplier: the original (GFPGANv1.pth) is a channel-multiplier-1 model
(its StyleGAN2 prior is ``StyleGAN2_512_Cmul1``), while the bilinear models (from which
GFPGANCleanv1-NoCE-C2, "C2", was converted) use channel multiplier 2. So: equalised layout with
channel multiplier <= 1 -> ``gfpgan_v1``; > 1 -> ``gfpgan_bilinear``. A user-trained original
model with channel multiplier 2 cannot be distinguished from a bilinear one by its file alone.

Controls (all optional, floats or per-face ``(n,)`` tensors where numeric):
``strength`` (CS-SFT strength: 0 = the StyleGAN2 prior driven by the encoder's latents alone,
1 = the paper, > 1 = more fidelity to the input), ``strength_coarse`` / ``strength_fine``
(multipliers for the 8-64 px and 128-512 px levels), ``noise`` (``"stored"``: the checkpoint's
fixed noise buffers, as official ``randomize_noise=False``; ``"random"``: seeded noise),
``seed`` (int) and ``face_index`` (per-face index added to ``seed``, so a face's noise does not
depend on how the batch is chunked).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import ArchSpec, StateDict
from .clean import GFPGANv1Clean
from .common import (
    COARSE_MAX_RESOLUTION,
    GFPGANBase,
    apply_sft,
    level_resolutions,
    level_strengths,
    noise_resolutions,
    seeded_noise,
)
from .original import GFPGANv1

#: Shown to users. GFPGAN's README: "GFPGAN is released under Apache License Version 2.0"; its
#: LICENSE adds that the StyleGAN2 code is modified from rosinality/stylegan2-pytorch and lists
#: NVIDIA's (non-commercial) licence for the official StyleGAN2; in stylegan2-pytorch that licence
#: covers the compiled ``upfirdn2d``/``fused_act`` CUDA ops that the official GFPGANv1 calls.
#: FaceMend's plain-PyTorch ops (``archs/ops``) contain none of that code, and the checkpoints
#: are TencentARC's Apache-2.0 releases.
LICENCE = "Apache-2.0"

NOISE_MODES = ("stored", "random")

_CLEAN_KEYS = (
    "conv_body_first.weight",
    "final_conv.weight",
    "conv_body_up.0.conv2.weight",
    "final_linear.weight",
    "stylegan_decoder.constant_input.weight",
    "stylegan_decoder.style_conv1.bias",
    "stylegan_decoder.style_conv1.modulated_conv.modulation.weight",
    "stylegan_decoder.to_rgb1.modulated_conv.weight",
    "stylegan_decoder.noises.noise0",
    "condition_scale.0.0.weight",
    "condition_scale.0.2.weight",
    "condition_shift.0.2.weight",
)

_EQUALISED_KEYS = (
    "conv_body_first.0.weight",
    "conv_body_first.1.bias",
    "conv_body_down.0.conv2.1.weight",
    "final_conv.0.weight",
    "conv_body_up.0.conv2.activation.bias",
    "final_linear.weight",
    "stylegan_decoder.constant_input.weight",
    "stylegan_decoder.style_conv1.activate.bias",
    "stylegan_decoder.style_conv1.modulated_conv.modulation.weight",
    "stylegan_decoder.to_rgb1.modulated_conv.weight",
    "stylegan_decoder.noises.noise0",
    "condition_scale.0.0.weight",
    "condition_scale.0.2.weight",
    "condition_shift.0.2.weight",
)


def _count_indices(sd: StateDict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.fullmatch(k))})


def read_hparams(sd: StateDict) -> dict[str, Any]:
    """Constructor kwargs common to all three variants, from tensor shapes (see module docstring).

    Raises:
        ValueError: shapes that fit no GFP-GAN configuration.
    """
    levels = _count_indices(sd, r"conv_body_up\.(\d+)\..*")
    if levels < 2:
        raise ValueError(f"found {levels} U-Net up blocks")
    out_size = 2 ** (levels + 2)
    num_style_feat = int(sd["stylegan_decoder.style_conv1.modulated_conv.modulation.weight"].shape[1])
    num_mlp = _count_indices(sd, r"stylegan_decoder\.style_mlp\.(\d+)\.weight")
    narrow = sd["stylegan_decoder.constant_input.weight"].shape[1] / 512
    channel_multiplier: float = 1
    if out_size >= 64:  # below 64 px the multiplier changes no channel count
        ch64 = int(sd["stylegan_decoder.to_rgbs.3.modulated_conv.weight"].shape[2])
        channel_multiplier = ch64 / (256 * narrow)
        if abs(channel_multiplier - round(channel_multiplier)) < 1e-6:
            channel_multiplier = int(round(channel_multiplier))
    unet_ch8 = int(sd["condition_scale.0.0.weight"].shape[0])
    sft_ch = int(sd["condition_scale.0.2.weight"].shape[0])
    if sft_ch not in (unet_ch8, 2 * unet_ch8):
        raise ValueError(f"condition heads emit {sft_ch} channels for a {unet_ch8}-channel level")
    num_latent = 2 * (levels + 2) - 2
    latent_out = int(sd["final_linear.weight"].shape[0])
    if latent_out not in (num_style_feat, num_latent * num_style_feat):
        raise ValueError(f"final_linear emits {latent_out} values; expected {num_style_feat} or {num_latent * num_style_feat}")
    return {
        "out_size": out_size,
        "num_style_feat": num_style_feat,
        "channel_multiplier": channel_multiplier,
        "num_mlp": num_mlp,
        "narrow": int(narrow) if float(narrow).is_integer() else narrow,
        "sft_half": sft_ch == unet_ch8,
        "different_w": latent_out == num_latent * num_style_feat,
    }


def _is_original(sd: StateDict) -> bool:
    return read_hparams(sd)["channel_multiplier"] <= 1


def _is_bilinear(sd: StateDict) -> bool:
    return read_hparams(sd)["channel_multiplier"] > 1


def _build_clean(**hp: Any) -> nn.Module:
    return GFPGANv1Clean(**hp)


def _builder(resample: str) -> Callable[..., nn.Module]:
    def build(**hp: Any) -> nn.Module:
        return GFPGANv1(**hp, resample=resample)

    return build


def forward(
    module: nn.Module,
    x: torch.Tensor,
    strength: float | torch.Tensor = 1.0,
    strength_coarse: float | torch.Tensor = 1.0,
    strength_fine: float | torch.Tensor = 1.0,
    noise: str = "stored",
    seed: int | torch.Tensor = 0,
    face_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Restore aligned faces with a GFP-GAN generator.

    Args:
        module: a ``GFPGANv1Clean`` or ``GFPGANv1`` (either resampling).
        x: ``(B, 3, H, W)`` RGB float in ``[0, 1]``; resized (antialiased bicubic) to the network's
            size and back when ``H, W`` differ from it.
        strength, strength_coarse, strength_fine: CS-SFT strengths (floats or ``(B,)`` tensors);
            a level's strength is ``strength * strength_coarse`` (<= 64 px) or ``* strength_fine``.
        noise: ``"stored"`` (checkpoint buffers, deterministic) or ``"random"`` (seeded).
        seed: base seed for ``noise="random"``; face ``k`` uses ``seed + face_index[k]``. A ``(B,)``
            tensor gives each face its seed directly (exact up to 2**24 when it came as float32).
        face_index: ``(B,)`` global indices of these faces in the whole batch (default ``0..B-1``).

    Returns:
        ``(B, 3, H, W)`` RGB in ``[0, 1]``.
    """
    if noise not in NOISE_MODES:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    size: int = module.out_size  # type: ignore[assignment]
    b, _, h, w = x.shape
    inp = x
    if (h, w) != (size, size):
        inp = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    strengths = level_strengths(size, strength, strength_coarse, strength_fine)
    noise_list = None
    if noise == "random":
        if isinstance(seed, torch.Tensor) and seed.ndim > 0:  # per-face seeds given directly
            seeds = [int(s) for s in seed.tolist()]
        else:
            idx = face_index.tolist() if face_index is not None else range(b)
            seeds = [int(seed) + int(i) for i in idx]
        noise_list = seeded_noise(size, seeds, device=x.device)
    y = module(inp * 2 - 1, strengths=strengths, noise=noise_list)
    y = (y + 1) / 2
    if (h, w) != (size, size):
        y = F.interpolate(y.float(), size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return y.clamp(0, 1)


_CONTROLS = ("strength", "strength_coarse", "strength_fine", "noise", "seed", "face_index")

SPECS: list[ArchSpec] = [
    ArchSpec(
        id="gfpgan_clean",
        family="gfpgan",
        display_name="GFPGAN v1.2/v1.3/v1.4 (clean)",
        required_keys=_CLEAN_KEYS,
        read_hparams=read_hparams,
        build=_build_clean,
        forward=forward,
        licence=LICENCE,
        controls=_CONTROLS,
        memory_per_pixel=3072.0,
    ),
    ArchSpec(
        id="gfpgan_v1",
        family="gfpgan",
        display_name="GFPGAN v1 (original, StyleGAN2 FIR)",
        required_keys=_EQUALISED_KEYS,
        predicate=_is_original,
        read_hparams=read_hparams,
        build=_builder("fir"),
        forward=forward,
        licence=LICENCE,
        controls=_CONTROLS,
        memory_per_pixel=2048.0,
    ),
    ArchSpec(
        id="gfpgan_bilinear",
        family="gfpgan",
        display_name="GFPGAN bilinear",
        required_keys=_EQUALISED_KEYS,
        predicate=_is_bilinear,
        read_hparams=read_hparams,
        build=_builder("bilinear"),
        forward=forward,
        licence=LICENCE,
        controls=_CONTROLS,
        memory_per_pixel=3072.0,
    ),
]

__all__ = [
    "COARSE_MAX_RESOLUTION", "GFPGANBase", "GFPGANv1", "GFPGANv1Clean", "SPECS", "apply_sft", "level_resolutions",
    "level_strengths", "noise_resolutions", "seeded_noise",
]
