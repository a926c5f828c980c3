"""Built-in architectures, one module per family; each module exports ``SPECS``.

Adding an architecture = adding an :class:`~facemend.model_loaders.registry.ArchSpec` to its
family module (and a family module to :data:`FAMILY_MODULES`). Network code lives in ``archs/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from ..registry import ArchSpec

#: Family modules under this package, imported lazily so ``import facemend`` stays light.
FAMILY_MODULES = ("gfpgan", "codeformer", "restoreformer", "vqfr", "refusion")


def all_specs() -> Iterator[ArchSpec]:
    """Yield every registered :class:`ArchSpec`, family by family."""
    for name in FAMILY_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        yield from module.SPECS
