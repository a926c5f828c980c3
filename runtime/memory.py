"""Free memory, out-of-memory detection and chunk sizing."""

from __future__ import annotations

import torch

from .comfy import comfy_module


def free_memory_bytes(device: torch.device) -> int:
    """Bytes available for activations on ``device`` (ComfyUI's view inside ComfyUI)."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return int(mm.get_free_memory(device))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return 8 * 1024**3


def is_oom(error: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA OOM, or a CPU allocation failure)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    msg = str(error).lower()
    return isinstance(error, (RuntimeError, MemoryError)) and (
        "out of memory" in msg or "can't allocate memory" in msg or "defaultcpuallocator" in msg
    )


def empty_cache() -> None:
    """Release cached device memory after an OOM (ComfyUI's soft_empty_cache inside ComfyUI)."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def chunk_size_for(per_item_bytes: float, device: torch.device, max_chunk: int = 16, reserve: float = 0.6) -> int:
    """How many items fit at once: ``reserve`` of free memory divided by ``per_item_bytes`` (>= 1)."""
    budget = free_memory_bytes(device) * reserve
    return int(max(1, min(max_chunk, budget // max(per_item_bytes, 1.0))))
