"""The architecture registry: an ordered set of :class:`~facemend.archs.spec.ArchSpec`, and detection.

An entry says how to recognise an architecture from its state-dict keys (``required_keys`` plus
an optional shape ``predicate``), how to read its hyper-parameters from tensor shapes, how to
build the ``nn.Module`` and how to call it on ``[0, 1]`` RGB images. Entries live in their
architecture's folder (``archs/<family>/__init__.py``); this module detects files with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..archs.spec import ArchSpec
from .errors import UnsupportedModelError


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
