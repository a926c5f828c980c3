"""CodeFormer (sczhou/CodeFormer): the registry entry and the network (``codeformer.py``, ``vqgan.py``).

Restoration, colorization and inpainting.

One architecture id, ``codeformer``, covers the three released checkpoints; which one a file is
follows from its shapes:

=============================== ============== ================ ==================================
file                            codebook codes fusion levels    how it runs (official inference)
=============================== ============== ================ ==================================
``codeformer.pth``              1024           32, 64, 128, 256 ``w`` = the node's fidelity, AdaIN
``codeformer_colorization.pth`` 1024           32, 64, 128      ``w = 0``, AdaIN
``codeformer_inpainting.pth``   512            32, 64, 128      ``w = 1``, no AdaIN, white = holes
=============================== ============== ================ ==================================
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import torch
from torch import nn

from ..spec import ArchSpec, Hparams, StateDict, uninitialised
from .codeformer import FUSE_CHANNELS, VARIANTS, CodeFormer
from .vqgan import CODE_DIM

#: Attention heads of every released CodeFormer (not recorded in checkpoints).
N_HEAD = 8
#: 16x16 latent tokens for 512x512 faces.
LATENT_TOKENS = 256
SHORT_CONNECT = ["32", "64", "128"]


def _count(sd: StateDict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def read_hparams(sd: StateDict) -> dict[str, Any]:
    """Constructor arguments of :class:`CodeFormer` from tensor shapes.

    Raises:
        ValueError: a codebook this network cannot use (code width other than 256, a code predictor
            scoring a different number of codes than the codebook holds, or a codebook size that is
            neither the colorization (1024) nor the inpainting (512) one for a 3-level model), or
            latent/transformer shapes that do not fit 512x512 faces.
    """
    n_codes, code_dim = sd["quantize.embedding.weight"].shape
    if code_dim != CODE_DIM:
        raise ValueError(f"its codebook holds {code_dim}-dimensional codes; CodeFormer's decoder takes {CODE_DIM}")
    scored = sd["idx_pred_layer.1.weight"].shape[0]
    if scored != n_codes:
        raise ValueError(f"its code predictor scores {scored} codes but its codebook holds {n_codes}")
    latent, dim = sd["position_emb"].shape
    if latent != LATENT_TOKENS:
        raise ValueError(f"it has {latent} position embeddings; CodeFormer needs {LATENT_TOKENS} (16x16 latent of a 512 face)")
    if dim % N_HEAD:
        raise ValueError(f"its transformer width {dim} is not divisible by {N_HEAD} heads")
    connect = sorted((s for s in FUSE_CHANNELS if f"fuse_convs_dict.{s}.scale.0.weight" in sd), key=int)
    if connect == SHORT_CONNECT:
        if n_codes == 1024:
            variant = "colorization"
        elif n_codes == 512:
            variant = "inpainting"
        else:
            raise ValueError(
                f"a codebook of {n_codes} codes with fusion at 32/64/128 is neither the colorization model "
                "(1024 codes) nor the inpainting model (512 codes)"
            )
    else:
        variant = "restore"
    return {
        "codebook_size": int(n_codes),
        "dim_embd": int(dim),
        "n_layers": _count(sd, r"ft_layers\.(\d+)\.norm1\.weight"),
        "n_head": N_HEAD,
        "dim_mlp": int(sd["ft_layers.0.linear1.weight"].shape[0]),
        "latent_size": int(latent),
        "connect_list": connect,
        "variant": variant,
    }


def fixed_controls(hparams: Hparams) -> dict[str, float]:
    """Controls the official inference fixes for a checkpoint (the user's value is ignored):
    colorization runs with ``w = 0`` (no fidelity stage was trained), inpainting with ``w = 1``."""
    return {"colorization": {"fidelity": 0.0}, "inpainting": {"fidelity": 1.0}}.get(hparams["variant"], {})


def forward(module: nn.Module, x: torch.Tensor, fidelity: float | torch.Tensor = 0.5) -> torch.Tensor:
    """``x`` RGB ``(B, 3, 512, 512)`` in ``[0, 1]`` -> restored, same shape and range.

    ``fidelity`` (float or ``(B,)`` tensor in ``[0, 1]``) is CodeFormer's ``w`` for the restoration
    checkpoint; the colorization and inpainting checkpoints use the official fixed values.
    """
    assert isinstance(module, CodeFormer)
    return module.restore(x, fidelity)


SPECS: list[ArchSpec] = [
    ArchSpec(
        id="codeformer",
        family="codebook",
        display_name="CodeFormer",
        required_keys=(
            "position_emb",
            "feat_emb.weight",
            "quantize.embedding.weight",
            "idx_pred_layer.1.weight",
            "ft_layers.0.self_attn.in_proj_weight",
            "encoder.blocks.0.weight",
            "generator.blocks.0.weight",
        ),
        read_hparams=read_hparams,
        build=partial(uninitialised, CodeFormer),
        forward=forward,
        licence="S-Lab License 1.0 (non-commercial)",
        input_size=512,
        controls=("fidelity",),
        fixed_controls=fixed_controls,
        memory_per_pixel=4096.0,
    )
]

__all__ = ["SPECS", "VARIANTS", "CodeFormer"]
