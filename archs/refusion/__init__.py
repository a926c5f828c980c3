"""Refusion / IR-SDE (Algolzw/image-restoration-sde): registry entries, networks, the SDE and tiled refinement.

- ``refusion_nafnet``: ConditionalNAFNet noise network, RGB (3 channels) or latent (8 channels,
  the latent-dehazing variant, which also adds the intro features before ``ending``);
- ``irsde_unet``: ConditionalUNet noise network of IR-SDE;
- ``latent_refusion``: the U-Net autoencoder of latent Refusion (decoder reuses encoder skips).

Calling a noise network's model runs the whole reverse process with the paper's defaults (see
:class:`~facemend.archs.refusion.RefineSettings`); calling the autoencoder reconstructs the image
through its latent. Official files are plain state dicts (``module.`` is stripped by the reader).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..spec import ArchSpec, StateDict
from .autoencoder import LatentUNet
from .nafnet import ConditionalNAFNet
from .refine import TRAINING_STEPS, RefineSettings, minimum_side, refine_images, seed_generators
from .sde import IRSDE, SAMPLERS, SCHEDULES, generator_noise, theta_schedule
from .unet import ConditionalUNet

LICENCE = "MIT"

#: Controls the noise networks' ``forward`` honours (all optional).
REFINE_CONTROLS = ("sampler", "steps", "max_sigma", "eps", "schedule", "strength", "seed", "tile", "overlap", "autoencoder")


def _count(sd: StateDict, prefix: str) -> int:
    """Number of numbered children ``prefix<i>.`` (``max i + 1``; 0 when none)."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = [int(m.group(1)) for k in sd if (m := pat.match(k))]
    return max(idx) + 1 if idx else 0


# ------------------------------------------------------------------ ConditionalNAFNet


def _is_nafnet(sd: StateDict) -> bool:
    width = sd["intro.weight"].shape[0]
    channels = sd["ending.weight"].shape[0]
    return (
        sd["intro.weight"].shape[1] == 2 * channels
        and tuple(sd["time_mlp.1.weight"].shape) == (width * 8, width)
        and "init_conv.weight" not in sd
        # the latent-bokeh variant has lens-information MLPs (cam_mlp); not supported
        and not any("cam_mlp" in k for k in sd)
    )


def _nafnet_hparams(sd: StateDict) -> dict[str, Any]:
    levels = _count(sd, "downs.")
    if levels == 0 or _count(sd, "ups.") != levels:
        raise ValueError(f"found {levels} down- and {_count(sd, 'ups.')} up-sampling levels")
    channels = int(sd["ending.weight"].shape[0])
    return {
        "img_channel": channels,
        "width": int(sd["intro.weight"].shape[0]),
        "middle_blk_num": _count(sd, "middle_blks."),
        "enc_blk_nums": [_count(sd, f"encoders.{i}.") for i in range(levels)],
        "dec_blk_nums": [_count(sd, f"decoders.{i}.") for i in range(levels)],
        # the only non-RGB release (latent-dehazing, 8 channels) adds the intro features before
        # `ending`; that variant has exactly the same keys, so the channel count tells them apart
        "intro_skip": channels != 3,
    }


def _build_nafnet(**hp: Any) -> nn.Module:
    return ConditionalNAFNet(**hp)


# ------------------------------------------------------------------ ConditionalUNet


def _is_unet(sd: StateDict) -> bool:
    w = sd["init_conv.weight"]
    return (
        tuple(w.shape[-2:]) == (7, 7)
        and w.shape[1] == 2 * sd["final_conv.weight"].shape[0]
        and "latent_conv.weight" not in sd
        and "mid_fusion.l_proj1.weight" not in sd  # stereo variants (SCAM fusion) are not supported
    )


def _unet_hparams(sd: StateDict) -> dict[str, Any]:
    nf = int(sd["init_conv.weight"].shape[0])
    depth = _count(sd, "downs.")
    if depth == 0 or _count(sd, "ups.") != depth:
        raise ValueError(f"found {depth} down and {_count(sd, 'ups.')} up levels")
    outs = [int(sd[f"downs.{i}.3.weight"].shape[0]) for i in range(depth)]
    if any(o % nf for o in outs):
        raise ValueError(f"level widths {outs} are not multiples of nf={nf}")
    return {
        "in_nc": int(sd["init_conv.weight"].shape[1]) // 2,
        "out_nc": int(sd["final_conv.weight"].shape[0]),
        "nf": nf,
        "depth": depth,
        "level_mults": [o // nf for o in outs],
    }


def _build_unet(**hp: Any) -> nn.Module:
    return ConditionalUNet(**hp)


# ------------------------------------------------------------------ latent autoencoder


def _is_autoencoder(sd: StateDict) -> bool:
    return "time_mlp.1.weight" not in sd and sd["latent_conv.weight"].shape[0] == sd["post_latent_conv.weight"].shape[1]


def _autoencoder_hparams(sd: StateDict) -> dict[str, Any]:
    ch = int(sd["init_conv.weight"].shape[0])
    depth = _count(sd, "encoder.")
    if depth == 0 or _count(sd, "decoder.") != depth:
        raise ValueError(f"found {depth} encoder and {_count(sd, 'decoder.')} decoder levels")
    outs = [int(sd[f"encoder.{i}.3.weight"].shape[0]) for i in range(depth)]
    if any(o % ch for o in outs):
        raise ValueError(f"level widths {outs} are not multiples of ch={ch}")
    return {
        "in_ch": int(sd["init_conv.weight"].shape[1]),
        "out_ch": int(sd["final_conv.weight"].shape[0]),
        "ch": ch,
        "ch_mult": [o // ch for o in outs],
        "embed_dim": int(sd["latent_conv.weight"].shape[0]),
    }


def _build_autoencoder(**hp: Any) -> nn.Module:
    return LatentUNet(**hp)


# ------------------------------------------------------------------ forwards


def refine_forward(
    module: nn.Module, x: torch.Tensor, seed: int = 0, autoencoder: Any = None, **settings: Any
) -> torch.Tensor:
    """Run the reverse IR-SDE on ``x`` ``(B, 3, H, W)`` RGB in ``[0, 1]``; returns the same.

    ``settings`` are :class:`RefineSettings` fields (``sampler``, ``steps``, ``max_sigma``, ``eps``,
    ``schedule``, ``strength``, ``tile``, ``overlap``; defaults are the paper's), ``seed`` seeds
    image ``i`` with ``seed + i``, and ``autoencoder`` (the ``latent_refusion`` model or module)
    is required by latent networks. The Diffusion Refine node calls :func:`refine_images` itself
    (for progress, interruption and chunking); this is the plain ``model(x, **controls)`` call.
    """
    ae = getattr(autoencoder, "module", autoencoder)
    if ae is not None and not isinstance(ae, LatentUNet):
        raise ValueError("autoencoder: expected the latent-Refusion U-Net autoencoder (latent_refusion)")
    draw = generator_noise(seed_generators(int(seed), x.shape[0]))
    return refine_images(module, x, RefineSettings(**settings), draw, autoencoder=ae)


def reconstruct_forward(module: nn.Module, x: torch.Tensor, **controls: Any) -> torch.Tensor:
    """Autoencoder round trip: ``x`` ``(B, 3, H, W)`` RGB in ``[0, 1]`` -> decode(encode(x)), clamped."""
    return module(x.float()).float().clamp(0, 1)


SPECS: list[ArchSpec] = [
    ArchSpec(
        id="refusion_nafnet",
        family="refusion",
        display_name="Refusion (ConditionalNAFNet)",
        required_keys=(
            "intro.weight", "ending.weight", "time_mlp.1.weight", "time_mlp.3.weight",
            "middle_blks.0.mlp.1.weight", "middle_blks.0.norm1.g", "downs.0.weight", "ups.0.0.weight",
        ),
        predicate=_is_nafnet,
        read_hparams=_nafnet_hparams,
        build=_build_nafnet,
        forward=refine_forward,
        licence=LICENCE,
        input_size=None,
        controls=REFINE_CONTROLS,
        memory_per_pixel=4096.0,
    ),
    ArchSpec(
        id="irsde_unet",
        family="refusion",
        display_name="IR-SDE (ConditionalUNet)",
        required_keys=(
            "init_conv.weight", "time_mlp.1.weight", "time_mlp.3.weight", "downs.0.0.block1.proj.weight",
            "ups.0.0.block1.proj.weight", "mid_block1.mlp.1.weight", "mid_attn.fn.fn.to_qkv.weight",
            "mid_attn.fn.fn.to_out.0.weight", "final_res_block.block1.proj.weight", "final_conv.weight",
        ),
        predicate=_is_unet,
        read_hparams=_unet_hparams,
        build=_build_unet,
        forward=refine_forward,
        licence=LICENCE,
        input_size=None,
        controls=REFINE_CONTROLS,
        memory_per_pixel=6144.0,
    ),
    ArchSpec(
        id="latent_refusion",
        family="refusion",
        display_name="Latent Refusion autoencoder (U-Net)",
        required_keys=(
            "init_conv.weight", "encoder.0.0.block1.proj.weight", "decoder.0.0.block1.proj.weight",
            "latent_conv.weight", "post_latent_conv.weight", "final_conv.weight",
        ),
        predicate=_is_autoencoder,
        read_hparams=_autoencoder_hparams,
        build=_build_autoencoder,
        forward=reconstruct_forward,
        licence=LICENCE,
        input_size=None,
        memory_per_pixel=1536.0,
    ),
]

__all__ = [
    "IRSDE", "SAMPLERS", "SCHEDULES", "SPECS", "TRAINING_STEPS", "ConditionalNAFNet", "ConditionalUNet", "LatentUNet",
    "RefineSettings", "generator_noise", "minimum_side", "refine_images", "seed_generators", "theta_schedule",
]
