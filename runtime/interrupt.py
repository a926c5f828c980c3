"""Interruption: ComfyUI's cancel button inside ComfyUI, an event outside it (CLI, tests)."""

from __future__ import annotations

import threading

from .comfy import comfy_module


class Interrupted(RuntimeError):
    """Raised outside ComfyUI when :func:`request_interrupt` was called."""


class InterruptFlag:
    """A standalone stop flag; inside ComfyUI its own interruption mechanism is used instead."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()


#: Process-wide flag for the CLI/tests (ComfyUI keeps its own equivalent in model_management).
STANDALONE_FLAG = InterruptFlag()


def check_interrupted() -> None:
    """Raise if the user asked to stop: ComfyUI's ``InterruptProcessingException`` inside ComfyUI,
    :class:`Interrupted` outside. Call it between chunks and between diffusion steps."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
        return
    if STANDALONE_FLAG.is_set():
        STANDALONE_FLAG.clear()
        raise Interrupted("FaceMend: interrupted")


def request_interrupt() -> None:
    """Ask the running standalone job to stop at its next check (CLI/tests)."""
    STANDALONE_FLAG.request()
