"""A frame without faces never breaks the graph (nodes called directly; the live tier runs core nodes too).

Detect keeps no face -> its crops output is one flat grey placeholder image (core nodes cannot take
an empty batch), the faces bundle holds no face, the restore nodes pass the placeholder through
without running their model, and Paste Back returns the image unchanged with an empty mask.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facemend.face.models import FaceModels, load_retinaface
from facemend.model_loaders import ArchSpec, RestorationModel
from facemend.nodes.detect import FaceMendDetect
from facemend.nodes.gpen import FaceMendGPENRestore
from facemend.nodes.images import is_placeholder
from facemend.nodes.modulate import FaceMendCSSFTModulate
from facemend.nodes.paste import FaceMendPasteBack
from facemend.nodes.restore import FaceMendCodebookRestore
from facemend.runtime import ManagedModel
from fm_testing.images import RETINAFACE_MOBILENET, astronaut_image

pytestmark = pytest.mark.skipif(not RETINAFACE_MOBILENET.is_file(), reason="needs ../shared/weights (RetinaFace)")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def detector() -> FaceModels:
    net = load_retinaface(RETINAFACE_MOBILENET, "retinaface_mobile0.25")
    return FaceModels(ManagedModel(net, module=net.module, device=CPU, precision="fp32"))


def no_face_image() -> torch.Tensor:
    """A 480x640 IMAGE of gradients and boxes: a real picture, with no face in it."""
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    img = np.stack([x / 640, y / 480, 0.5 + 0.3 * np.sin(x / 40) * np.cos(y / 50)], axis=-1)
    img[100:200, 100:300] = (0.9, 0.2, 0.1)
    return torch.from_numpy(img.clip(0, 1))[None]


def exploding(family: str, controls: tuple[str, ...]) -> ManagedModel:
    """A model of ``family`` whose forward fails the test: it must never run on the placeholder."""
    def forward(module: torch.nn.Module, x: torch.Tensor, **_: object) -> torch.Tensor:
        raise AssertionError("the model ran on Detect's no-face placeholder")

    spec = ArchSpec(id=f"x_{family}", family=family, display_name="X", required_keys=("w",),
                    read_hparams=lambda sd: {}, build=torch.nn.Identity, forward=forward, licence="test",
                    controls=controls)
    return ManagedModel(RestorationModel(spec=spec, module=torch.nn.Identity(), hparams={}), device=CPU)


def test_no_face_gives_a_placeholder_that_every_stage_passes_through(detector: FaceModels) -> None:
    image = no_face_image()
    before = image.clone()
    result = FaceMendDetect.execute(detector=detector, image=image, crop_size=256)
    crops, faces, preview = result.outputs
    assert len(faces) == 0
    assert crops.shape == (1, 256, 256, 3) and is_placeholder(crops)
    assert "no face found: image passed through" in result.ui["text"][0]
    assert preview.shape[0] == 1

    for node, family, controls in ((FaceMendCodebookRestore, "codebook", ("fidelity",)),
                                   (FaceMendCSSFTModulate, "gfpgan", ("strength",)),
                                   (FaceMendGPENRestore, "gpen", ("strength",))):
        out = node.execute(crops=crops, model=exploding(family, controls))
        assert out.outputs[0] is crops and "nothing restored" in out.ui["text"][0]
    pasted, mask = FaceMendPasteBack.execute(image=image, crops=crops, faces=faces).outputs
    assert torch.equal(pasted, image) and float(mask.abs().max()) == 0.0
    assert torch.equal(image, before), "the input IMAGE is never modified"


def test_a_missing_face_index_is_named_with_the_valid_ones(detector: FaceModels) -> None:
    photo = astronaut_image()
    result = FaceMendDetect.execute(detector=detector, image=photo, select="indices", indices="5", crop_size=128)
    text = result.ui["text"][0]
    assert text.startswith("1 face(s) found; 0 kept; index 5 does not exist; valid: 0"), text
    assert is_placeholder(result.outputs[0])
    kept = FaceMendDetect.execute(detector=detector, image=photo, select="indices", indices="0", crop_size=128)
    assert kept.ui["text"][0] == "1 face(s) found; 1 kept" and not is_placeholder(kept.outputs[0])


def test_placeholder_test_is_strict() -> None:
    """A real crop, a batch of two, or a flat image of another colour is not the placeholder."""
    assert not is_placeholder(astronaut_image()[:, :256, :256])
    assert not is_placeholder(torch.full((2, 64, 64, 3), 0.5))
    assert not is_placeholder(torch.full((1, 64, 64, 3), 0.2))
    assert is_placeholder(torch.full((1, 64, 64, 3), 0.5))
