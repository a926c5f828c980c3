"""VQFR (TencentARC/VQFR, ECCV 2022): registry entries ``vqfr_v1`` / ``vqfr_v2`` and the networks (``v1.py``, ``v2.py``).

Fingerprints (mutually exclusive with each other and with CodeFormer / RestoreFormer / GFPGAN,
whose keys use ``quantize.`` / ``generator.`` / ``stylegan_decoder.`` and have no parallel decoder):

- v1: ``main_decoder.*`` + ``inpfeat_extraction.conv.*`` + ``quantizer.quantize_dict.<level>.*``
- v2: ``main_branch.*`` + ``inpfeat_extraction.weight`` + ``feat2index.*`` + ``quantizer.embedding.weight``

Hyper-parameters come from tensor shapes and key presence only.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..spec import ArchSpec, StateDict
from .v1 import VQFRv1
from .v2 import VQFRv2

LICENCE = "Apache-2.0"

_V1_KEYS = (
    "inpfeat_extraction.conv.weight",
    "encoder.conv_in.weight",
    "encoder.encoder_dict.Level_1.0.conv1.weight",
    "decoder.decoder_dict.Level_1.0.conv1.weight",
    "decoder.conv_out.2.weight",
    "main_decoder.conv_out.0.weight",
    "main_decoder.align_func_dict.Level_1.dcn.weight",
    "main_decoder.align_func_dict.Level_1.dcn.conv_offset.weight",
)
_V2_KEYS = (
    "inpfeat_extraction.weight",
    "encoder.conv_in.weight",
    "encoder.blocks.0.0.conv1.weight",
    "decoder.conv_in.weight",
    "decoder.conv_out.2.weight",
    "feat2index.1.weight",
    "quantizer.embedding.weight",
    "main_branch.align_func_dict.Level_1.dcn.weight",
    "main_branch.align_func_dict.Level_1.dcn.conv_offset.weight",
)


def _levels(sd: StateDict, prefix: str) -> list[int]:
    """Level indices ``i`` for which ``{prefix}.Level_{2**i}.*`` keys exist, sorted; must be 0..L-1."""
    pat = re.compile(re.escape(prefix) + r"\.Level_(\d+)\.")
    sizes = sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})
    levels = [s.bit_length() - 1 for s in sizes]
    if not levels or any(2**i != s for i, s in zip(levels, sizes)) or levels != list(range(len(levels))):
        raise ValueError(f"{prefix}: levels {sizes} are not 1, 2, 4, ...")
    return levels


def _count(sd: StateDict, prefix: str) -> int:
    """Number of residual blocks ``{prefix}.<j>.conv1.weight`` (any ``j``) in a stage."""
    pat = re.compile(re.escape(prefix) + r"\.\d+\.conv1\.weight")
    return sum(1 for k in sd if pat.fullmatch(k))


def _dcn_groups(sd: StateDict, prefix: str) -> int:
    """Offset groups of the DCN at ``prefix``: conv_offset outputs ``3 * G * k * k`` channels."""
    k = sd[f"{prefix}.dcn.weight"].shape[-1] * sd[f"{prefix}.dcn.weight"].shape[-2]
    out = sd[f"{prefix}.dcn.conv_offset.weight"].shape[0]
    if out % (3 * k):
        raise ValueError(f"{prefix}.dcn.conv_offset has {out} outputs, not a multiple of 3*{k}")
    return out // (3 * k)


def _is_v1(sd: StateDict) -> bool:
    return any(k.startswith("quantizer.quantize_dict.") and k.endswith(".embedding.weight") for k in sd)


def read_v1(sd: StateDict) -> dict[str, Any]:
    """VQFRv1 constructor kwargs from a state dict (see :class:`facemend.archs.vqfr.VQFRv1`)."""
    levels = _levels(sd, "main_decoder.align_func_dict")
    if _levels(sd, "encoder.encoder_dict") != levels or _levels(sd, "decoder.decoder_dict") != levels:
        raise ValueError("encoder, texture decoder and main decoder have different numbers of levels")
    n = len(levels)
    top = f"Level_{2 ** (n - 1)}"
    quant_levels = {k.split(".")[2] for k in sd if k.startswith("quantizer.quantize_dict.")}
    if quant_levels != {top}:
        raise ValueError(f"quantiser levels {sorted(quant_levels)}; only one at the coarsest level ({top}) is supported")
    channels = [int(sd[f"main_decoder.align_func_dict.Level_{2**i}.dcn.weight"].shape[0]) for i in levels]
    emb = sd[f"quantizer.quantize_dict.{top}.embedding.weight"]

    def factor(key: str) -> int:
        return 2 if key in sd else 1

    return {
        "channels": channels,
        "enc_down": [factor(f"encoder.pre_downsample_dict.Level_{2**i}.conv.weight") for i in levels],
        "dec_up": [factor(f"decoder.pre_upsample_dict.Level_{2**i}.conv.weight") for i in levels],
        "main_up": [factor(f"main_decoder.pre_upsample_dict.Level_{2**i}.conv.weight") for i in levels[:-1]],
        "enc_blocks": _count(sd, "encoder.encoder_dict.Level_1"),
        "dec_blocks": _count(sd, "decoder.decoder_dict.Level_1"),
        "code_dim": int(emb.shape[1]),
        "num_code": int(emb.shape[0]),
        "inpfeat_dim": int(sd["inpfeat_extraction.conv.weight"].shape[0]),
        "deformable_groups": _dcn_groups(sd, "main_decoder.align_func_dict.Level_1"),
    }


def read_v2(sd: StateDict) -> dict[str, Any]:
    """VQFRv2 constructor kwargs from a state dict (see :class:`facemend.archs.vqfr.VQFRv2`)."""
    levels = _levels(sd, "main_branch.align_func_dict")
    n = len(levels)
    emb = sd["quantizer.embedding.weight"]
    return {
        "channels": [int(sd[f"main_branch.align_func_dict.Level_{2**i}.dcn.weight"].shape[0]) for i in levels],
        "enc_blocks": _count(sd, "encoder.blocks.0"),
        "enc_attention": "encoder.mid_blocks.1.q.weight" in sd,
        "dec_blocks": _count(sd, f"decoder.blocks.{n - 1}"),
        "dec_attention": "decoder.mid_blocks.1.q.weight" in sd,
        "code_dim": int(emb.shape[1]),
        "num_code": int(emb.shape[0]),
        "inpfeat_dim": int(sd["inpfeat_extraction.weight"].shape[0]),
        "deformable_groups": _dcn_groups(sd, "main_branch.align_func_dict.Level_1"),
    }


def build_v1(**hp: Any) -> torch.nn.Module:
    return VQFRv1(**hp)


def build_v2(**hp: Any) -> torch.nn.Module:
    return VQFRv2(**hp)


def _check_input(module: torch.nn.Module, x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"VQFR expects RGB images (B, 3, H, W); got shape {tuple(x.shape)}")
    m = int(getattr(module, "size_multiple", 32))
    if x.shape[-1] % m or x.shape[-2] % m:
        raise ValueError(f"VQFR needs image sizes that are multiples of {m}; got {x.shape[-1]}x{x.shape[-2]}")


def forward_v1(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x (B, 3, H, W)`` RGB in [0, 1] -> restored ``(B, 3, H, W)`` RGB in [0, 1] (v1 has no controls)."""
    _check_input(module, x)
    y = module(x * 2 - 1)
    return ((y.float() + 1) / 2).clamp(0, 1)


def forward_v2(module: torch.nn.Module, x: torch.Tensor, fidelity: float | torch.Tensor = 0.0) -> torch.Tensor:
    """``x (B, 3, H, W)`` RGB in [0, 1] -> restored RGB in [0, 1].

    Args:
        fidelity: VQFR v2's ``fidelity_ratio`` in [0, 1]: 0 (default, as in the official demo)
            for the best quality, 1 for the best fidelity to the input. A float, or a float
            tensor ``(B,)`` with one value per face.
    """
    _check_input(module, x)
    y = module(x * 2 - 1, fidelity=fidelity)
    return ((y.float() + 1) / 2).clamp(0, 1)


SPECS: list[ArchSpec] = [
    ArchSpec(
        id="vqfr_v1",
        family="codebook",
        display_name="VQFR v1",
        required_keys=_V1_KEYS,
        predicate=_is_v1,
        read_hparams=read_v1,
        build=build_v1,
        forward=forward_v1,
        licence=LICENCE,
        input_size=512,
        controls=(),
        memory_per_pixel=12288.0,  # measured ~9.7 KB per pixel (CPU, batch 1, torchvision DCN)
    ),
    ArchSpec(
        id="vqfr_v2",
        family="codebook",
        display_name="VQFR v2",
        required_keys=_V2_KEYS,
        read_hparams=read_v2,
        build=build_v2,
        forward=forward_v2,
        licence=LICENCE,
        input_size=512,
        controls=("fidelity",),
        memory_per_pixel=8192.0,  # measured ~6.0 KB per pixel (CPU, batch 1, torchvision DCN)
    ),
]

__all__ = ["SPECS", "VQFRv1", "VQFRv2"]
