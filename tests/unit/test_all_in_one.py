"""FaceMend Restore Faces (the one-node restore), without ComfyUI.

Real architectures with seeded random weights in their official layouts (``tests/golden``), the
real RetinaFace weights (``../shared/weights``) and the astronaut photo. What is checked:

- with the same settings the node gives exactly the pixels and mask of the modular chain
  Detect -> Codebook Restore / CS-SFT Modulate -> Paste Back (it reuses that code, nothing re-implemented);
- the control that drives the loaded model reaches it (fidelity for CodeFormer, strength for
  GFPGAN) and the other one does not, with a log line saying so;
- which faces, mask, colour fix and opacity are passed through;
- an image without a face passes through unchanged with an empty mask, without running the model;
- a refusion model, a non-FaceMend model, a missing parser give clear errors.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
import torch

from facemend.face.models import FaceModels, load_retinaface
from facemend.model_loaders import load_model
from facemend.model_loaders.model import RestorationModel
from facemend.nodes import all_nodes
from facemend.nodes.all_in_one import FaceMendRestoreFaces
from facemend.nodes.detect import FaceMendDetect
from facemend.nodes.modulate import FaceMendCSSFTModulate
from facemend.nodes.paste import FaceMendPasteBack
from facemend.nodes.restore import FaceMendCodebookRestore
from facemend.runtime import ManagedModel
from fm_testing.images import RETINAFACE_MOBILENET, astronaut_image
from fm_testing.weights import load_layout, seeded_state_dict

pytestmark = pytest.mark.skipif(not RETINAFACE_MOBILENET.is_file(), reason="needs ../shared/weights (RetinaFace)")

CPU = torch.device("cpu")


class Spy:
    """Records the controls each forward of a model received (the model still runs)."""

    def __init__(self, model: RestorationModel) -> None:
        self.calls: list[dict[str, Any]] = []
        forward = model.spec.forward

        def spy(module: torch.nn.Module, x: torch.Tensor, **controls: Any) -> torch.Tensor:
            self.calls.append({"n": x.shape[0], **controls})
            return forward(module, x, **controls)

        model.spec = replace(model.spec, forward=spy)


def managed(layout: str, seed: int = 0) -> tuple[ManagedModel, Spy]:
    model = load_model(seeded_state_dict(load_layout(layout), seed))
    return ManagedModel(model, device=CPU, precision="fp32"), Spy(model)


@pytest.fixture(scope="module")
def detector() -> FaceModels:
    net = load_retinaface(RETINAFACE_MOBILENET, "retinaface_mobile0.25")
    return FaceModels(ManagedModel(net, module=net.module, device=CPU, precision="fp32"))


@pytest.fixture(scope="module")
def codeformer() -> tuple[ManagedModel, Spy]:
    return managed("codebook/codeformer_layout.json")


@pytest.fixture(scope="module")
def gfpgan() -> tuple[ManagedModel, Spy]:
    return managed("gfpgan/layout_gfpgan_v1_small.json")


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return astronaut_image()


def restore(image: torch.Tensor, model: ManagedModel, detector: FaceModels, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    result = FaceMendRestoreFaces.execute(image=image, model=model, detector=detector, **kw)
    image_out, mask = result.outputs
    return image_out, mask


def test_schema_explains_which_control_applies_to_which_model() -> None:
    assert FaceMendRestoreFaces in all_nodes()
    inputs = {i.id: i for i in FaceMendRestoreFaces.inputs()}
    assert [i for i in inputs if inputs[i].type not in ("FLOAT", "COMBO", "STRING", "BOOLEAN")] == ["image", "model", "detector"]
    assert "Only for CodeFormer and VQFR v2" in inputs["fidelity"].tooltip
    assert "Only for GFPGAN and GPEN" in inputs["strength"].tooltip
    assert [o.type for o in FaceMendRestoreFaces.OUTPUTS] == ["IMAGE", "MASK"]
    assert FaceMendRestoreFaces.CATEGORY.startswith("FaceMend/")


def test_codebook_model_matches_the_modular_chain_and_gets_fidelity(
    photo: torch.Tensor, codeformer: tuple[ManagedModel, Spy], detector: FaceModels, caplog: pytest.LogCaptureFixture
) -> None:
    model, spy = codeformer
    before = photo.clone()
    with caplog.at_level(logging.INFO, logger="facemend"):
        image, mask = restore(photo, model, detector, fidelity=0.3, strength=1.7, color_correction="adain", opacity=0.8)
    assert spy.calls[-1] == {"n": 1, "fidelity": 0.3}, "fidelity drives CodeFormer; strength never reaches it"
    assert "strength does not apply to CodeFormer" in caplog.text
    assert torch.equal(photo, before), "the input IMAGE is never modified"

    # the chain, node by node, with the same settings
    crops, faces, _ = FaceMendDetect.execute(detector=detector, image=photo).outputs
    (restored,) = FaceMendCodebookRestore.execute(crops=crops, model=model, fidelity=0.3).outputs
    chain_image, chain_mask = FaceMendPasteBack.execute(
        image=photo, crops=restored, faces=faces, color_correction="adain", opacity=0.8
    ).outputs
    assert spy.calls[-1] == {"n": 1, "fidelity": 0.3}
    assert image.shape == photo.shape and mask.shape == photo.shape[:3]
    assert torch.equal(image, chain_image)
    assert torch.equal(mask, chain_mask)
    # the face was restored (and only where the mask is)
    assert 0.0 < float(mask.mean()) < 0.5 and float(mask.max()) == pytest.approx(0.8, abs=1e-3)
    changed = (image - photo).abs().amax(-1)
    assert float(changed[mask > 0.05].mean()) > 0.02
    assert torch.equal(image[mask == 0], photo[mask == 0])


def test_gfpgan_gets_strength_and_not_fidelity(
    photo: torch.Tensor, gfpgan: tuple[ManagedModel, Spy], detector: FaceModels, caplog: pytest.LogCaptureFixture
) -> None:
    model, spy = gfpgan
    with caplog.at_level(logging.INFO, logger="facemend"):
        a, mask = restore(photo, model, detector, strength=1.0, fidelity=0.9, mask="box", color_correction="wavelet")
    assert spy.calls[-1]["strength"] == 1.0 and "fidelity" not in spy.calls[-1]
    assert "fidelity does not apply" in caplog.text
    # the chain with CS-SFT Modulate gives the same pixels
    crops, faces, _ = FaceMendDetect.execute(detector=detector, image=photo).outputs
    (restored,) = FaceMendCSSFTModulate.execute(crops=crops, model=model, strength=1.0).outputs
    chain = FaceMendPasteBack.execute(image=photo, crops=restored, faces=faces, color_correction="wavelet").outputs
    assert spy.calls[-2] == spy.calls[-1]
    assert torch.equal(a, chain[0]) and torch.equal(mask, chain[1])
    b, _ = restore(photo, model, detector, strength=0.25, fidelity=0.1)
    assert spy.calls[-1]["strength"] == 0.25
    # Random weights give a nearly flat face (std ~0.02), so the effect is small, but far above
    # float error (the same call twice is bit-identical).
    assert float((a - b).abs()[mask > 0.5].mean()) > 5e-6, "strength changes the restored face"
    assert torch.equal(a[mask == 0], photo[mask == 0])


def test_face_selection_and_parsing_mask_options(
    photo: torch.Tensor, gfpgan: tuple[ManagedModel, Spy], detector: FaceModels
) -> None:
    model, spy = gfpgan
    calls = len(spy.calls)
    # the astronaut has one face: index 1 selects nothing, so nothing runs and nothing changes
    image, mask = restore(photo, model, detector, select="indices", indices="1")
    assert len(spy.calls) == calls
    assert torch.equal(image, photo) and not mask.any()
    with pytest.raises(ValueError, match="needs a face parser"):
        restore(photo, model, detector, mask="parsing")


def test_image_without_a_face_passes_through_with_an_empty_mask(
    gfpgan: tuple[ManagedModel, Spy], detector: FaceModels
) -> None:
    model, spy = gfpgan
    calls = len(spy.calls)
    blank = torch.full((2, 96, 128, 3), 0.4)
    blank[1, :, :64] = 0.9
    image, mask = restore(blank, model, detector)
    assert len(spy.calls) == calls, "no face: the restorer does not run"
    assert torch.equal(image, blank)
    assert mask.shape == (2, 96, 128) and mask.dtype == torch.float32 and not mask.any()
    rgba = torch.cat([blank, torch.ones(2, 96, 128, 1)], -1)
    image, _ = restore(rgba, model, detector)
    assert image.shape == (2, 96, 128, 3) and torch.equal(image, blank)


def test_a_refusion_model_or_a_foreign_value_is_refused_clearly(
    detector: FaceModels, photo: torch.Tensor, gfpgan: tuple[ManagedModel, Spy]
) -> None:
    refiner = ManagedModel(load_model(seeded_state_dict(load_layout("refusion/layout_autoencoder.json"), 0)), device=CPU)
    with pytest.raises(ValueError, match="diffusion refiner.*Diffusion Refine"):
        restore(photo, refiner, detector)
    with pytest.raises(ValueError, match="not a FaceMend model"):
        restore(photo, object(), detector)
    with pytest.raises(ValueError, match="Load Face Detector"):
        restore(photo, gfpgan[0], object())
