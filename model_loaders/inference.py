"""Running a loaded restorer over a batch of face crops: the one code path every restore node shares.

Resizing to the network's size, dtype policy, memory-sized chunks with OOM back-off, progress and
interruption all happen here, so CS-SFT Modulate, Codebook Restore, GPEN Restore, Restore Faces
and the command line behave alike.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ..runtime import ManagedModel, Progress, resolve_dtype, run_in_chunks
from .controls import ControlPlan

log = logging.getLogger("facemend")


def restore_batch(
    managed: ManagedModel,
    crops: torch.Tensor,
    plan: ControlPlan | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Run ``managed``'s restorer over ``crops``.

    Args:
        managed: a loaded model (``managed.model`` is a ``RestorationModel``).
        crops: ``(B, 3, S, S)`` RGB float in ``[0, 1]`` (any device; never modified). Crops that are
            not the network's size are resized in and out with antialiasing.
        plan: the controls (:func:`~facemend.model_loaders.controls.plan_controls`): ``controls``
            go to every chunk (e.g. ``{"fidelity": 0.5}``); each ``per_item`` list (length ``B``)
            reaches a chunk as a float tensor ``(n,)`` slice on the compute device.
        progress: advanced once per finished crop.

    Returns:
        ``(B, 3, S, S)`` float32 in ``[0, 1]`` on ComfyUI's intermediate device.

    Raises:
        ValueError: non-square crops, or ``per_item`` lists of the wrong length.
    """
    model = managed.model
    spec = model.spec
    b, c, h, w = crops.shape
    if c != 3:
        raise ValueError(f"FaceMend: expected RGB crops with 3 channels, got {c}.")
    if b == 0:
        return crops.new_zeros((0, 3, h, w), dtype=torch.float32)
    size = model.input_size
    if size is not None and h != w:
        raise ValueError(
            f"FaceMend: {model.arch} restores square face crops; got {w}x{h}. Use the crops from 'FaceMend Detect' "
            "or crop the image to a square first."
        )
    resize = size is not None and h != size
    if resize:
        log.info("FaceMend: resizing %dx%d crops to %d for %s and back", w, h, size, model.arch)
    per = {}
    plan = plan or ControlPlan()
    for name, values in plan.per_item.items():
        t = torch.as_tensor(values, dtype=torch.float32).flatten()
        if t.numel() != b:
            raise ValueError(f"FaceMend: {name} has {t.numel()} values for {b} faces; give one per face or a single value.")
        per[name] = t
    fixed = dict(plan.controls)
    side = size or max(h, w)
    per_item_bytes = spec.memory_per_pixel * side * side
    device = managed.load(memory_required=int(per_item_bytes))
    dtype = resolve_dtype(getattr(managed, "precision", "auto"), device)

    def run(chunk: torch.Tensor, index: slice) -> torch.Tensor:
        x = F.interpolate(chunk, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1) if resize else chunk
        kw = dict(fixed)
        for name, t in per.items():
            kw[name] = t[index].to(device)
        y = model(x, **kw)
        if resize:
            y = F.interpolate(y.float(), size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        return y.clamp(0, 1)

    return run_in_chunks(run, crops, device=device, dtype=dtype, per_item_bytes=per_item_bytes, progress=progress)
