"""Registry entries for the restoreformer family (filled in by its issue)."""

from __future__ import annotations

from ..registry import ArchSpec

SPECS: list[ArchSpec] = []
