"""Loading: state dict -> :class:`RestorationModel` (strict, hyper-parameters from shapes)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..archs.families import Family, family
from ..archs.framing import Framing
from ..archs.spec import ArchSpec, Hparams, StateDict
from .errors import UnsupportedModelError, quote_library_text, strip_ansi
from .reading import read_checkpoint, unwrap_state_dict
from .registry import Registry


@dataclass
class RestorationModel:
    """A loaded restorer: the official-layout module plus what FaceMend knows about it.

    Call it as ``model(x, **controls)``: ``x`` is RGB float ``(B, 3, H, W)`` in ``[0, 1]`` on the
    module's device; the result has the same shape and range. ``controls`` are the arch's own
    (see ``spec.controls``), e.g. ``fidelity`` for CodeFormer.
    """

    spec: ArchSpec
    module: nn.Module
    hparams: Hparams
    source: str = "<state dict>"

    @property
    def arch(self) -> str:
        """Architecture id, e.g. ``"codeformer"``."""
        return self.spec.id

    @property
    def family(self) -> str:
        """Family id (``"gfpgan"``, ``"codebook"``, ``"refusion"``, ...): which node takes this model."""
        return self.spec.family

    @property
    def family_row(self) -> Family:
        """This model's row of the family table (node, display names, widgets)."""
        return family(self.spec.family)

    @property
    def input_size(self) -> int | None:
        """Square crop size the network runs at (``None``: any size)."""
        return self.spec.size_for(self.hparams)

    @property
    def framing(self) -> Framing:
        """The face framing the network was trained on (Restore Faces aligns crops to it)."""
        return self.spec.framing

    @property
    def fixed_controls(self) -> dict[str, float]:
        """Controls this checkpoint pins to the official value (e.g. CodeFormer colorization: fidelity 0)."""
        return self.spec.fixed_for(self.hparams)

    @property
    def licence(self) -> str:
        return self.spec.licence

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def __call__(self, x: torch.Tensor, **controls: Any) -> torch.Tensor:
        unknown = set(controls) - set(self.spec.controls)
        if unknown:
            raise TypeError(
                f"{self.arch} does not take control(s) {sorted(unknown)}; it takes {list(self.spec.controls) or 'none'}"
            )
        return self.spec.forward(self.module, x, **controls)

    def describe(self) -> str:
        """One line for logs and the UI: arch, parameters, licence."""
        return f"{self.spec.display_name} [{self.arch}], {self.parameter_count / 1e6:.1f}M parameters, licence: {self.licence}"


def default_registry() -> Registry:
    """A fresh registry holding every built-in architecture (cheap; nothing global is mutated)."""
    from ..archs import all_specs

    return Registry(list(all_specs()))


def load_model(
    source: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    registry: Registry | None = None,
) -> RestorationModel:
    """Load a checkpoint file or in-memory state dict as a :class:`RestorationModel`.

    Args:
        source: a path (``.safetensors``/``.pth``/``.pt``/``.ckpt``/``.bin``) or a state dict
            (containers such as ``params_ema`` are unwrapped here too).
        registry: architectures to recognise; defaults to :func:`default_registry`.

    Returns:
        The model in eval mode on the CPU, weights loaded with ``strict=True``, fp32.

    Raises:
        UnsupportedModelError: unreadable file, unknown architecture, ambiguous fingerprint, or
            keys that do not fit the detected architecture (missing/unexpected keys listed).
    """
    registry = registry or default_registry()
    if isinstance(source, Mapping):
        name = "<state dict>"
        sd = unwrap_state_dict(source, source=name)
    else:
        name = str(Path(source))
        sd = read_checkpoint(source)
    spec = registry.detect(sd, source=name)
    return build_from_state_dict(spec, sd, name)


def prepare_and_read(spec: ArchSpec, sd: StateDict, source: str = "<state dict>") -> tuple[StateDict, Hparams]:
    """Run ``spec``'s ``prepare`` hook and read its hyper-parameters from ``sd``'s shapes.

    Returns:
        ``(state dict to load, hyper-parameters)``.

    Raises:
        UnsupportedModelError: keys the hook does not recognise, or shapes that fit no
            configuration of the architecture (the message names ``source``).
    """
    if spec.prepare is not None:
        try:
            sd = spec.prepare(sd)
        except ValueError as e:
            raise UnsupportedModelError(f"{source}: {e}") from None
    try:
        return sd, spec.read_hparams(sd)
    except (KeyError, IndexError, ValueError) as e:
        raise UnsupportedModelError(f"{source}: looks like {spec.id} but its tensor shapes are not usable ({e}).") from None


def build_from_state_dict(spec: ArchSpec, sd: StateDict, source: str = "<state dict>") -> RestorationModel:
    """Build ``spec``'s module from ``sd``'s shapes and load it strictly."""
    sd, hparams = prepare_and_read(spec, sd, source)
    module = spec.build(**hparams)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        missing = [k for k in module.state_dict() if k not in sd]
        unexpected = [k for k in sd if k not in module.state_dict()]
        detail = strip_ansi(str(e)).strip().splitlines()
        raise UnsupportedModelError(
            f"{source}: looks like {spec.id} ({hparams}) but does not fit it: "
            f"{len(missing)} missing keys {missing[:6]}, {len(unexpected)} unexpected keys {unexpected[:6]}; "
            f"{quote_library_text(detail[-1], 300) if detail else ''}"
        ) from None
    module.float().eval().requires_grad_(False)
    return RestorationModel(spec=spec, module=module, hparams=hparams, source=source)
