"""Errors raised while reading or recognising checkpoints."""

from __future__ import annotations


class UnsupportedModelError(ValueError):
    """A file or state dict is not a checkpoint FaceMend can load.

    The message always says which file (when there is one), what was found, and what to do.
    It is a ``ValueError`` so callers that only know Python's builtins can still catch it.
    """
