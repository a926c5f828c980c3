"""README material in docs/: the node reference covers every node, input and output with a picture;
troubleshooting covers what issue 7 asks; the changelog exists."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

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
    links = [unquote(link) for link in re.findall(r"\]\(\.\./(example_workflows/[^)]+)\)", text)]
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


# --- README as a newcomer reads it ---------------------------------------------------------

README = ROOT / "README.md"


def _readme_section(title: str) -> str:
    return _section(README.read_text(encoding="utf-8"), title)


def test_comfyui_minimum_version_is_the_same_everywhere() -> None:
    """pyproject's requires-comfyui is what README, CHANGELOG and docs/testing.md say (the live tier
    runs against ComfyUI 0.8)."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^requires-comfyui\s*=\s*">=\s*(\d+)\.(\d+)(?:\.\d+)?"', pyproject, re.M)
    assert found, "pyproject.toml [tool.comfy] requires-comfyui must be '>=X.Y[.Z]'"
    short = f"{found.group(1)}.{found.group(2)}"
    assert short == "0.8", "the live tier is tested against ComfyUI 0.8: update the docs with the minimum"
    for doc in (README, ROOT / "CHANGELOG.md", DOCS / "testing.md"):
        text = doc.read_text(encoding="utf-8")
        assert f"{short} or newer" in text, f"{doc.name} does not say ComfyUI {short} or newer"
        others = set(re.findall(r"ComfyUI[^.\n]{0,12}?(\d+\.\d+)(?:\.\d+)? or newer", text)) - {short}
        assert not others, f"{doc.name} names another minimum ComfyUI version: {others}"


def test_pack_version_is_the_same_everywhere() -> None:
    import facemend

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.M).group(1)
    assert facemend.__version__ == version
    assert re.search(rf"^## {re.escape(version)}\b", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert f"**{version}**" in _readme_section("Changelog")


def test_readme_keeps_the_two_fresh_machine_commands_and_ci_runs_the_test_one() -> None:
    quick = _readme_section("Quick start (fresh machine, Python 3.10+)")
    assert "pip install -e . && python -m facemend restore photo.jpg -o restored/ --model GFPGANv1.4.pth" in quick
    assert 'pip install -e ".[test]" && python -m pytest\n' in quick
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().splitlines()[-1] == "python -m pytest"


def test_readme_quick_start_goes_from_git_clone_to_a_result() -> None:
    quick = _readme_section("Quick start (fresh machine, Python 3.10+)")
    steps = ["git clone https://github.com/facemend/comfyui-facemend", "cd comfyui-facemend", "python3 -m venv .venv",
             ". .venv/bin/activate", "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu",
             "pip install -e . && python -m facemend restore"]
    positions = [quick.find(step) for step in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions) if p < 0]
    assert positions == sorted(positions), "the steps are not in the order a newcomer runs them"
    assert "pip install --force-reinstall torch torchvision" in quick  # a torchvision repair that works
    assert "restored/photo.png" in quick and "PNG" in quick
    assert "3 minutes" in quick and "6" in quick
    assert 'python -m pytest tests/unit -k "not parity and not vqfr"' in quick


def test_docs_hold_no_development_machine_paths() -> None:
    for doc in (README, ROOT / "CHANGELOG.md", *DOCS.glob("*.md")):
        text = doc.read_text(encoding="utf-8")
        assert "/work/" not in text and "worktree" not in text, doc.name


def test_readme_checkpoint_table_covers_the_catalog() -> None:
    from facemend.model_loaders.catalog import CATALOG, GPEN_LICENCE

    table = _readme_section("Supported checkpoints")
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| file ")]
    for m in CATALOG:
        if " " in m.name:  # a family of per-task files (Refusion, IR-SDE): listed by architecture
            assert any(f"`{m.arch}`" in r for r in rows), m.arch
            continue
        row = next((r for r in rows if f"`{m.name}`" in r), None)
        assert row is not None, f"{m.name} is not in README's checkpoint table"
        if m.kind == "facerestore_models":  # restorers show their arch id (facexlib nets their network name)
            assert f"`{m.arch}`" in row, (m.name, row)
        if m.arch == "gpen":
            assert "academic and non-commercial use only" in row and "academic and non-commercial use only" in GPEN_LICENCE


def test_readme_node_table_lists_every_node() -> None:
    table = _readme_section("Nodes")
    for node in all_nodes():
        assert f"| {node.DISPLAY_NAME} (`{node.NODE_ID}`) |" in table, node.NODE_ID
    gpen = next(line for line in table.splitlines() if "`FaceMendGPENRestore`" in line)
    assert "framing = gpen" in gpen and "strength" in gpen
