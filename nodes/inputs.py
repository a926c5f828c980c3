"""Checks every node applies to its model inputs, with messages that name the node and say what to do."""

from __future__ import annotations

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
