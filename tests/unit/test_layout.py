"""The shape of the code: rooms import only downwards, and each architecture is one folder.

Rooms, lowest first (``shared/DESIGN.md``): ``runtime`` (services) -> ``archs`` (networks and
their registry entries) -> ``model_loaders`` (files -> models) -> ``face`` -> ``nodes`` ->
``extension`` (ComfyUI adapter and routes) -> the top-level modules (entry point, CLI). A module
may import from its own room and from lower ones, never from a higher one; ``runtime`` imports no
other room at all.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from facemend.archs.families import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("runtime", "archs", "model_loaders", "face", "nodes", "extension")
TOP = len(ROOMS)  # cli.py, pipeline_cli.py, __init__.py, __main__.py


def _room_of(parts: tuple[str, ...]) -> int:
    return ROOMS.index(parts[0]) if parts and parts[0] in ROOMS else TOP


def _package_files() -> list[Path]:
    skip = {"tests", "benchmarks", "docs", "web", "example_workflows", "build", "dist"}
    return [p for p in ROOT.rglob("*.py")
            if not (set(p.relative_to(ROOT).parts) & skip) and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]


def _imported_rooms(path: Path) -> list[tuple[int, str]]:
    """(room index, import text) of every import of the pack's own modules in ``path``."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = (*base, *(node.module.split(".") if node.module else ()))
            elif node.module and node.module.split(".")[0] == "facemend":
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            if not node.module and node.level:  # "from .. import runtime"
                for alias in node.names:
                    found.append((_room_of((*target, alias.name)), f"from {'.' * node.level} import {alias.name}"))
                continue
            found.append((_room_of(target), f"from {'.' * node.level}{node.module or ''}"))
    return found


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_runs_upwards(path: Path) -> None:
    own = _room_of(path.relative_to(ROOT).parts)
    upward = [text for room, text in _imported_rooms(path) if room > own]
    assert not upward, f"{path.relative_to(ROOT)} ({(*ROOMS, 'top')[own]}) imports a higher room: {upward}"
    if own == ROOMS.index("runtime"):
        other = [text for room, text in _imported_rooms(path) if room != own]
        assert not other, f"runtime must import no other room: {other}"


def test_each_architecture_family_is_one_folder_with_its_registry_entries() -> None:
    assert not (ROOT / "model_loaders" / "architectures").exists()
    seen: set[str] = set()
    for fam in FAMILIES:
        for package in fam.packages:
            folder = ROOT / "archs" / package
            assert (folder / "__init__.py").is_file(), folder
            specs = importlib.import_module(f"facemend.archs.{package}").SPECS
            assert specs and all(s.family == fam.id for s in specs), (package, [s.id for s in specs])
            seen |= {s.id for s in specs}
    assert {"gfpgan_clean", "codeformer", "restoreformer_pp", "vqfr_v2", "refusion_nafnet", "gpen"} <= seen
