"""Nodes of the 'restore' stage (filled in by its issue)."""

from __future__ import annotations

from .spec import NodeDef

NODES: list[type[NodeDef]] = []
