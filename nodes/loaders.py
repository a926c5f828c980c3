"""Loader nodes (filled in by the foundation and face-pipeline issues)."""

from __future__ import annotations

from .spec import NodeDef

NODES: list[type[NodeDef]] = []
