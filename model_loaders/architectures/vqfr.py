"""Registry entries for the vqfr family (filled in by its issue)."""

from __future__ import annotations

from ..registry import ArchSpec

SPECS: list[ArchSpec] = []
