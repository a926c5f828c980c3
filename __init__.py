"""FaceMend: blind face restoration nodes for ComfyUI.

Inside ComfyUI this package is imported from ``custom_nodes/<folder>/`` and exposes the V3
entry point :func:`comfy_entrypoint` plus ``WEB_DIRECTORY``. Outside ComfyUI (``pip install -e .``,
``import facemend``) nothing from ComfyUI is imported; the library lives in ``model_loaders``,
``archs``, ``face`` and ``runtime``; ``extension`` adapts it to ComfyUI.
"""

from __future__ import annotations

__version__ = "0.1.0"

WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "__version__", "comfy_entrypoint"]


async def comfy_entrypoint():  # noqa: ANN201 - returns comfy_api's ComfyExtension
    """ComfyUI V3 entry point: the extension that lists FaceMend's nodes."""
    from .extension.routes import register_routes
    from .extension.v3 import FaceMendExtension
    from .nodes import all_nodes

    register_routes()
    return FaceMendExtension(all_nodes())
