"""``benchmarks/gpu_check.py --device cpu --quick``: the one-shot GPU check runs end to end on the
CPU and writes a table whose rows and numbers make sense (no timing is asserted)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    out = tmp_path_factory.mktemp("gpu_check") / "check.md"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# FaceMend GPU check") and "| section | item | setting | measured | target | status |" in text
    assert text.strip() in res.stdout  # the same table is printed
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("| ") and not line.startswith("| section")]


def _rows(table: list[list[str]], section: str) -> list[list[str]]:
    return [r for r in table if r[0] == section]


def test_no_section_broke(table: list[list[str]]) -> None:
    assert all(len(r) == 6 for r in table)
    assert not [r for r in table if "error:" in r[3]], [r for r in table if "error:" in r[3]]
    assert {r[0] for r in table} >= {"precision", "fp32 retry", "VRAM", "faces/s", "Refusion"}


def test_precision_rows_have_finite_psnr_above_target(table: list[list[str]]) -> None:
    rows = [r for r in _rows(table, "precision") if "vs fp32" in r[2]]
    assert {r[1] for r in rows} >= {"gfpgan_clean", "gfpgan_v1"}
    for r in rows:
        db = float(re.match(r"([\d.]+|inf) dB", r[3]).group(1))
        assert math.isfinite(db) and db >= 35.0 and r[5] == "pass", r
        assert "finite: True" in r[3] and "weights bfloat16" in r[2]  # it really ran on bf16 weights


def test_gpen_is_registered_so_no_row_calls_it_unavailable(table: list[list[str]]) -> None:
    from facemend.model_loaders import default_registry

    assert any(s.id == "gpen" for s in default_registry().specs)
    assert not [r for r in table if r[1] == "gpen" and "not available" in r[3]]


def test_forced_overflow_triggers_the_fp32_retry(table: list[list[str]]) -> None:
    (row,) = _rows(table, "fp32 retry")
    assert row[5] == "pass" and "fp32 reloads 1" in row[3] and "['bfloat16', 'float32']" in row[3]


def test_speed_rows_are_positive_numbers(table: list[list[str]]) -> None:
    rows = [r for r in _rows(table, "faces/s") if r[1] == "gfpgan_clean"]
    assert {r[2] for r in rows} >= {"ours fp32 batch 2", "ours bf16 batch 2"}
    for r in rows:
        assert float(r[3]) > 0 and math.isfinite(float(r[3]))
    refusion = _rows(table, "Refusion")
    assert refusion and all(float(r[3].split()[0]) > 0 for r in refusion)
