"""The Codebook Restore node, called through ``execute`` (no ComfyUI needed).

Most tests wire in small stand-in models (an :class:`ArchSpec` of the ``codebook`` family whose
forward records the controls it receives) so the node's own logic is checked quickly; one test runs
a real CodeFormer (seeded random weights) end to end.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from facemend import runtime
from facemend.model_loaders import ArchSpec, RestorationModel, load_model
from facemend.nodes.restore import NODES, FaceMendCodebookRestore, parse_fidelity_list
from facemend.runtime import ManagedModel

Node = FaceMendCodebookRestore


class Recorder(nn.Module):
    """A stand-in network: output = 1 - input; remembers every call's controls."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[dict[str, Any]] = []


def make_model(family: str = "codebook", controls: tuple[str, ...] = ("fidelity",), fixed: dict[str, float] | None = None) -> ManagedModel:
    def forward(module: nn.Module, x: torch.Tensor, **kw: Any) -> torch.Tensor:
        assert x.shape[-2:] == (512, 512)
        module.calls.append({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()} | {"n": x.shape[0]})
        return 1 - x * module.scale

    spec = ArchSpec(
        id=f"fake_{family}", family=family, display_name=f"Fake {family}", required_keys=("scale",),
        read_hparams=lambda sd: {}, build=Recorder, forward=forward, licence="test", controls=controls,
        fixed_controls=(lambda hp: fixed) if fixed is not None else None,
    )
    hparams = {"variant": "colorization"} if fixed is not None else {}
    return ManagedModel(RestorationModel(spec=spec, module=Recorder(), hparams=hparams), precision="fp32")


def crops(n: int = 2, size: int = 512) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, size, size, 3, generator=g)


def fidelity_values(managed: ManagedModel) -> list[float]:
    """Every fidelity value the model saw, one per crop, in batch order."""
    out: list[float] = []
    for call in managed.module.calls:
        v = call["fidelity"]
        out += v.tolist() if isinstance(v, torch.Tensor) else [v] * call["n"]
    return out


def test_node_is_registered_with_tooltips() -> None:
    assert Node in NODES and Node.NODE_ID == "FaceMendCodebookRestore" and Node.CATEGORY.startswith("FaceMend/")
    assert Node.DESCRIPTION and all(i.tooltip for i in Node.inputs())
    assert [i.id for i in Node.inputs()] == ["crops", "model", "fidelity", "per_face_fidelity"]


def test_restores_and_passes_fidelity() -> None:
    m = make_model()
    x = crops(2)
    before = x.clone()
    result = Node.execute(crops=x, model=m, fidelity=0.3)
    (out,) = result.outputs
    assert out.shape == x.shape and torch.allclose(out, 1 - x, atol=1e-6)
    assert torch.equal(x, before)  # input untouched
    assert fidelity_values(m) == [0.3, 0.3]
    assert "0.3" in result.ui["text"][0]


def test_per_face_fidelity_list_reaches_each_face() -> None:
    m = make_model()
    Node.execute(crops=crops(3), model=m, fidelity=0.5, per_face_fidelity="0.1, 0.7;1")
    assert fidelity_values(m) == pytest.approx([0.1, 0.7, 1.0])
    m = make_model()
    Node.execute(crops=crops(2), model=m, fidelity=0.5, per_face_fidelity=" 0.25 ")  # one value for all
    assert fidelity_values(m) == [0.25, 0.25]


def test_fidelity_is_not_passed_to_models_without_it(caplog: pytest.LogCaptureFixture) -> None:
    m = make_model(controls=())
    with caplog.at_level("INFO", logger="facemend"):
        result = Node.execute(crops=crops(1), model=m, fidelity=0.8)
    assert m.module.calls == [{"n": 1}]
    assert "does not apply" in caplog.text and "does not apply" in result.ui["text"][0]


def test_fixed_fidelity_variants_ignore_the_widget(caplog: pytest.LogCaptureFixture) -> None:
    m = make_model(fixed={"fidelity": 0.0})
    with caplog.at_level("INFO", logger="facemend"):
        Node.execute(crops=crops(1), model=m, fidelity=0.8, per_face_fidelity="0.4")
    assert m.module.calls == [{"n": 1}]
    assert "fixed at 0" in caplog.text


def test_other_crop_sizes_are_resized_in_and_out() -> None:
    (out,) = Node.execute(crops=crops(1, 128), model=make_model(), fidelity=0.5).outputs
    assert out.shape == (1, 128, 128, 3)


def test_zero_crops_pass_through() -> None:
    empty = torch.zeros(0, 512, 512, 3)
    (out,) = Node.execute(crops=empty, model=make_model(), fidelity=0.5).outputs
    assert out is empty


def test_gfpgan_model_points_to_cssft_node() -> None:
    with pytest.raises(ValueError, match="CS-SFT Modulate"):
        Node.execute(crops=crops(1), model=make_model(family="gfpgan"), fidelity=0.5)


def test_not_a_model_is_refused() -> None:
    with pytest.raises(ValueError, match="not a FaceMend model"):
        Node.execute(crops=crops(1), model="codeformer.pth", fidelity=0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crops": torch.rand(1, 512, 384, 3)}, "square"),
        ({"fidelity": 1.5}, "between 0 and 1"),
        ({"fidelity": float("nan")}, "between 0 and 1"),
        ({"per_face_fidelity": "0.3, abc"}, "entry 2 .*'abc'.* not a number"),
        ({"per_face_fidelity": "0.3, 1.2"}, "entry 2 is 1.2"),
        ({"per_face_fidelity": "0.3, 0.4, 0.5"}, "3 values for 2 crops"),
    ],
)
def test_bad_inputs_give_clear_errors(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"crops": crops(2), "model": make_model(), "fidelity": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        Node.execute(**args)


def test_parse_fidelity_list() -> None:
    assert parse_fidelity_list("") is None and parse_fidelity_list("   ") is None and parse_fidelity_list(None) is None
    assert parse_fidelity_list("0,0.5\n1") == [0.0, 0.5, 1.0]


def test_progress_and_interruption(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []

    class Recording(runtime.Progress):
        def update(self, n: int = 1) -> None:
            super().update(n)
            seen.append((self.done, self.total))

    import facemend.nodes.restore as restore_node

    monkeypatch.setattr(restore_node, "Progress", Recording)
    Node.execute(crops=crops(3), model=make_model(), fidelity=0.5)
    assert seen and seen[-1] == (3, 3)

    runtime.request_interrupt()
    with pytest.raises(runtime.Interrupted):
        Node.execute(crops=crops(1), model=make_model(), fidelity=0.5)


@torch.inference_mode()
def test_real_codeformer_through_the_node(face_crop: torch.Tensor) -> None:
    from fm_testing.weights import load_layout, seeded_state_dict

    model = load_model(seeded_state_dict(load_layout("codebook/codeformer_layout.json"), 1))
    managed = ManagedModel(model, precision="fp32")
    image = face_crop.permute(0, 2, 3, 1)
    before = image.clone()
    (out,) = Node.execute(crops=image, model=managed, fidelity=0.5, per_face_fidelity="1").outputs
    assert out.shape == image.shape and out.dtype == torch.float32 and torch.equal(image, before)
    direct = model(face_crop, fidelity=1.0).permute(0, 2, 3, 1)
    assert (out - direct).abs().max().item() < 1e-6
    assert (out - image).abs().mean().item() > 1e-2  # it did restore something
