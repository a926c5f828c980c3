"""GPEN (``gpen``) against the official implementation, yangxy/GPEN.

Layouts: ``tests/golden/gpen/layout_<file>.json`` are ``{key: shape}`` of the official
``FullGenerator`` (``face_model/gpen_model.py``) built with each released file's settings
(README/run.sh/demo.py/face_*.py of the official repository; 1024 from ModelScope's pipeline,
``FullGenerator(1024, 512, 8, 2, narrow=1)``; 2048 from run.sh, ``--in_size 2048
--channel_multiplier 2 --narrow 1``), dumped on the ``meta`` device.

Goldens (``golden_<case>.safetensors``) were made once by a scratch script kept outside the
repository (``/work/scratch/gpen/make_goldens.py``). It imported the official
``face_model/gpen_model.py`` of yangxy/GPEN at commit 2c736702983368847fb544d234a22ac7cff25802
through ``sys.path``, with the compiled ``op`` package replaced by a module holding the plain
definitions (``upfirdn2d`` = the official ``upfirdn2d_native``; ``fused_leaky_relu(x, b) =
sqrt(2) * leaky_relu(x + b, 0.2)``; ``FusedLeakyReLU`` = that with a ``bias`` parameter). For each
case of :data:`CASES` it built ``FullGenerator(size, style_dim, n_mlp, channel_multiplier,
narrow=narrow, isconcat=isconcat)``, loaded ``seeded_state_dict(layout, seed, gpen_override)``
(the functions of this file and ``fm_testing.weights``) with ``strict=True``, ran
``model(x)[0]`` in fp32 on the CPU under ``torch.no_grad`` with :func:`case_input` (the
astronaut crop ``tests/data/astronaut_face_512.png`` in ``[-1, 1]``: subsampled by 2/8 for the
256/64 px cases, pixel-repeated 2x/4x for 1024/2048), and stored of the raw ``(1, 3, S, S)``
output (about ``[-1, 1]``, not clamped) what :func:`golden_summary` keeps: a 64x64 average-pooled
image, two full-resolution windows and the mean.

Widths: the 256 and 512 cases have the official widths (GPEN-BFR-256; GPEN-BFR-512 =
GPEN-Seg2face-512). The 1024 and 2048 cases are reduced-width variants (``narrow`` 0.25 and
0.125) so the file runs in well under a minute on a CPU; their layouts are recorded beside the
official ones, and every official layout is checked for detection and strict loading. A 64 px
case covers ``isconcat=False``, ``n_mlp`` 4, ``style_dim`` 256 and ``channel_multiplier`` 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from facemend.archs.gpen import GPEN_FRAMING, SPECS, gpen_template
from facemend.model_loaders import Registry, RestorationModel, build_from_state_dict, default_registry, load_model
from fm_testing.weights import GOLDEN_DIR, load_layout, seeded_state_dict

TOL = 1e-4
SPEC = SPECS[0]


@dataclass(frozen=True)
class Case:
    """One golden: layout file, seed, the official constructor settings."""

    layout: str
    seed: int
    size: int
    channel_multiplier: float = 2
    narrow: float = 1
    isconcat: bool = True
    n_mlp: int = 8
    style_dim: int = 512

    @property
    def hparams(self) -> dict:
        return dict(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp,
                    channel_multiplier=self.channel_multiplier, narrow=self.narrow, isconcat=self.isconcat)


CASES: dict[str, Case] = {
    "bfr256": Case("GPEN-BFR-256", 3101, 256, channel_multiplier=1, narrow=0.5),
    "bfr512": Case("GPEN-BFR-512", 3102, 512),
    "s1024_narrow": Case("gpen_1024_narrow", 3103, 1024, narrow=0.25),
    "s2048_narrow": Case("gpen_2048_narrow", 3104, 2048, narrow=0.125),
    "s64_add": Case("gpen_64_add", 3105, 64, channel_multiplier=1, narrow=0.25, isconcat=False, n_mlp=4, style_dim=256),
}

#: The released generators and their settings (size, channel_multiplier, narrow).
OFFICIAL: dict[str, tuple[int, float, float]] = {
    "GPEN-BFR-256": (256, 1, 0.5),
    "GPEN-BFR-512": (512, 2, 1),
    "GPEN-BFR-1024": (1024, 2, 1),
    "GPEN-BFR-2048": (2048, 2, 1),
    "GPEN-Colorization-1024": (1024, 2, 1),
    "GPEN-Inpainting-1024": (1024, 2, 1),
    "GPEN-Seg2face-512": (512, 2, 1),
}


def gpen_override(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor | None:
    """GPEN-aware tensors for :func:`fm_testing.weights.seeded_state_dict` (keeps activations O(1)).

    Equalised weights N(0, 1) (the layers scale them at run time), the style MLP's N(0, 1) / 0.01
    (its learning-rate multiplier, as the official init), ToRGB weights x0.3; FIR kernels as the
    official ones (``[1, 3, 3, 1]`` outer product / 64, x4 after upsampling); feature-injection
    weights ``1 + 0.1 N(0, 1)``; modulation biases near 1; the constant input N(0, 1).
    """
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "kernel":
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = taps[:, None] * taps[None, :]
        k = k / k.sum()
        return k * 4 if key.endswith(("blur.kernel", "upsample.kernel")) else k
    if key.endswith("input.input"):
        return torch.randn(shape, generator=g)
    if key.endswith("noise.weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if key.endswith("modulation.bias"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if leaf != "weight" or len(shape) < 2:
        return None
    if re.fullmatch(r"generator\.style\.\d+\.weight", key):
        return torch.randn(shape, generator=g) / 0.01
    gain = 0.3 if re.search(r"to_rgbs?1?(\.\d+)?\.conv\.weight$", key) else 1.0
    return gain * torch.randn(shape, generator=g)


_SD: dict[str, dict[str, torch.Tensor]] = {}


def case_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The seeded official-layout state dict of golden case ``name`` (a fresh dict of shared tensors)."""
    if name not in _SD:
        case = CASES[name]
        _SD[name] = seeded_state_dict(load_layout(f"gpen/layout_{case.layout}.json"), case.seed, gpen_override)
    return dict(_SD[name])


def case_input(face_crop: torch.Tensor, size: int) -> torch.Tensor:
    """Network input at ``size`` px in ``[-1, 1]``: the 512 crop subsampled or pixel-repeated."""
    x = face_crop
    if size < 512:
        s = 512 // size
        x = x[..., ::s, ::s]
    elif size > 512:
        r = size // 512
        x = x.repeat_interleave(r, dim=-1).repeat_interleave(r, dim=-2)
    return x * 2 - 1


def windows(size: int) -> tuple[tuple[int, int, int], ...]:
    """Two full-resolution windows ``(top, left, side)`` stored in a golden of a ``size`` px output."""
    side = min(64, size // 4)
    return tuple((t * size // 512, l * size // 512, side) for t, l in ((200, 150), (330, 224)))


def golden_summary(raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a golden stores of a raw ``(1, 3, S, S)`` output (see the module docstring)."""
    size = raw.shape[-1]
    out = {"pool": F.avg_pool2d(raw, size // 64) if size > 64 else raw, "mean": raw.mean().reshape(1)}
    for i, (top, left, side) in enumerate(windows(size)):
        out[f"window{i}"] = raw[:, :, top : top + side, left : left + side]
    return {k: v.contiguous() for k, v in out.items()}
