"""Random-weight checkpoints in the official files' containers, for the live-server tests.

Real restoration weights cannot be downloaded in tests, so each official file name the example
workflows use is written with seeded random weights in the official key layout (recorded from
the official models under ``tests/golden/<family>/``) and wrapped the way the official release
wraps it:

- ``params_ema`` dicts (BasicSR training output): GFPGAN, CodeFormer;
- a PyTorch Lightning checkpoint (``state_dict`` with the network under ``vqvae.`` next to
  bookkeeping entries): RestoreFormer / RestoreFormer++ ``.ckpt``;
- a raw state dict, or one saved from ``DataParallel`` (``module.`` prefix): Refusion / IR-SDE, GPEN.

Files are written with ``torch.save`` (zip format). Outputs of random networks are not faces, so
tests check shapes, ranges, masks and that pixels outside the faces are untouched, never looks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fm_testing.weights import load_layout, seeded_state_dict


@dataclass(frozen=True)
class OfficialFile:
    """An official checkpoint file name, where it goes, its layout and its container."""

    name: str
    kind: str  # model folder: facerestore_models or refusion
    layout: str  # tests/golden/<family>/<file>.json
    container: str  # params_ema, lightning, raw or module
    arch: str  # the architecture FaceMend must detect in it


#: The files the example workflows and the live tests load.
OFFICIAL_FILES: tuple[OfficialFile, ...] = (
    OfficialFile("codeformer.pth", "facerestore_models", "codebook/codeformer_layout.json", "params_ema", "codeformer"),
    OfficialFile("GFPGANv1.4.pth", "facerestore_models", "gfpgan/layout_gfpgan_clean.json", "params_ema", "gfpgan_clean"),
    OfficialFile("RestoreFormer.ckpt", "facerestore_models", "codebook/restoreformer_layout.json", "lightning", "restoreformer"),
    OfficialFile("GPEN-BFR-512.pth", "facerestore_models", "gpen/layout_GPEN-BFR-512.json", "raw", "gpen"),
    OfficialFile("refusion.pth", "refusion", "refusion/layout_nafnet.json", "raw", "refusion_nafnet"),
    OfficialFile("refusion_dataparallel.pth", "refusion", "refusion/layout_nafnet.json", "module", "refusion_nafnet"),
)


def wrap(sd: dict[str, torch.Tensor], container: str) -> dict[str, object]:
    """Wrap a state dict the way the official release files do (see module docstring)."""
    if container == "params_ema":
        return {"params_ema": sd}
    if container == "lightning":
        return {
            "epoch": 60,
            "global_step": 123456,
            "pytorch-lightning_version": "1.0.8",
            "state_dict": {f"vqvae.{k}": v for k, v in sd.items()},
        }
    if container == "raw":
        return dict(sd)
    if container == "module":
        return {f"module.{k}": v for k, v in sd.items()}
    raise ValueError(f"unknown container {container!r}")


def write_official(folder: Path, file: OfficialFile, seed: int = 0) -> Path:
    """Write ``file`` with seeded random weights into ``folder``; returns its path."""
    path = folder / file.name
    sd = seeded_state_dict(load_layout(file.layout), seed)
    torch.save(wrap(sd, file.container), path)
    return path


def official(name: str) -> OfficialFile:
    """The :class:`OfficialFile` called ``name``."""
    for f in OFFICIAL_FILES:
        if f.name == name:
            return f
    raise KeyError(name)
