"""The architecture registry: one :class:`ArchSpec` per architecture, and detection.

An entry says how to recognise an architecture from its state-dict keys (``required_keys`` plus
an optional shape ``predicate``), how to read its hyper-parameters from tensor shapes, how to
build the ``nn.Module`` and how to call it on ``[0, 1]`` RGB images. Architectures live in
``model_loaders/architectures/<family>.py``; this module only knows the shape of an entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import UnsupportedModelError

StateDict = dict[str, torch.Tensor]
Forward = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ArchSpec:
    """Everything FaceMend knows about one architecture.

    Attributes:
        id: stable architecture id (``gfpgan_clean``, ``codeformer``, ...).
        family: which node consumes it: ``"gfpgan"`` (CS-SFT Modulate), ``"codebook"``
            (Codebook Restore) or ``"refusion"`` (Diffusion Refine).
        display_name: human name shown in the UI.
        required_keys: keys that must all be present for a match (the fingerprint).
        predicate: optional extra test on shapes, to tell apart entries with the same keys.
        read_hparams: state dict -> constructor kwargs, read from tensor shapes only.
        build: kwargs -> ``nn.Module`` whose ``state_dict()`` has the official layout.
        forward: ``forward(module, x, **controls)``; ``x`` is RGB float ``(B, 3, H, W)`` in
            ``[0, 1]`` and so is the result. Normalisation to the network's range happens inside.
        input_size: the square size the network expects (512 for faces), or ``None`` for any.
        size_multiple: spatial sizes must be multiples of this (after any resize).
        licence: short licence text shown to users (e.g. ``"Apache-2.0"``, ``"S-Lab 1.0 (non-commercial)"``).
        controls: names of the ``forward`` keyword controls this arch honours (e.g. ``("fidelity",)``).
        prepare: optional hook ``(state_dict) -> state_dict`` run before loading, for renames or to
            drop keys known to be training-only; it must raise on anything it does not recognise.
        memory_per_pixel: rough peak bytes of activations per input pixel in fp32, for chunk sizing.
    """

    id: str
    family: str
    display_name: str
    required_keys: tuple[str, ...]
    read_hparams: Callable[[StateDict], dict[str, Any]]
    build: Callable[..., nn.Module]
    forward: Forward
    licence: str
    predicate: Callable[[StateDict], bool] | None = None
    input_size: int | None = 512
    size_multiple: int = 1
    controls: tuple[str, ...] = ()
    prepare: Callable[[StateDict], StateDict] | None = None
    memory_per_pixel: float = 4096.0

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


@dataclass
class Registry:
    """An ordered collection of :class:`ArchSpec`; no global mutable state is implied."""

    specs: list[ArchSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        ids = [s.id for s in self.specs]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate architecture ids in registry: {sorted(dupes)}")

    def get(self, arch_id: str) -> ArchSpec:
        """Return the spec with this id, or raise ``KeyError`` listing the known ids."""
        for s in self.specs:
            if s.id == arch_id:
                return s
        raise KeyError(f"unknown architecture {arch_id!r}; known: {', '.join(s.id for s in self.specs)}")

    def detect(self, sd: Mapping[str, Any], source: str = "<state dict>") -> ArchSpec:
        """Find the one architecture whose fingerprint matches ``sd``.

        Raises:
            UnsupportedModelError: no match (naming the closest architecture and its missing
                keys), or more than one match (a file must never be guessed).
        """
        hits = [s for s in self.specs if s.matches(sd)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UnsupportedModelError(
                f"{source}: matches several architectures ({', '.join(s.id for s in hits)}); "
                "refusing to guess. Please report this file."
            )
        raise UnsupportedModelError(describe_unknown(self.specs, sd, source))


def describe_unknown(specs: Sequence[ArchSpec], sd: Mapping[str, Any], source: str) -> str:
    """A user-facing explanation of why ``sd`` matched no architecture."""
    hint = _known_foreign_model(sd)
    if hint:
        return f"{source}: this is {hint}, not a face-restoration model. Load it with the matching ComfyUI loader."
    if not specs:
        return f"{source}: no architectures are registered."
    best = max(specs, key=lambda s: s.key_score(sd))
    score = best.key_score(sd)
    if score == 0:
        sample = ", ".join(list(sd)[:5])
        return (
            f"{source}: unsupported model: its {len(sd)} keys (e.g. {sample}) match none of the supported "
            f"architectures ({', '.join(s.id for s in specs)})."
        )
    missing = [k for k in best.required_keys if k not in sd]
    if not missing:
        return (
            f"{source}: has the keys of {best.id} ({best.display_name}) but tensor shapes that do not fit it; "
            "the file may be a different variant or damaged."
        )
    return (
        f"{source}: unsupported model. Closest architecture: {best.id} ({best.display_name}), but it lacks "
        f"{len(missing)} of its {len(best.required_keys)} fingerprint keys: {', '.join(missing[:8])}"
        + (" ..." if len(missing) > 8 else "")
    )


def _known_foreign_model(sd: Mapping[str, Any]) -> str | None:
    """Recognise common non-face checkpoints so the error can say what the file is."""
    keys = list(sd)
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "a Stable Diffusion checkpoint"
    if any(k.startswith(("lora_unet_", "lora_te_")) or ".lora_down." in k for k in keys):
        return "a LoRA"
    if any(k.startswith("encoder.down.") for k in keys) and any(k.startswith("decoder.up.") for k in keys) and "quantize.embedding.weight" not in sd and not any("quantize" in k for k in keys):
        return "a VAE"
    return None
