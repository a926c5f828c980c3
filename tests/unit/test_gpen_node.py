"""GPEN in the graph: GPEN Restore, Restore Faces with GPEN's framing, wrong-family wiring, model info.

A small GPEN (the ``gpen_64_add`` layout of ``tests/golden/gpen``: 64 px, seeded random weights)
keeps these fast; its numerics against the official code are ``test_gpen_parity.py``'s job.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from facemend.archs import framings
from facemend.archs.families import FAMILIES, family
from facemend.face.alignment import face_template
from facemend.face.models import FaceModels, load_retinaface
from facemend.model_loaders import load_model
from facemend.model_loaders.info import inspect_checkpoint
from facemend.nodes import all_nodes
from facemend.nodes.all_in_one import FaceMendRestoreFaces
from facemend.nodes.detect import FaceMendDetect
from facemend.nodes.gpen import FaceMendGPENRestore
from facemend.nodes.modulate import FaceMendCSSFTModulate
from facemend.nodes.paste import FaceMendPasteBack
from facemend.nodes.restore import FaceMendCodebookRestore
from facemend.runtime import ManagedModel
from fm_testing.images import RETINAFACE_MOBILENET, astronaut_image
from fm_testing.weights import load_layout, seeded_state_dict

CPU = torch.device("cpu")
LAYOUT = "gpen/layout_gpen_64_add.json"


def gpen(seed: int = 5) -> tuple[ManagedModel, list[dict[str, Any]]]:
    """A managed 64 px GPEN whose forward records the controls it received."""
    model = load_model(seeded_state_dict(load_layout(LAYOUT), seed))
    calls: list[dict[str, Any]] = []
    forward = model.spec.forward

    def spy(module: torch.nn.Module, x: torch.Tensor, **controls: Any) -> torch.Tensor:
        calls.append({"n": x.shape[0], **{k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in controls.items()}})
        return forward(module, x, **controls)

    model.spec = replace(model.spec, forward=spy)
    return ManagedModel(model, device=CPU, precision="fp32"), calls


def seen(calls: list[dict[str, Any]], since: int) -> dict[str, Any]:
    """The controls of the calls after ``since`` merged into one batch (chunks are sized by time)."""
    new = calls[since:]
    merged: dict[str, Any] = {"n": sum(c["n"] for c in new)}
    for key in new[0]:
        if key == "n":
            continue
        values = [c[key] for c in new]
        if isinstance(values[0], list):
            merged[key] = [v for part in values for v in part]
        else:
            assert all(v == values[0] for v in values), (key, values)
            merged[key] = values[0]
    return merged


def crops(n: int, size: int = 64) -> torch.Tensor:
    return torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(1))


def test_gpen_is_a_family_with_its_own_node_and_framing() -> None:
    row = family("gpen")
    assert row.node_id == FaceMendGPENRestore.NODE_ID and row.node_name == FaceMendGPENRestore.DISPLAY_NAME
    assert FaceMendGPENRestore in all_nodes()
    managed, _ = gpen()
    model = managed.model
    assert model.arch == "gpen" and model.family == "gpen" and model.input_size == 64
    assert model.framing is framings()["gpen"] and model.framing.fit == "least-squares"
    # GPEN's framing puts the face smaller in the crop than FFHQ's (inner padding 0.25)
    gpen_eyes = face_template(512, framing=model.framing)[1, 0] - face_template(512, framing=model.framing)[0, 0]
    ffhq_eyes = face_template(512)[1, 0] - face_template(512)[0, 0]
    assert 0.5 < float(gpen_eyes / ffhq_eyes) < 0.9


def test_family_table_matches_the_nodes() -> None:
    """Every family's node exists and has the family's widgets; the Restore Faces widget is one of its inputs."""
    nodes = {n.NODE_ID: n for n in all_nodes()}
    restore_faces = {i.id for i in FaceMendRestoreFaces.inputs()}
    from facemend.model_loaders import default_registry

    assert {s.family for s in default_registry().specs} == {f.id for f in FAMILIES}
    for row in FAMILIES:
        node = nodes[row.node_id]
        assert node.DISPLAY_NAME == row.node_name
        assert set(row.widgets) <= {i.id for i in node.inputs()}, row
        assert row.restore_faces_widget is None or row.restore_faces_widget in restore_faces


def test_gpen_restore_passes_strength_and_per_face_strength() -> None:
    managed, calls = gpen()
    x = crops(3)
    (full,) = FaceMendGPENRestore.execute(crops=x, model=managed, strength=1.0).outputs
    assert seen(calls, 0) == {"n": 3, "strength": 1.0, "normalize": True}
    assert full.shape == x.shape and not torch.equal(full, x)
    (none,) = FaceMendGPENRestore.execute(crops=x, model=managed, strength=0.0).outputs
    torch.testing.assert_close(none, x, atol=1e-6, rtol=0)  # strength 0 = the input
    before = len(calls)
    (mixed,) = FaceMendGPENRestore.execute(crops=x, model=managed, per_face_strength="1, 0, 0.5").outputs
    assert seen(calls, before)["strength"] == [1.0, 0.0, 0.5]
    torch.testing.assert_close(mixed[0], full[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1], x[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[2], (x[2] + full[2]) / 2, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"FaceMend GPEN Restore: per_face_strength entry 2 is 1.5"):
        FaceMendGPENRestore.execute(crops=x, model=managed, per_face_strength="1, 1.5, 0")
    with pytest.raises(ValueError, match="strength must be between 0 and 1"):
        FaceMendGPENRestore.execute(crops=x, model=managed, strength=float("nan"))
    (empty,) = FaceMendGPENRestore.execute(crops=crops(0), model=managed).outputs
    assert empty.shape[0] == 0


def test_models_wired_into_the_wrong_node_say_where_they_belong() -> None:
    managed, _ = gpen()
    with pytest.raises(ValueError, match="connect it to 'FaceMend GPEN Restore'"):
        FaceMendCodebookRestore.execute(crops=crops(1), model=managed)
    with pytest.raises(ValueError, match="connect it to 'FaceMend GPEN Restore'"):
        FaceMendCSSFTModulate.execute(crops=crops(1), model=managed)
    gfpgan = ManagedModel(load_model(seeded_state_dict(load_layout("gfpgan/layout_gfpgan_v1_small.json"), 0)), device=CPU)
    with pytest.raises(ValueError, match="connect it to 'FaceMend CS-SFT Modulate'"):
        FaceMendGPENRestore.execute(crops=crops(1), model=gfpgan)


@pytest.mark.skipif(not RETINAFACE_MOBILENET.is_file(), reason="needs ../shared/weights (RetinaFace)")
def test_restore_faces_uses_gpens_framing_and_equals_the_chain() -> None:
    net = load_retinaface(RETINAFACE_MOBILENET, "retinaface_mobile0.25")
    detector = FaceModels(ManagedModel(net, module=net.module, device=CPU, precision="fp32"))
    managed, calls = gpen()
    photo = astronaut_image()
    image, mask = FaceMendRestoreFaces.execute(image=photo, model=managed, detector=detector, strength=0.8,
                                               fidelity=0.3).outputs
    assert calls[-1]["strength"] == 0.8 and "fidelity" not in calls[-1]
    text = FaceMendRestoreFaces.execute(image=photo, model=managed, detector=detector, strength=0.8).ui["text"][0]
    assert "GPEN: strength 0.8" in text and "fidelity does not apply" in text

    crops_, faces, _ = FaceMendDetect.execute(detector=detector, image=photo, framing="gpen", alignment="least-squares",
                                              crop_size=64).outputs
    (restored,) = FaceMendGPENRestore.execute(crops=crops_, model=managed, strength=0.8).outputs
    chain_image, chain_mask = FaceMendPasteBack.execute(image=photo, crops=restored, faces=faces).outputs
    assert torch.equal(image, chain_image) and torch.equal(mask, chain_mask)
    # the FFHQ framing gives other crops: the framing really reached the alignment
    ffhq_crops, _, _ = FaceMendDetect.execute(detector=detector, image=photo, alignment="least-squares",
                                              crop_size=64).outputs
    assert not torch.allclose(ffhq_crops, crops_, atol=1e-2)


def test_model_info_names_the_gpen_node_and_controls(tmp_path) -> None:  # noqa: ANN001
    from safetensors.torch import save_file

    path = tmp_path / "GPEN-tiny.safetensors"
    save_file(seeded_state_dict(load_layout(LAYOUT), 5), str(path))
    info = inspect_checkpoint(path)
    assert (info.arch, info.family, info.node, info.input_size) == ("gpen", "gpen", "FaceMendGPENRestore", 64)
    assert "strength" in info.controls and "fidelity" not in info.controls
