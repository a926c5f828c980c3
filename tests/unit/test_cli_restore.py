"""``facemend restore`` end to end: real detector weights, a random-weight CodeFormer in the
official layout, the astronaut photo. Pixels far from the face are untouched; the face changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facemend.cli import main
from fm_testing.images import RETINAFACE_MOBILENET, astronaut_rgb
from fm_testing.weights import load_layout, seeded_state_dict


@pytest.fixture()
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not RETINAFACE_MOBILENET.is_file():
        pytest.skip(f"shared detector weights not found at {RETINAFACE_MOBILENET}")
    base = tmp_path / "models"
    (base / "facedetection").mkdir(parents=True)
    (base / "facerestore_models").mkdir()
    shutil.copy(RETINAFACE_MOBILENET, base / "facedetection" / "detection_mobilenet0.25_Final.pth")
    sd = seeded_state_dict(load_layout("codebook/codeformer_layout.json"), seed=7)
    torch.save({"params_ema": sd}, base / "facerestore_models" / "codeformer.pth")
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(base))
    return base


def test_restore_changes_only_the_face(models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "astronaut.png"
    rgb = astronaut_rgb()
    cv2.imwrite(str(src), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((64, 96, 3), 128, np.uint8))
    out_dir = tmp_path / "out"
    status = main(["restore", str(src), str(blank), "-o", str(out_dir), "--model", "codeformer.pth",
                   "--detector", "retinaface_mobile0.25", "--fidelity", "0.7", "--precision", "fp32"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "CodeFormer" in printed and "1 face(s)" in printed and "0 face(s)" in printed
    out = cv2.cvtColor(cv2.imread(str(out_dir / "astronaut.png")), cv2.COLOR_BGR2RGB)
    assert out.shape == rgb.shape
    diff = np.abs(out.astype(int) - rgb.astype(int)).max(axis=2)
    assert diff[300:, :].max() == 0 and diff[:, 350:].max() == 0  # far from the face: untouched
    assert diff[90:160, 195:255].mean() > 5  # the face (box ~178,60..273,180) was replaced
    assert np.array_equal(cv2.imread(str(out_dir / "blank.png")), np.full((64, 96, 3), 128, np.uint8))


def test_restore_reports_bad_model(models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path), "--model", str(bad),
                 "--detector", "retinaface_mobile0.25"]) == 1
    assert "bad.pth" in capsys.readouterr().err


def test_restore_lists_every_missing_file_before_starting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Restorer and detector are both checked first; one error names both, with folders and URLs."""
    from facemend.model_loaders import download as download_mod
    from facemend.model_loaders.catalog import find_known

    base = tmp_path / "models"
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(base))
    fetched: list[str] = []
    monkeypatch.setattr(download_mod, "_fetch", lambda url, part, timeout: fetched.append(url) or pytest.fail("downloaded"))
    status = main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "--model", "RestoreFormer++.ckpt",
                   "--detector", "retinaface_resnet50"])
    assert status == 1 and fetched == []  # a manual file is missing: nothing is downloaded
    captured = capsys.readouterr()
    assert "model:" not in captured.out  # nothing was loaded
    err = captured.err
    assert err.startswith("error: 2 model files are missing:"), err
    assert f"into {base / 'facerestore_models' / 'RestoreFormer++.ckpt'}" in err
    assert f"into {base / 'facedetection' / 'detection_Resnet50_Final.pth'}" in err
    assert find_known("detection_Resnet50_Final.pth").url in err


def test_restore_tries_both_downloads_and_reports_both_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from facemend.model_loaders import download as download_mod
    from facemend.model_loaders.catalog import find_known

    base = tmp_path / "models"
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(base))
    # the official URLs, pointed at a port where nothing listens (no internet in tests)
    offline = {n: replace(find_known(n), url=f"http://127.0.0.1:9/{n}") for n in ("GFPGANv1.4.pth", "detection_mobilenet0.25_Final.pth")}
    monkeypatch.setattr(download_mod, "find_known", offline.get)
    status = main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "--model", "GFPGANv1.4.pth",
                   "--detector", "retinaface_mobile0.25"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 model files are missing:"), err
    assert err.count("could not download") == 2
    assert f"download http://127.0.0.1:9/GFPGANv1.4.pth by hand into {base / 'facerestore_models' / 'GFPGANv1.4.pth'}" in err
    assert (f"download http://127.0.0.1:9/detection_mobilenet0.25_Final.pth by hand into "
            f"{base / 'facedetection' / 'detection_mobilenet0.25_Final.pth'}") in err
