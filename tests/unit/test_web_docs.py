"""Help pages: one per node id, where ComfyUI's frontend looks for them, covering every input.

ComfyUI frontend 1.35 fetches a custom node's help from
``/extensions/<pack folder>/docs/<NodeId>/<locale>.md``, then ``/extensions/<pack folder>/docs/<NodeId>.md``;
``/extensions/<pack folder>/`` serves the pack's ``WEB_DIRECTORY`` (``web/``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from facemend.nodes import all_nodes

DOCS = Path(__file__).resolve().parents[2] / "web" / "docs"

DESIGN_NODE_IDS = (
    "FaceMendModelLoader", "FaceMendDetectorLoader", "FaceMendDetect", "FaceMendCodebookRestore",
    "FaceMendCSSFTModulate", "FaceMendDiffusionRefine", "FaceMendPasteBack", "FaceMendRestoreFaces",
)


@pytest.mark.parametrize("node_id", DESIGN_NODE_IDS)
def test_every_stable_node_id_has_a_help_page(node_id: str) -> None:
    page = DOCS / f"{node_id}.md"
    assert page.is_file(), f"missing help page {page}"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# ")
    for section in ("## Inputs", "## Outputs", "## Tips"):
        assert section in text, f"{page.name} lacks {section}"


def test_no_help_page_for_an_unknown_node() -> None:
    known = set(DESIGN_NODE_IDS) | {n.NODE_ID for n in all_nodes()}
    pages = {p.stem for p in DOCS.glob("*.md")}
    assert pages <= known, f"help pages for unknown nodes: {sorted(pages - known)}"


@pytest.mark.parametrize("node", all_nodes(), ids=lambda n: n.NODE_ID)
def test_help_page_covers_every_input_and_output(node) -> None:  # noqa: ANN001
    text = (DOCS / f"{node.NODE_ID}.md").read_text(encoding="utf-8")
    missing = [i.id for i in node.inputs() if f"**{i.id}**" not in text]
    missing += [o.name for o in node.OUTPUTS if f"**{o.name}**" not in text]
    assert not missing, f"{node.NODE_ID}.md does not describe {missing} (write them as **name**)"


@pytest.mark.parametrize("node", all_nodes(), ids=lambda n: n.NODE_ID)
def test_help_page_title_is_the_node_display_name(node) -> None:  # noqa: ANN001
    """The help panel shows the page under the node's name: both must read the same."""
    first = (DOCS / f"{node.NODE_ID}.md").read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# {node.DISPLAY_NAME}"
