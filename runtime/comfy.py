"""Detecting ComfyUI. The runtime package is the only code that imports ``comfy``/``folder_paths``.

Everything here is lazy: importing FaceMend never imports ComfyUI, and outside a ComfyUI process
(tests, the CLI) every bridge function falls back to plain PyTorch.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def in_comfyui() -> bool:
    """True when running inside a ComfyUI process (its ``comfy`` and ``folder_paths`` are loaded).

    We only look at ``sys.modules``: a ComfyUI checkout merely being importable (on ``sys.path``)
    does not make this a ComfyUI process.
    """
    return "comfy.model_management" in sys.modules and "folder_paths" in sys.modules


def comfy_module(name: str) -> ModuleType | None:
    """Return ComfyUI module ``name`` (e.g. ``"comfy.model_management"``) inside ComfyUI, else ``None``."""
    if not in_comfyui():
        return None
    return importlib.import_module(name)
