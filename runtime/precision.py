"""The dtype policy (fp32 / fp16 / bf16 / auto) and the reduced-precision safety net."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch

from .comfy import comfy_module

log = logging.getLogger("facemend")

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_NAMED = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

#: The half-precision compute dtypes (weights are stored in them on the compute device).
REDUCED_DTYPES = (torch.float16, torch.bfloat16)


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX).

    oneDNN can *emulate* bf16 on any AVX-512 CPU (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``
    is then True), but emulated bf16 convolutions and matmuls run 2.5-4x slower than fp32, so only
    the native instructions count here.
    """
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(policy: str, device: torch.device) -> torch.dtype:
    """Turn a user's precision choice into a compute dtype for ``device``.

    Args:
        policy: ``"auto"``, ``"fp32"``, ``"fp16"`` or ``"bf16"``. On the CPU, ``auto`` picks bf16
            only with native bf16 instructions; an explicit ``bf16`` is always honoured.
        device: where the model runs.

    Returns:
        ``torch.float32``, ``torch.float16`` or ``torch.bfloat16``. fp16 on the CPU falls back to
        fp32 with a log note.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {policy!r}")
    if device.type == "cpu":
        if policy == "bf16":
            if not cpu_supports_bf16():
                log.info("FaceMend: this CPU has no native bf16 (AVX-512 BF16/AMX); bf16 runs emulated and slower than fp32")
            return torch.bfloat16
        if policy == "auto" and cpu_supports_bf16():
            return torch.bfloat16
        if policy == "fp16":
            log.info("FaceMend: fp16 is not useful on the CPU; running in fp32")
        return torch.float32
    if policy != "auto":
        return _NAMED[policy]
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        if mm.should_use_bf16(device):
            return torch.bfloat16
        if mm.should_use_fp16(device):
            return torch.float16
        return torch.float32
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    return torch.float32


def active_compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype convolutions on ``device`` run in right now: autocast's dtype when autocast is
    on for ``device.type``, else ``torch.float32``."""
    kind = device.type
    try:
        if torch.is_autocast_enabled(kind):
            return torch.get_autocast_dtype(kind)
    except (RuntimeError, TypeError):  # a device type autocast does not know
        return torch.float32
    return torch.float32


@contextlib.contextmanager
def compute_precision(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device`` (a no-op for fp32).

    Weights may be fp32 (autocast casts them per op) or already stored in ``dtype`` by
    :class:`~facemend.runtime.models.ManagedModel` (no casts).
    """
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def run_with_fallback(fn: Callable[[], torch.Tensor], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Run ``fn`` in ``dtype``; if the result holds NaN/Inf, log it and run again in fp32.

    The retry runs with autocast off; a :class:`~facemend.runtime.models.ManagedModel` whose
    weights are stored in ``dtype`` reloads its fp32 master for it (its forward pre-hook).

    Returns:
        ``fn()``'s result as float32.
    """
    with torch.inference_mode(), compute_precision(device, dtype):
        out = fn()
    if dtype != torch.float32 and not torch.isfinite(out).all():
        log.warning("FaceMend: %s result had NaN/Inf; recomputing this chunk in fp32", str(dtype).replace("torch.", ""))
        with torch.inference_mode():
            out = fn()
    return out.float()
