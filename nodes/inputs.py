"""Checks every node applies to its model inputs, with messages that name the node and say what to do."""

from __future__ import annotations

import math
import re
from typing import Any

from ..archs.families import family


def require_family(managed: Any, family_id: str, node_name: str) -> None:
    """Raise a clear ``ValueError`` when ``managed`` is not a FaceMend model of family ``family_id``.

    Args:
        managed: what arrived on the node's ``model`` input (a ``ManagedModel`` when wired right).
        family_id: the family the node takes (a row of :data:`facemend.archs.families.FAMILIES`).
        node_name: the node's display name, for the message.
    """
    model = getattr(managed, "model", None)
    actual = getattr(model, "family", None)
    if actual is None:
        raise ValueError(f"{node_name}: the 'model' input is not a FaceMend model; connect a 'FaceMend Load Model' node.")
    if actual != family_id:
        raise ValueError(
            f"{node_name}: {model.spec.display_name} ({model.arch}) is a {actual} model; "
            f"connect it to '{family(actual).node_name}' instead."
        )


def parse_per_face(
    text: str | None, input_name: str, node_name: str, high: float = 1.0, count: int | None = None,
    unit: str = "crops",
) -> list[float] | None:
    """A per-face STRING widget (``"0.3, 0.7"``) -> ``[0.3, 0.7]``; empty/blank -> ``None``.

    Values are separated by commas (or whitespace/semicolons), one per crop in batch order, and
    must lie in ``[0, high]``. With ``count``, there must be one value or ``count`` values.

    Raises:
        ValueError: an entry that is not a number, or out of range, or the wrong number of values
            (the message names the node, the input, the entry and what is allowed).
    """
    if text is None or not text.strip():
        return None
    values: list[float] = []
    for i, part in enumerate((p for p in re.split(r"[,;\s]+", text.strip()) if p), start=1):
        try:
            v = float(part)
        except ValueError:
            raise ValueError(
                f"{node_name}: {input_name} entry {i} ({part!r}) is not a number; "
                f"write numbers between 0 and {high:g} separated by commas, e.g. '0.3, 0.7'."
            ) from None
        if not math.isfinite(v) or not 0.0 <= v <= high:
            raise ValueError(f"{node_name}: {input_name} entry {i} is {part}; each value must be between 0 and {high:g}.")
        values.append(v)
    if count is not None and len(values) not in (1, count):
        raise ValueError(
            f"{node_name}: {input_name} has {len(values)} values for {count} {unit}; give one value per "
            f"{unit.rstrip('s')} (in batch order) or a single value."
        )
    return values
