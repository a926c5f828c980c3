"""GPEN (yangxy/GPEN, CVPR 2021): the registry entry of the ``gpen`` family.

One architecture, id ``gpen``: the official ``FullGenerator`` (:class:`~.network.GPEN`). Every
released generator is this network; only its hyper-parameters differ:

============================  =====  ==================  ======  ========
file                          size   channel_multiplier  narrow  isconcat
============================  =====  ==================  ======  ========
GPEN-BFR-256.pth              256    1                   0.5     True
GPEN-BFR-512.pth              512    2                   1       True
GPEN-Seg2face-512.pth         512    2                   1       True
GPEN-BFR-1024 (ModelScope)    1024   2                   1       True
GPEN-Colorization-1024.pth    1024   2                   1       True
GPEN-Inpainting-1024.pth      1024   2                   1       True
GPEN-BFR-2048 (ModelScope)    2048   2                   1       True
============================  =====  ==================  ======  ========

(all with ``style_dim`` 512 and ``n_mlp`` 8). Hyper-parameters come from tensor shapes only:
``size`` = 2 ** (number of encoder levels ``ecd<i>`` + 1); ``style_dim`` = the modulation width;
``n_mlp`` = number of style-MLP linears; ``narrow`` = constant-input channels / 512;
``isconcat`` = the first styled conv's activation has twice the constant input's channels;
``channel_multiplier`` = generator channels at 64 px / (256 * narrow).

Files of the same size share keys and shapes, so their task (restoration, colorization,
inpainting, segmentation-to-face) cannot be told from the file. Seg2face is the one that is run
differently: its official inference does not normalise (``is_norm=False``: the network takes and
returns ``[0, 1]``), hence the ``normalize`` control.

The network is deterministic: ``FullGenerator`` feeds encoder features to every noise input and
never draws random noise (see :mod:`.network`), so there is no ``seed`` control.

Controls: ``strength`` (float in ``[0, 1]`` or per-face ``(B,)`` tensor; the official ``--alpha``
of ``face_enhancement.py``: ``strength * restored + (1 - strength) * input``, 1 = official
default) and ``normalize`` (default True; False for GPEN-Seg2face-512).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import ArchSpec, Hparams, StateDict
from .framing import GPEN_FRAMING, gpen_template
from .network import GPEN, gpen_channels, log2_size

#: Shown to users. The GPEN README carried "© Alibaba, 2021. For academic and non-commercial use
#: only." from its first version (2021-04-07, e6e2593) until 2026-03-10 (2c73670 removed the
#: section without adding any licence); the repository has never had a LICENSE file, and the
#: README says the released models are "not our best model due to commercial issues".
LICENCE = "Alibaba GPEN: academic and non-commercial use only"

REQUIRED_KEYS = (
    "ecd0.0.0.weight",
    "ecd0.0.1.bias",
    "ecd1.0.0.kernel",
    "ecd1.0.1.weight",
    "final_linear.0.weight",
    "generator.input.input",
    "generator.conv1.conv.weight",
    "generator.conv1.conv.modulation.weight",
    "generator.conv1.noise.weight",
    "generator.conv1.activate.bias",
    "generator.to_rgb1.conv.weight",
    "generator.convs.0.conv.blur.kernel",
    "generator.to_rgbs.0.upsample.kernel",
)


def _count(sd: StateDict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.fullmatch(k))})


def _nice(value: float) -> float:
    """``value`` as an ``int`` when it is one (so hparams read ``2``, not ``2.0``)."""
    return int(round(value)) if abs(value - round(value)) < 1e-9 else value


def read_hparams(sd: StateDict) -> Hparams:
    """``GPEN`` constructor kwargs from tensor shapes (see the module docstring).

    Raises:
        ValueError: shapes that fit no ``FullGenerator``, e.g. an encoder shallower than the
            generator (the official ``FullGenerator_SR``, which no released file uses).
    """
    enc_levels = _count(sd, r"ecd(\d+)\..*")
    size = 2 ** (enc_levels + 1)
    log_size = log2_size(size)
    gen_levels = _count(sd, r"generator\.to_rgbs\.(\d+)\..*")
    if gen_levels != log_size - 2:
        raise ValueError(
            f"the encoder has {enc_levels} levels ({size} px) but the generator {gen_levels + 2} "
            "(FullGenerator_SR layouts are not supported)"
        )
    style_dim = int(sd["generator.conv1.conv.modulation.weight"].shape[1])
    n_mlp = _count(sd, r"generator\.style\.(\d+)\.weight")
    ch4 = int(sd["generator.input.input"].shape[1])
    act = int(sd["generator.conv1.activate.bias"].shape[0])
    if act not in (ch4, 2 * ch4):
        raise ValueError(f"first styled conv activates {act} channels for a {ch4}-channel input")
    isconcat = act == 2 * ch4
    narrow = ch4 / 512
    channel_multiplier: float = 2  # the official default; below 64 px it changes no channel count
    if size >= 64:
        ch64 = int(sd["generator.to_rgbs.3.conv.weight"].shape[2]) // (2 if isconcat else 1)
        channel_multiplier = _nice(ch64 / (256 * narrow))
    expected = gpen_channels(channel_multiplier, narrow)[size]
    if int(sd["ecd0.0.0.weight"].shape[0]) != expected:
        raise ValueError(f"ecd0 has {sd['ecd0.0.0.weight'].shape[0]} channels; the generator implies {expected}")
    return {
        "size": size,
        "style_dim": style_dim,
        "n_mlp": n_mlp,
        "channel_multiplier": channel_multiplier,
        "narrow": _nice(narrow),
        "isconcat": isconcat,
    }


def _is_gpen(sd: StateDict) -> bool:
    read_hparams(sd)
    return True


def build(**hp: Any) -> nn.Module:
    """The official-layout module for these hyper-parameters."""
    return GPEN(**hp)


def _strength_weight(strength: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """``strength`` checked to lie in ``[0, 1]``; a tensor comes back as ``(B, 1, 1, 1)`` on ``like``'s device."""
    if isinstance(strength, torch.Tensor) and strength.ndim > 0:
        s = strength.to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1)
        if s.shape[0] != like.shape[0]:
            raise ValueError(f"strength has {s.shape[0]} values for {like.shape[0]} faces")
        if bool((s < 0).any() or (s > 1).any()):
            raise ValueError("strength must lie in [0, 1]")
        return s
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {s}")
    return s


def forward(
    module: nn.Module,
    x: torch.Tensor,
    strength: float | torch.Tensor = 1.0,
    normalize: bool = True,
) -> torch.Tensor:
    """Restore aligned faces (GPEN framing) with a GPEN ``FullGenerator``.

    Args:
        module: a :class:`~.network.GPEN`.
        x: ``(B, 3, H, W)`` RGB float in ``[0, 1]``, faces aligned to :data:`GPEN_FRAMING`;
            resized (antialiased bicubic) to the network's size and back when ``H, W`` differ
            (the official code resizes with ``cv2.resize`` bilinear).
        strength: blend of the restored face with the input, float or per-face ``(B,)`` tensor
            in ``[0, 1]``: ``strength * restored + (1 - strength) * x`` (official ``--alpha``).
        normalize: feed the network ``[-1, 1]`` (True, all BFR/colorization/inpainting files)
            or ``[0, 1]`` unchanged (False: GPEN-Seg2face-512, official ``is_norm=False``).

    Returns:
        ``(B, 3, H, W)`` RGB in ``[0, 1]``, ``x``'s dtype.
    """
    s = _strength_weight(strength, x)
    if isinstance(s, float) and s == 0.0:
        return x.clone()
    size: int = module.size  # type: ignore[assignment]
    _, _, h, w = x.shape
    resized = (h, w) != (size, size)
    inp = x
    if resized:
        inp = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    y = module(inp * 2 - 1 if normalize else inp)
    y = ((y + 1) / 2 if normalize else y).float().clamp(0, 1)
    if resized:
        y = F.interpolate(y, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    y = y.to(x.dtype)
    if isinstance(s, float) and s == 1.0:
        return y
    return x + s * (y - x)


SPECS: list[ArchSpec] = [
    ArchSpec(
        id="gpen",
        family="gpen",
        display_name="GPEN",
        required_keys=REQUIRED_KEYS,
        predicate=_is_gpen,
        read_hparams=read_hparams,
        build=build,
        forward=forward,
        licence=LICENCE,
        input_size=lambda hp: int(hp["size"]),
        controls=("strength", "normalize"),
        # measured on the CPU (fp32, peak resident memory above the loaded model): GPEN-BFR-512
        # layout ~1.8 KB per input pixel at batch 1, ~2.0 KB at batch 2; BFR-1024 and BFR-256 ~0.9 KB
        memory_per_pixel=2048.0,
        framing=GPEN_FRAMING,
    ),
]

__all__ = ["GPEN", "GPEN_FRAMING", "LICENCE", "SPECS", "forward", "gpen_template", "read_hparams"]
