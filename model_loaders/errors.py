"""Errors raised while reading or recognising checkpoints, and the quoting of library text in them."""

from __future__ import annotations

import re


class UnsupportedModelError(ValueError):
    """A file or state dict is not a checkpoint FaceMend can load.

    The message always says which file (when there is one), what was found, and what to do.
    It is a ``ValueError`` so callers that only know Python's builtins can still catch it.
    """


#: Terminal control sequences (colour codes and the like): CSI ``ESC [ ... final``, OSC
#: ``ESC ] ... BEL|ESC \\``, and two-byte ``ESC x`` escapes. Libraries (torch, rich-formatted
#: tracebacks) sometimes colour their messages; quoted in an error dialog they are noise.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (ANSI colour codes, OSC titles)."""
    return _ANSI.sub("", text)


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, ending in ``...`` when cut.

    Never cuts inside a word: a single word longer than ``limit`` is kept whole up to the limit
    only when there is no earlier space to cut at.
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    room = max(limit - 3, 1)
    cut = text.rfind(" ", 0, room + 1)
    head = text[:cut] if cut > 0 else text[:room]
    return head.rstrip(" ,;:.-(") + "..."


def quote_library_text(text: str, limit: int = 200) -> str:
    """A library's message made fit to quote in ours: colour codes removed, whitespace and line
    breaks collapsed to single spaces, shortened at a word boundary (see :func:`shorten`)."""
    return shorten(" ".join(strip_ansi(text).split()), limit)
