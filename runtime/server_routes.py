"""Small JSON routes on ComfyUI's server for the frontend extension (filled in by issue 7)."""

from __future__ import annotations


def register_routes() -> None:
    """Register FaceMend's HTTP routes on ComfyUI's PromptServer (inside ComfyUI only)."""
    return None
