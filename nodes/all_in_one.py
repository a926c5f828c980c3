"""Nodes of the 'all_in_one' stage (filled in by its issue)."""

from __future__ import annotations

from .spec import NodeDef

NODES: list[type[NodeDef]] = []
