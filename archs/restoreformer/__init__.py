"""RestoreFormer and RestoreFormer++ (wzhouxiff/RestoreFormerPlusPlus): registry entries and network.

- ``restoreformer``: GFPGAN's ``RestoreFormer.pth`` (flat keys) and the official ``RestoreFormer.ckpt``
  (a Lightning checkpoint: network under ``vqvae.``, training modules under ``loss.``).
- ``restoreformer_pp``: ``RestoreFormer++.ckpt`` (same container; 4 heads and decoder
  cross-attention at 32x32 as well as 16x16).

The two are told apart by which decoder levels have attention blocks; the head count is the one
thing shapes cannot tell, and it is fixed per architecture by the official configs.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import torch
from torch import nn

from ..spec import ArchSpec, StateDict, uninitialised
from .restoreformer import RestoreFormer

#: Lightning's ``loss`` module of the official training (LPIPS network, patch and facial-component
#: discriminators, ArcFace identity network): present in the released ``.ckpt`` files, never used
#: for inference.
TRAINING_ONLY_PREFIXES = ("loss.",)
#: Top-level modules of the network itself.
NETWORK_PREFIXES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")

REQUIRED_KEYS = (
    "encoder.conv_in.weight",
    "encoder.down.0.block.0.conv1.weight",
    "encoder.mid.attn_1.q.weight",
    "quant_conv.weight",
    "post_quant_conv.weight",
    "quantize.embedding.weight",
    "decoder.mid.attn_1.norm2.weight",
    "decoder.conv_out.weight",
)

HEADS = {"restoreformer": 8, "restoreformer_pp": 4}


def _indices(sd: StateDict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _levels(sd: StateDict) -> int:
    return len(_indices(sd, r"encoder\.down\.(\d+)\.block\.0\.conv1\.weight"))


def decoder_attention_levels(sd: StateDict) -> list[int]:
    """Decoder levels (0 = full resolution) that have cross-attention blocks."""
    return _indices(sd, r"decoder\.up\.(\d+)\.attn\.0\.q\.weight")


def is_restoreformer(sd: StateDict) -> bool:
    """Cross-attention only at the lowest resolution (16x16)."""
    return decoder_attention_levels(sd) == [_levels(sd) - 1]


def is_restoreformer_pp(sd: StateDict) -> bool:
    """Cross-attention at the two lowest resolutions (16x16 and 32x32)."""
    last = _levels(sd) - 1
    return decoder_attention_levels(sd) == [last - 1, last]


def prepare(sd: StateDict) -> StateDict:
    """Drop the known training-only keys of the official Lightning checkpoints (``loss.*``).

    Raises:
        ValueError: keys that are neither network weights nor known training-only keys.
    """
    kept = {k: v for k, v in sd.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
    unknown = [k for k in kept if not k.startswith(NETWORK_PREFIXES)]
    if unknown:
        raise ValueError(
            f"this RestoreFormer checkpoint holds {len(unknown)} keys that are neither network weights "
            f"({', '.join(NETWORK_PREFIXES)}) nor known training-only keys ({', '.join(TRAINING_ONLY_PREFIXES)}): "
            f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}. It may be a different model or a damaged file."
        )
    return kept


def _read_hparams(sd: StateDict, heads: int) -> dict[str, Any]:
    """Constructor arguments of :class:`RestoreFormer` from tensor shapes (``heads`` from the arch)."""
    ch, in_channels = sd["encoder.conv_in.weight"].shape[:2]
    levels = _levels(sd)
    ch_mult = [int(sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) // int(ch) for i in range(levels)]
    embed_dim, z_channels = sd["quant_conv.weight"].shape[:2]
    n_embed, code_dim = sd["quantize.embedding.weight"].shape
    if code_dim != embed_dim:
        raise ValueError(f"its codebook holds {code_dim}-dimensional codes but quant_conv produces {embed_dim}-dimensional ones")
    post_out, post_in = sd["post_quant_conv.weight"].shape[:2]
    if (post_out, post_in) != (z_channels, embed_dim):
        raise ValueError(f"post_quant_conv maps {post_in} -> {post_out} channels, not {embed_dim} -> {z_channels}")
    enc_attn = _indices(sd, r"encoder\.down\.(\d+)\.attn\.0\.q\.weight")
    dec_attn = decoder_attention_levels(sd)
    for level in set(enc_attn) | set(dec_attn) | {levels - 1}:
        width = int(ch) * ch_mult[level]
        if width % heads or width % 32:
            raise ValueError(f"its attention width {width} at level {level} does not split into {heads} heads / 32 norm groups")
    return {
        "n_embed": int(n_embed),
        "embed_dim": int(embed_dim),
        "ch": int(ch),
        "ch_mult": ch_mult,
        "num_res_blocks": len(_indices(sd, r"encoder\.down\.0\.block\.(\d+)\.conv1\.weight")),
        "z_channels": int(z_channels),
        "double_z": int(sd["encoder.conv_out.weight"].shape[0]) == 2 * int(z_channels),
        "in_channels": int(in_channels),
        "out_ch": int(sd["decoder.conv_out.weight"].shape[0]),
        "enc_attn_levels": enc_attn,
        "dec_attn_levels": dec_attn,
        "heads": heads,
    }


def read_hparams_rf(sd: StateDict) -> dict[str, Any]:
    return _read_hparams(sd, HEADS["restoreformer"])


def read_hparams_rf_pp(sd: StateDict) -> dict[str, Any]:
    return _read_hparams(sd, HEADS["restoreformer_pp"])


def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` RGB ``(B, 3, 512, 512)`` in ``[0, 1]`` -> restored, same shape and range."""
    assert isinstance(module, RestoreFormer)
    return module.restore(x)


_COMMON: dict[str, Any] = dict(
    family="codebook",
    required_keys=REQUIRED_KEYS,
    build=partial(uninitialised, RestoreFormer),
    forward=forward,
    input_size=512,
    prepare=prepare,
    memory_per_pixel=4096.0,
)

SPECS: list[ArchSpec] = [
    ArchSpec(
        id="restoreformer",
        display_name="RestoreFormer",
        predicate=is_restoreformer,
        read_hparams=read_hparams_rf,
        # GFPGAN's RestoreFormer.pth ships under GFPGAN's Apache-2.0; the RestoreFormer.ckpt release
        # (wzhouxiff/RestoreFormerPlusPlus) is Apache-2.0 as well.
        licence="Apache-2.0",
        **_COMMON,
    ),
    ArchSpec(
        id="restoreformer_pp",
        display_name="RestoreFormer++",
        predicate=is_restoreformer_pp,
        read_hparams=read_hparams_rf_pp,
        licence="Apache-2.0",
        **_COMMON,
    ),
]

__all__ = ["SPECS", "RestoreFormer"]
