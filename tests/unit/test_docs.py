"""README material in docs/: the node reference covers every node, input and output with a picture;
troubleshooting covers what issue 7 asks; the changelog exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from facemend.nodes import all_nodes

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NODES_MD = DOCS / "nodes.md"


def _section(text: str, title: str) -> str:
    """The markdown section under ``## title`` (up to the next ``## ``)."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 4)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("node", all_nodes(), ids=lambda n: n.NODE_ID)
def test_node_reference_describes_every_input_and_output_with_a_picture(node) -> None:  # noqa: ANN001
    section = _section(NODES_MD.read_text(encoding="utf-8"), node.DISPLAY_NAME)
    assert f"`{node.NODE_ID}`" in section
    missing = [i.id for i in node.inputs() if f"| **{i.id}** |" not in section]
    missing += [o.name for o in node.OUTPUTS if f"| **{o.name}** |" not in section]
    assert not missing, f"docs/nodes.md does not describe {missing} of {node.NODE_ID}"
    picture = re.search(r"!\[[^\]]*\]\((images/[^)]+)\)", section)
    assert picture, f"no picture of {node.NODE_ID}"
    image = DOCS / picture.group(1)
    assert image.is_file() and 1_000 < image.stat().st_size <= 150_000, image


def test_node_reference_links_existing_example_workflows() -> None:
    text = NODES_MD.read_text(encoding="utf-8")
    links = re.findall(r"\]\(\.\./(example_workflows/[^)]+)\)", text)
    assert len(links) >= 8
    for link in links:
        assert (ROOT / link).is_file(), link
    shown = {Path(link).stem for link in links if link.endswith(".json")}
    assert shown == {p.stem for p in (ROOT / "example_workflows").glob("*.json")}


def test_troubleshooting_covers_offline_install_facexlib_vram_and_missing_models() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    for heading in ("## Installing without internet", "## facexlib", "## GPU memory (VRAM)", "## Missing or wrong model files"):
        assert heading in text, heading


def test_changelog_has_a_release_entry() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog")
    assert re.search(r"^## \d+\.\d+\.\d+", text, re.M)
