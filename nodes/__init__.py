"""FaceMend's ComfyUI nodes: one module per stage, each exporting ``NODES``.

Nodes are thin: they validate, convert IMAGE ``(B, H, W, C)`` <-> ``(B, C, H, W)``, call the
library and report progress. No maths here.
"""

from __future__ import annotations

import importlib

from .spec import NodeDef

#: Node modules in menu order.
NODE_MODULES = ("loaders", "detect", "quality", "restore", "modulate", "gpen", "refine", "paste", "all_in_one")


def all_nodes() -> list[type[NodeDef]]:
    """Every FaceMend node definition, in menu order."""
    nodes: list[type[NodeDef]] = []
    for name in NODE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        nodes.extend(module.NODES)
    return nodes
