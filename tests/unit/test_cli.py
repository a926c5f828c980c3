"""The command line: help, model listing, inspect (real files written by the test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facemend.cli import main


def test_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "facemend", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("models", "inspect", "download", "restore"):
        assert cmd in out
    out = subprocess.run([sys.executable, "-m", "facemend", "restore", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--model" in out and "--fidelity" in out


def test_models_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(tmp_path))
    (tmp_path / "facerestore_models").mkdir()
    torch.save({"w": torch.zeros(1)}, tmp_path / "facerestore_models" / "codeformer.pth")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "present" in lines["codeformer.pth"] and str(tmp_path) in lines["codeformer.pth"]
    assert "downloadable" in lines["GFPGANv1.4.pth"]
    assert "manual download" in lines["RestoreFormer++.ckpt"]


def test_inspect_reports_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "sd15.safetensors"
    from safetensors.torch import save_file

    save_file({"model.diffusion_model.out.2.weight": torch.zeros(4, 320, 3, 3)}, str(p))
    assert main(["inspect", str(p)]) == 1
    err = capsys.readouterr().err
    assert "sd15.safetensors" in err and "Stable Diffusion" in err
    assert main(["inspect", str(tmp_path / "missing.pth")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_download_unknown_name(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(tmp_path))
    assert main(["download", "not-a-model.pth"]) == 1
    err = capsys.readouterr().err
    assert "not an official file FaceMend can download" in err and str(tmp_path / "facerestore_models" / "not-a-model.pth") in err
    assert main(["download", "RestoreFormer++.ckpt"]) == 1
    err = capsys.readouterr().err
    assert "by hand from https://drive.google.com/" in err
    assert f"into {tmp_path / 'facerestore_models' / 'RestoreFormer++.ckpt'}" in err


def test_inspect_recognises_the_real_facexlib_detector_file(capsys: pytest.CaptureFixture[str]) -> None:
    from fm_testing.images import WEIGHTS_DIR

    real = WEIGHTS_DIR / "facexlib" / "detection_mobilenet0.25_Final.pth"
    if not real.is_file():
        pytest.skip(f"the official facexlib detector file is not at {real}")
    assert main(["inspect", str(real)]) == 0
    captured = capsys.readouterr()
    assert "unsupported" not in captured.err and "not loadable" not in captured.err
    assert captured.out.startswith(f"{real}: RetinaFace MobileNet-0.25 face detector"), captured.out
    assert "FaceMend Load Face Detector" in captured.out and "detector: retinaface_mobile0.25" in captured.out
    assert "detection_mobilenet0.25_Final.pth" in captured.out


@pytest.mark.parametrize(("choice", "official"), [
    ("retinaface_resnet50", "detection_Resnet50_Final.pth"),
    ("bisenet", "parsing_bisenet.pth"),
    ("parsenet", "parsing_parsenet.pth"),
])
def test_inspect_recognises_facexlib_files_by_their_tensors(choice: str, official: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from facemend.face.models import build_parser, build_retinaface

    torch.manual_seed(0)
    net = build_retinaface(choice) if choice.startswith("retinaface") else build_parser(choice)
    p = tmp_path / "renamed_download.pth"  # not the official name: recognised from the tensors
    torch.save(net.state_dict(), p)
    assert main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    widget = "detector" if choice.startswith("retinaface") else "parser"
    assert f"'FaceMend Load Face Detector' ({widget}: {choice})" in out and official in out, out
    # one tensor fewer: not that network any more
    sd = net.state_dict()
    sd.pop(next(iter(sd)))
    torch.save(sd, p)
    assert main(["inspect", str(p)]) == 1
    assert "not loadable" in capsys.readouterr().err
