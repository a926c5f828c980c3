"""The shape of one architecture's registry entry (:class:`ArchSpec`), free of any loading logic.

Each architecture folder (``archs/<family>/__init__.py``) exports ``SPECS: list[ArchSpec]``; the
registry in :mod:`facemend.model_loaders.registry` collects them and detects files with them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .framing import FFHQ, Framing

#: A flat checkpoint: parameter/buffer name -> tensor (CPU, as stored; ``meta`` when only shapes are read).
StateDict = dict[str, torch.Tensor]
#: Hyper-parameters read from tensor shapes (constructor keyword arguments of the network).
Hparams = dict[str, Any]
Forward = Callable[..., torch.Tensor]


def uninitialised(network: Callable[..., nn.Module], **hparams: Any) -> nn.Module:
    """``network(**hparams)`` with UNINITIALISED weights on the CPU, for loading a state dict next.

    The module is created on the meta device and then given empty CPU storage, which skips the
    random initialisation of every parameter (tens of millions for CodeFormer or RestoreFormer)
    that the checkpoint overwrites anyway.
    """
    with torch.device("meta"):
        module = network(**hparams)
    return module.to_empty(device="cpu")


@dataclass(frozen=True)
class ArchSpec:
    """Everything FaceMend knows about one architecture.

    Attributes:
        id: stable architecture id (``gfpgan_clean``, ``codeformer``, ...).
        family: id of its row in :data:`facemend.archs.families.FAMILIES` (which node takes it).
        display_name: human name shown in the UI.
        required_keys: keys that must all be present for a match (the fingerprint).
        read_hparams: state dict -> constructor kwargs, read from tensor shapes only.
        build: kwargs -> ``nn.Module`` whose ``state_dict()`` has the official layout.
        forward: ``forward(module, x, **controls)``; ``x`` is RGB float ``(B, 3, H, W)`` in
            ``[0, 1]`` and so is the result. Normalisation to the network's range happens inside.
        licence: short licence text shown to users (e.g. ``"Apache-2.0"``).
        predicate: optional extra test on shapes, to tell apart entries with the same keys.
        input_size: the square size the network expects (512 for most faces), ``None`` for any
            size, or ``hparams -> size`` when it follows from the checkpoint (GPEN 256..2048).
        controls: names of the ``forward`` keyword controls this arch honours (e.g. ``("fidelity",)``).
        fixed_controls: optional ``hparams -> {control: value}``: controls a checkpoint pins to
            the official value (CodeFormer colorization runs at fidelity 0); nodes report them
            as fixed instead of passing the widget's value.
        prepare: optional hook ``(state_dict) -> state_dict`` run before loading, for renames or to
            drop keys known to be training-only; it raises ``ValueError`` on anything it does not
            recognise (the loader turns that into an ``UnsupportedModelError`` naming the file).
        memory_per_pixel: rough peak bytes of activations per input pixel in fp32, for chunk sizing.
        framing: the face framing (landmark template) the network was trained on.
    """

    id: str
    family: str
    display_name: str
    required_keys: tuple[str, ...]
    read_hparams: Callable[[StateDict], Hparams]
    build: Callable[..., nn.Module]
    forward: Forward
    licence: str
    predicate: Callable[[StateDict], bool] | None = None
    input_size: int | None | Callable[[Hparams], int | None] = 512
    controls: tuple[str, ...] = ()
    fixed_controls: Callable[[Hparams], dict[str, float]] | None = None
    prepare: Callable[[StateDict], StateDict] | None = None
    memory_per_pixel: float = 4096.0
    framing: Framing = FFHQ

    def key_score(self, sd: Mapping[str, Any]) -> float:
        """Fraction of ``required_keys`` present in ``sd`` (1.0 = fingerprint keys all there)."""
        if not self.required_keys:
            return 0.0
        return sum(k in sd for k in self.required_keys) / len(self.required_keys)

    def matches(self, sd: Mapping[str, Any]) -> bool:
        """True when every required key is present and the shape predicate (if any) agrees."""
        if self.key_score(sd) < 1.0:
            return False
        if self.predicate is None:
            return True
        try:
            return bool(self.predicate(dict(sd)))
        except (KeyError, IndexError, ValueError):
            return False

    def size_for(self, hparams: Hparams) -> int | None:
        """The square input size of a checkpoint with these hyper-parameters (``None``: any size)."""
        return self.input_size(hparams) if callable(self.input_size) else self.input_size

    def fixed_for(self, hparams: Hparams) -> dict[str, float]:
        """Controls pinned by this checkpoint (empty for most)."""
        return dict(self.fixed_controls(hparams)) if self.fixed_controls is not None else {}
