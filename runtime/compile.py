"""Opt-in ``torch.compile`` for a model's forward pass, cached per module and compute dtype.

Off by default (first calls compile for tens of seconds; a restorer run once per image gains
little). :func:`enable_compile` replaces the module's ``forward`` with a dispatcher that, per
``(compute dtype, device type)``, compiles the original forward once and reuses it; when
compilation or the compiled call fails (no C++ compiler for inductor, an unsupported op, a
backend error) it logs one line and runs that module eagerly from then on. Out-of-memory errors
are not taken for compile failures: they propagate, so the caller's OOM back-off still works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .memory import is_oom
from .precision import active_compute_dtype

log = logging.getLogger("facemend")


class CompiledForward:
    """The dispatcher installed as ``module.forward`` by :func:`enable_compile`.

    Attributes:
        eager: the module's own forward (bound method).
        cache: ``{(dtype, device type): compiled callable}``.
        failed: set once compilation failed; every later call is eager.
        calls: ``{(dtype, device type): number of compiled calls}`` (for tests and benchmarks).
    """

    def __init__(self, module: nn.Module, backend: Any = "inductor", **options: Any) -> None:
        self.eager: Callable[..., Any] = module.forward
        self.name = type(module).__name__
        self.backend = backend
        self.options = options
        self.cache: dict[tuple[torch.dtype, str], Callable[..., Any]] = {}
        self.calls: dict[tuple[torch.dtype, str], int] = {}
        self.failed: str | None = None

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[torch.dtype, str]:
        t = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        device = t.device if t is not None else torch.device("cpu")
        return active_compute_dtype(device), device.type

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is not None:
            return self.eager(*args, **kwargs)
        key = self._key(args, kwargs)
        fn = self.cache.get(key)
        try:
            if fn is None:
                fn = torch.compile(self.eager, backend=self.backend, **self.options)
                self.cache[key] = fn
            out = fn(*args, **kwargs)
        except Exception as e:  # any compile/backend failure falls back to eager
            if is_oom(e):
                raise
            self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
            log.warning("FaceMend: torch.compile of %s failed (%s); running it eagerly", self.name, self.failed)
            self.cache.clear()
            return self.eager(*args, **kwargs)
        self.calls[key] = self.calls.get(key, 0) + 1
        return out


def enable_compile(module: nn.Module, backend: Any = "inductor", **options: Any) -> CompiledForward:
    """Route ``module``'s calls through a cached ``torch.compile`` (see the module docstring).

    Hooks, ``state_dict`` and parameters are untouched; calling it again returns the installed
    dispatcher. ``options`` go to ``torch.compile`` (e.g. ``mode="max-autotune"``).

    Returns:
        The :class:`CompiledForward` now at ``module.forward``.
    """
    current = module.__dict__.get("forward")
    if isinstance(current, CompiledForward):
        return current
    dispatcher = CompiledForward(module, backend=backend, **options)
    module.forward = dispatcher  # type: ignore[method-assign]
    return dispatcher


def disable_compile(module: nn.Module) -> None:
    """Undo :func:`enable_compile` (the module runs its own forward again)."""
    if isinstance(module.__dict__.get("forward"), CompiledForward):
        del module.forward
