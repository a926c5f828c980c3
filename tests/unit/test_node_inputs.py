"""Every FLOAT/INT input of every node refuses NaN, Inf and out-of-range values with the node's name.

ComfyUI checks a widget's min/max before running, but a value that arrives through a link (a math
node) is not checked, and NaN passes every comparison: before this check NaN in Paste Back's
feather wrote NaN into the face region, and NaN padding in Detect raised a bare "cannot convert
float NaN to integer". The check runs before the node touches any other input, so no model or
image is needed here.
"""

from __future__ import annotations

import math

import pytest

from facemend.nodes import all_nodes
from facemend.nodes.spec import In, NodeDef


def _numeric_inputs() -> list[tuple[type[NodeDef], In]]:
    return [(node, spec) for node in all_nodes() for spec in node.inputs() if spec.type in ("FLOAT", "INT")]


@pytest.mark.parametrize(("node", "spec"), _numeric_inputs(), ids=lambda v: getattr(v, "NODE_ID", getattr(v, "id", "")))
def test_non_finite_and_out_of_range_values_are_refused_with_the_node_and_value(node: type[NodeDef], spec: In) -> None:
    bad = [math.nan, math.inf, -math.inf]
    if spec.min is not None:
        bad.append(spec.min - (1 if spec.type == "INT" else 0.5))
    if spec.max is not None and spec.max < 2**62:
        bad.append(spec.max + (1 if spec.type == "INT" else 0.5))
    for value in bad:
        with pytest.raises(ValueError) as err:
            node.execute(**{spec.id: value})
        message = str(err.value)
        assert message.startswith(f"{node.DISPLAY_NAME}: {spec.id} must be"), message
        assert (str(value) in message) or (f"{value:g}" in message), message
    with pytest.raises(ValueError, match=f"{spec.id} must be a number"):
        node.execute(**{spec.id: "half"})


def test_every_node_checks_its_numbers() -> None:
    """The check is on every node's execute (a node added later cannot forget it)."""
    assert _numeric_inputs(), "no numeric inputs found"
    for node in all_nodes():
        assert getattr(node.execute, "__wrapped__", None) is not None, node.NODE_ID
