"""Which faces, in which order: minimum size, ordering, selection by mode/index list, maximum count."""

from __future__ import annotations

import re

import torch

#: Orders (stable widget values): area = largest first; confidence = highest score first;
#: center-distance = closest to the image centre first.
ORDERS = ("area", "left-to-right", "top-to-bottom", "confidence", "center-distance")
#: Selection modes: every face, the largest face, or faces by position in the order.
SELECTIONS = ("all", "largest", "indices")


def parse_indices(text: str) -> list[int]:
    """Parse an index list such as ``"0,2"``, ``"1-3"`` or ``"0, 2-4"`` (ranges inclusive).

    Returns:
        Sorted unique non-negative indices.

    Raises:
        ValueError: anything else, with an example of the expected form.
    """
    out: set[int] = set()
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"FaceMend: face range {part!r} runs backwards; write it low-high, e.g. '1-3'.")
            out.update(range(lo, hi + 1))
        elif part.isdigit():
            out.add(int(part))
        else:
            raise ValueError(
                f"FaceMend: cannot read face index {part!r} in {text!r}; use positions counted from 0, "
                "separated by commas, with inclusive ranges: e.g. '0,2' or '1-3' or '0,2-4'."
            )
    if not out:
        raise ValueError(f"FaceMend: the face index list {text!r} is empty; e.g. '0' or '0,2' or '1-3'.")
    return sorted(out)


def clipped_area(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(k,)`` area of ``(k, 4)`` boxes inside the image (as facexlib's largest-face rule)."""
    x1 = boxes[:, 0].clamp(0, width)
    x2 = boxes[:, 2].clamp(0, width)
    y1 = boxes[:, 1].clamp(0, height)
    y2 = boxes[:, 3].clamp(0, height)
    return (x2 - x1).clamp_min(0) * (y2 - y1).clamp_min(0)


def rank(boxes: torch.Tensor, scores: torch.Tensor, order: str, height: int, width: int) -> torch.Tensor:
    """Positions of faces sorted by ``order`` (ties keep the incoming order).

    Args:
        boxes: ``(k, 4)`` ``(x1, y1, x2, y2)`` pixels; scores: ``(k,)``.
        order: one of :data:`ORDERS`.

    Returns:
        ``(k,)`` int64 permutation: ``boxes[perm]`` is in the requested order.
    """
    if order not in ORDERS:
        raise ValueError(f"FaceMend: unknown face order {order!r}; choose one of {', '.join(ORDERS)}")
    b = boxes.to(torch.float64)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    if order == "area":
        key = -clipped_area(b, height, width)
    elif order == "left-to-right":
        key = cx
    elif order == "top-to-bottom":
        key = cy
    elif order == "confidence":
        key = -scores.to(torch.float64)
    else:
        key = torch.hypot(cx - (width - 1) / 2, cy - (height - 1) / 2)
    return torch.sort(key, stable=True).indices


def choose(ordered_boxes: torch.Tensor, select: str, indices: str, max_faces: int, height: int, width: int) -> torch.Tensor:
    """Positions (into the ordered faces) kept by the selection.

    Args:
        ordered_boxes: ``(k, 4)`` boxes already in the user's order.
        select: ``"all"``, ``"largest"`` (the one largest face) or ``"indices"`` (``indices`` string,
            positions in the order; positions past the last face are ignored).
        max_faces: keep at most this many (0 = no limit), first in order.

    Returns:
        ``(m,)`` int64 positions in ascending order.
    """
    k = ordered_boxes.shape[0]
    if select not in SELECTIONS:
        raise ValueError(f"FaceMend: unknown face selection {select!r}; choose one of {', '.join(SELECTIONS)}")
    if k == 0:
        return torch.zeros(0, dtype=torch.int64)
    if select == "all":
        pos = torch.arange(k)
    elif select == "largest":
        pos = clipped_area(ordered_boxes.to(torch.float64), height, width).argmax().view(1)
    else:
        pos = torch.tensor([i for i in parse_indices(indices) if i < k], dtype=torch.int64)
    if max_faces > 0:
        pos = pos[:max_faces]
    return pos


def big_enough(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """``(k,)`` bool: the box's shorter side is at least ``min_size`` pixels."""
    side = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return side >= min_size
