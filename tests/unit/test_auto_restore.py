"""Restore each face only as much as it needs: Restore Faces' auto_per_face and leave_alone_below,
Paste Back's per_face_opacity, CS-SFT Modulate's per_face_strength, and the CLI's
--auto-fidelity / --skip-below (the same library call, :func:`facemend.face.restore.restore_faces`).

Real RetinaFace on real photos (the astronaut, and the multi-face photos of ``../shared/photos``
with one face blurred), seeded random weights in official layouts.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from facemend.face.models import FaceModels, load_retinaface
from facemend.face.quality import assess_faces
from facemend.face.restore import RestoreOptions, restore_faces
from facemend.model_loaders import load_model
from facemend.nodes.all_in_one import FaceMendRestoreFaces
from facemend.nodes.detect import FaceMendDetect
from facemend.nodes.images import rgb_view
from facemend.nodes.modulate import FaceMendCSSFTModulate
from facemend.nodes.paste import FaceMendPasteBack
from facemend.runtime import ManagedModel
from fm_testing.images import RETINAFACE_MOBILENET, astronaut_image
from fm_testing.weights import load_layout, seeded_state_dict

pytestmark = pytest.mark.skipif(not RETINAFACE_MOBILENET.is_file(), reason="needs ../shared/weights (RetinaFace)")
CPU = torch.device("cpu")
PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "photos"


class Spy:
    """Records the controls and batch size each forward received (the model still runs)."""

    def __init__(self, managed: ManagedModel) -> None:
        self.calls: list[dict[str, Any]] = []
        model = managed.model
        forward = model.spec.forward

        def spy(module: torch.nn.Module, x: torch.Tensor, **controls: Any) -> torch.Tensor:
            self.calls.append({"n": x.shape[0], **{k: (v.tolist() if isinstance(v, torch.Tensor) else v)
                                                    for k, v in controls.items()}})
            return forward(module, x, **controls)

        model.spec = replace(model.spec, forward=spy)

    def faces(self) -> int:
        return sum(c["n"] for c in self.calls)

    def values(self, name: str) -> list[float]:
        out: list[float] = []
        for c in self.calls:
            v = c[name]
            out += v if isinstance(v, list) else [v] * c["n"]
        return out


@pytest.fixture(scope="module")
def detector() -> FaceModels:
    net = load_retinaface(RETINAFACE_MOBILENET, "retinaface_mobile0.25")
    return FaceModels(ManagedModel(net, module=net.module, device=CPU, precision="fp32"))


def gfpgan() -> tuple[ManagedModel, Spy]:
    managed = ManagedModel(load_model(seeded_state_dict(load_layout("gfpgan/layout_gfpgan_v1_small.json"), 0)),
                           device=CPU, precision="fp32")
    return managed, Spy(managed)


def group_photo_with_one_face_blurred(detector: FaceModels) -> tuple[torch.Tensor, int]:
    """A real multi-face photo (IMAGE, (1, H, W, 3)) in which the largest face is blurred hard."""
    path = next(p for p in sorted(PHOTOS.glob("*")) if p.suffix.lower() in (".png", ".jpg"))
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    image = torch.from_numpy(rgb.astype(np.float32) / 255)[None]
    crops, faces, _ = FaceMendDetect.execute(detector=detector, image=image).outputs
    assert len(faces) >= 2, "the group photo has several faces"
    x0, y0, x1, y1 = (int(v) for v in faces.boxes[0].tolist())
    pad = (x1 - x0) // 2
    ys, xs = slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad)
    blurred = rgb.copy()
    blurred[ys, xs] = cv2.GaussianBlur(rgb[ys, xs], (0, 0), 6)
    return torch.from_numpy(blurred.astype(np.float32) / 255)[None], len(faces)


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="needs ../shared/photos")
def test_clean_faces_are_left_alone_bit_for_bit_and_not_restored(detector: FaceModels) -> None:
    image, n = group_photo_with_one_face_blurred(detector)
    managed, spy = gfpgan()
    frames = rgb_view(image)
    crops, faces, _ = FaceMendDetect.execute(detector=detector, image=image, crop_size=128).outputs
    scores = assess_faces(rgb_view(crops), faces).score
    threshold = float((scores.max() + scores.min()) / 2)
    assert int(scores.argmax()) == 0 and float(scores[0]) > threshold, scores  # the blurred face is the worst

    out, mask = FaceMendRestoreFaces.execute(image=image, model=managed, detector=detector,
                                             leave_alone_below=threshold).outputs
    left_alone = int((scores < threshold).sum())
    assert 0 < left_alone < n and spy.faces() == n - left_alone, "faces left alone are not even restored"
    # where only a face that was left alone would have been pasted, the output is the input bit for bit
    full, full_mask = FaceMendRestoreFaces.execute(image=image, model=managed, detector=detector).outputs
    untouched = (mask == 0) & (full_mask > 0)
    assert bool(untouched.any()) and torch.equal(out[untouched], image[untouched])
    assert torch.equal(out[mask == 0], image[mask == 0])
    # the restored face equals the full run there
    restored_here = mask > 0.99
    torch.testing.assert_close(out[restored_here], full[restored_here], atol=1e-5, rtol=0)
    text = FaceMendRestoreFaces.execute(image=image, model=managed, detector=detector,
                                        leave_alone_below=threshold).ui["text"][0]
    assert f"{left_alone} clean face(s) left alone" in text, text
    del frames


def test_auto_per_face_gives_each_face_its_own_strength(detector: FaceModels) -> None:
    managed, spy = gfpgan()
    photo = astronaut_image()
    crops, faces, _ = FaceMendDetect.execute(detector=detector, image=photo, crop_size=512).outputs
    score = float(assess_faces(rgb_view(crops), faces).score[0])
    FaceMendRestoreFaces.execute(image=photo, model=managed, detector=detector, strength=0.8, auto_per_face=True)
    # GFP-GAN's clean end is 1.5 (family table): strength = 1.5 + (0.8 - 1.5) * score
    assert spy.values("strength") == pytest.approx([1.5 + (0.8 - 1.5) * score], abs=1e-6)
    FaceMendRestoreFaces.execute(image=photo, model=managed, detector=detector, strength=0.8)
    assert spy.calls[-1]["strength"] == 0.8, "without auto_per_face the widget's value is used"


def test_restore_faces_is_the_library_pass(detector: FaceModels) -> None:
    """The node returns exactly what face.restore.restore_faces gives (the CLI calls the same)."""
    managed, _ = gfpgan()
    photo = astronaut_image()
    node_image, node_mask = FaceMendRestoreFaces.execute(image=photo, model=managed, detector=detector, strength=1.2,
                                                         auto_per_face=True, opacity=0.9).outputs
    result = restore_faces(detector, managed, rgb_view(photo), RestoreOptions(fidelity=0.5, strength=1.2, auto=True,
                                                                              opacity=0.9))
    assert torch.equal(node_image, result.image.permute(0, 2, 3, 1)) and torch.equal(node_mask, result.mask)


def test_per_face_opacity_and_per_face_strength_in_the_modular_chain(detector: FaceModels) -> None:
    managed, spy = gfpgan()
    photo = astronaut_image()
    crops, faces, _ = FaceMendDetect.execute(detector=detector, image=photo, crop_size=128).outputs
    (restored,) = FaceMendCSSFTModulate.execute(crops=crops, model=managed, per_face_strength="0.7").outputs
    assert spy.calls[-1]["strength"] == 0.7
    kept, _ = FaceMendPasteBack.execute(image=photo, crops=restored, faces=faces, per_face_opacity="0").outputs
    assert torch.equal(kept, photo), "opacity 0 leaves the face untouched, bit for bit"
    half, mask = FaceMendPasteBack.execute(image=photo, crops=restored, faces=faces, per_face_opacity="0.5").outputs
    assert float(mask.max()) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="per_face_opacity has 2 values for 1 faces"):
        FaceMendPasteBack.execute(image=photo, crops=restored, faces=faces, per_face_opacity="0.5, 1")
    with pytest.raises(ValueError, match="per_face_strength entry 1 is 4"):
        FaceMendCSSFTModulate.execute(crops=crops, model=managed, per_face_strength="4")


def test_cli_auto_fidelity_and_skip_below(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    """``facemend restore --auto-fidelity --skip-below`` runs the same pass: a face below the
    threshold is written back unchanged."""
    import shutil

    from facemend.cli import main
    from fm_testing.checkpoints import wrap

    models = tmp_path / "models"
    (models / "facedetection").mkdir(parents=True)
    shutil.copyfile(RETINAFACE_MOBILENET, models / "facedetection" / "detection_mobilenet0.25_Final.pth")
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(models))
    ckpt = tmp_path / "gfpgan_small.pth"
    torch.save(wrap(seeded_state_dict(load_layout("gfpgan/layout_gfpgan_v1_small.json"), 0), "params_ema"), ckpt)
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), cv2.cvtColor((astronaut_image()[0].numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))
    args = ["restore", str(src), "-o", str(tmp_path / "out"), "--model", str(ckpt), "--detector", "retinaface_mobile0.25"]
    assert main([*args, "--auto-fidelity", "--skip-below", "1.0"]) == 0
    assert "1 clean face(s) left alone" in capsys.readouterr().out
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "in.png")), cv2.imread(str(src)))
    assert main([*args, "--auto-fidelity"]) == 0
    assert "degradation" in capsys.readouterr().out
    assert not np.array_equal(cv2.imread(str(tmp_path / "out" / "in.png")), cv2.imread(str(src)))
