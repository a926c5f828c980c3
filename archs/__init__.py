"""Architectures, one folder per family (``archs/<package>/``), as spandrel does it.

Each folder's ``__init__.py`` holds its registry entries (``SPECS``: fingerprint, hyper-parameters
read from tensor shapes, builder, forward, licence, controls, memory estimate, face framing); the
network modules sit beside it, state-dict compatible with the official releases. ``ops/`` holds
the layers several families share. Which folders exist is the ``packages`` column of the family
table (:data:`facemend.archs.families.FAMILIES`): adding a family is one row there.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from .families import FAMILIES
from .framing import FFHQ, Framing
from .spec import ArchSpec


def all_specs() -> Iterator[ArchSpec]:
    """Every built-in :class:`ArchSpec`, family by family (folders are imported on first use)."""
    for fam in FAMILIES:
        for package in fam.packages:
            yield from importlib.import_module(f"{__name__}.{package}").SPECS


def framings() -> dict[str, Framing]:
    """Every face framing a built-in architecture was trained on, by name, FFHQ first."""
    found = {FFHQ.name: FFHQ}
    for spec in all_specs():
        found.setdefault(spec.framing.name, spec.framing)
    return found


def resolve_framing(framing: str | Framing) -> Framing:
    """A :class:`Framing` from itself or its name; ``ValueError`` naming the known framings otherwise."""
    if isinstance(framing, Framing):
        return framing
    known = framings()
    if framing not in known:
        raise ValueError(f"FaceMend: unknown face framing {framing!r}; choose one of {', '.join(known)}")
    return known[framing]
