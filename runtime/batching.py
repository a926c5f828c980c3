"""Running a model over a batch in chunks: memory-sized, OOM back-off, progress, interruption.

This is the one place where chunking policy lives; restore, modulate and refine nodes all call
:func:`run_in_chunks`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from .device import intermediate_device
from .interrupt import check_interrupted
from .memory import chunk_size_for, empty_cache, is_oom
from .precision import REDUCED_DTYPES, run_with_fallback
from .progress import Progress

log = logging.getLogger("facemend")


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` as float32 on ``device``; from the CPU to a CUDA device through pinned memory with a
    non-blocking copy (ordered on the current stream, so the compute that follows sees it)."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.to(dtype=torch.float32).pin_memory().to(device, non_blocking=True)
    return x.to(device=device, dtype=torch.float32)


def activation_bytes(per_item_bytes: float, dtype: torch.dtype) -> float:
    """Per-item activation estimate for compute ``dtype``: the fp32 estimate ``per_item_bytes``,
    x0.6 in fp16/bf16 (half-size activations; autocast keeps some ops, and our outputs, fp32)."""
    return per_item_bytes * (0.6 if dtype in REDUCED_DTYPES else 1.0)


def default_max_chunk(device: torch.device) -> int:
    """Upper bound on items per chunk: 64 on CUDA (batched convs keep a big GPU busy), 16 elsewhere."""
    return 64 if device.type == "cuda" else 16


def run_in_chunks(
    fn: Callable[[torch.Tensor, slice], torch.Tensor],
    x: torch.Tensor,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    per_item_bytes: float,
    max_chunk: int | None = None,
    progress: Progress | None = None,
    chunk_seconds: float | None = 1.0,
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` chunk by chunk and concatenate the results.

    Chunks are sized from free memory on ``device`` (free VRAM on a GPU, see
    :func:`~facemend.runtime.memory.chunk_size_for`) and halved on out-of-memory. On CUDA the next
    chunk's host-to-device copy is issued (pinned, non-blocking) before the current chunk runs.

    Args:
        fn: ``fn(chunk, index)``: ``chunk`` is ``x[index]`` as float32 on ``device``, ``index`` the
            slice of the batch it covers (for per-item controls); returns ``(n, C, H', W')``.
        x: ``(B, C, H, W)`` input on any device; it is never modified.
        device: compute device.
        dtype: compute dtype (autocast); a chunk with NaN/Inf is recomputed in fp32.
        per_item_bytes: estimated fp32 peak memory of one item, used to size chunks from free memory
            (scaled by :func:`activation_bytes` for ``dtype``).
        max_chunk: upper bound on chunk size (default :func:`default_max_chunk`).
        progress: advanced by the number of items in each finished chunk.
        chunk_seconds: chunks are sized so that one takes about this long (measured on the
            chunks before it; the first chunk is one item on the CPU), so Cancel is honoured and
            the progress bar moves at least that often, whatever fits in memory. ``None``: by
            memory alone, for ``fn`` that checks interruption and advances progress itself
            (Diffusion Refine does, after every step).

    Returns:
        ``(B, C, H', W')`` float32 on ComfyUI's intermediate device (CPU outside ComfyUI).

    Raises:
        RuntimeError: out of memory even one item at a time (with advice), or interruption.
    """
    batch = x.shape[0]
    out_device = intermediate_device()
    if batch == 0:
        return x.new_zeros((0, *x.shape[1:]), dtype=torch.float32, device=out_device)
    limit = max_chunk if max_chunk is not None else default_max_chunk(device)
    fits = chunk_size_for(activation_bytes(per_item_bytes, dtype), device, max_chunk=limit)
    n = 1 if device.type == "cpu" and chunk_seconds is not None else fits  # no timing yet: one item on the CPU
    results: list[torch.Tensor] = []
    i = 0
    ahead: tuple[slice, torch.Tensor] | None = None
    while i < batch:
        check_interrupted()
        index = slice(i, min(i + n, batch))
        if ahead is not None and ahead[0] == index:
            chunk = ahead[1]
        else:
            chunk = _to_device(x[index], device)
        ahead = None
        if index.stop < batch and device.type == "cuda":
            nxt = slice(index.stop, min(index.stop + n, batch))
            ahead = (nxt, _to_device(x[nxt], device))
        started = time.perf_counter()
        try:
            y = run_with_fallback(lambda chunk=chunk, index=index: fn(chunk, index), device, dtype)
        except Exception as e:  # only OOM is handled, everything else re-raised
            if not is_oom(e):
                raise
            del chunk
            ahead = None
            empty_cache()
            if n == 1:
                raise RuntimeError(
                    "FaceMend: out of memory even for one image. Free memory (close other models), use a "
                    "smaller crop/tile size, or run with --lowvram / on the CPU."
                ) from e
            fits = n = max(1, n // 2)
            log.warning("FaceMend: out of memory; retrying with chunks of %d", n)
            continue
        results.append(y.to(out_device))
        done = index.stop - index.start
        if progress is not None:
            progress.update(done)
        if chunk_seconds is not None:
            per_item = (time.perf_counter() - started) / done
            n = max(1, min(fits, int(chunk_seconds / max(per_item, 1e-6))))
        i = index.stop
    return torch.cat(results, dim=0)
