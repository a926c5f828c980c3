"""FaceMendCSSFTModulate: the node's execute() without ComfyUI, with a small GFP-GAN model.

The model is a GFPGANv1Clean at 128 px with narrow channels (fast on a CPU), loaded through
``load_model`` from seeded weights; the node resizes 512 crops to the spec's 512, the model to
its 128 and back, exactly as for a released model.
"""

from __future__ import annotations

import logging
import re

import pytest
import torch
import torch.nn.functional as F

from facemend.archs.gfpgan import GFPGANv1Clean
from facemend.model_loaders import ArchSpec, RestorationModel, load_model
from facemend.nodes import all_nodes
from facemend.nodes.modulate import FaceMendCSSFTModulate
from facemend.nodes.inputs import require_family
from facemend.runtime import Interrupted, ManagedModel, request_interrupt
from fm_testing.weights import seeded_state_dict


def _override(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor | None:
    if key.endswith("modulation.bias") or re.fullmatch(r"condition_scale\.\d+\.2\.bias", key):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return None


def small_gfpgan(seed: int = 5) -> RestorationModel:
    layout = {k: tuple(v.shape) for k, v in GFPGANv1Clean(out_size=128, channel_multiplier=1, narrow=0.25).state_dict().items()}
    return load_model(seeded_state_dict(layout, seed, _override))


@pytest.fixture(scope="module")
def model() -> RestorationModel:
    return small_gfpgan()


@pytest.fixture()
def managed(model: RestorationModel) -> ManagedModel:
    return ManagedModel(model, precision="fp32")


@pytest.fixture(scope="module")
def crops(face_crop: torch.Tensor) -> torch.Tensor:
    """Two faces as a ComfyUI IMAGE ``(2, 512, 512, 3)``."""
    return torch.cat([face_crop, face_crop.flip(-1)]).permute(0, 2, 3, 1).contiguous()


def run(managed: ManagedModel, crops: torch.Tensor, **kw) -> torch.Tensor:
    return FaceMendCSSFTModulate.execute(crops=crops, model=managed, **kw).outputs[0]


def direct(model: RestorationModel, crops: torch.Tensor, **controls) -> torch.Tensor:
    """What the node should output: the model called on the BCHW crops (512 in, 512 out)."""
    with torch.inference_mode():
        return model(crops.permute(0, 3, 1, 2), **controls).permute(0, 2, 3, 1)


# --------------------------------------------------------------------------- schema


def test_schema_is_complete_and_registered() -> None:
    node = FaceMendCSSFTModulate
    assert node in all_nodes()
    assert node.NODE_ID == "FaceMendCSSFTModulate" and node.CATEGORY.startswith("FaceMend/")
    assert node.DESCRIPTION and all(i.tooltip for i in node.inputs()) and all(o.tooltip for o in node.OUTPUTS)
    ids = [i.id for i in node.inputs()]
    assert ids == ["crops", "model", "strength", "strength_coarse", "strength_fine", "noise", "seed", "per_face_strength"]
    assert {i.id: i.type for i in node.inputs()}["model"] == "FACEMEND_MODEL"


# --------------------------------------------------------------------------- behaviour


def test_restores_a_batch_like_the_model_and_leaves_the_input_alone(managed, model, crops) -> None:
    before = crops.clone()
    result = FaceMendCSSFTModulate.execute(crops=crops, model=managed)
    out = result.outputs[0]
    assert torch.equal(crops, before)
    assert out.shape == crops.shape and out.dtype == torch.float32
    assert (out - direct(model, crops)).abs().max().item() <= 1e-5
    assert (out - crops).abs().mean() > 0.01  # it did something
    assert "2 face(s)" in result.ui["text"][0]


def test_strength_controls_reach_the_model(managed, model, crops) -> None:
    prior = run(managed, crops, strength=0.0)
    assert (prior - direct(model, crops, strength=0.0)).abs().max().item() <= 1e-5
    assert (prior - run(managed, crops)).abs().mean() > 1e-3
    split = run(managed, crops, strength=1.5, strength_coarse=0.5, strength_fine=2.0)
    assert (split - direct(model, crops, strength=1.5, strength_coarse=0.5, strength_fine=2.0)).abs().max().item() <= 1e-5


def test_random_noise_is_seeded_and_independent_of_chunking(managed, model, crops, monkeypatch) -> None:
    a = run(managed, crops, noise="random", seed=7)
    assert torch.equal(a, run(managed, crops, noise="random", seed=7))
    assert (a - run(managed, crops, noise="random", seed=8)).abs().max() > 1e-3
    assert (a - run(managed, crops)).abs().max() > 1e-3
    import facemend.runtime.batching as batching

    monkeypatch.setattr(batching, "chunk_size_for", lambda *a, **k: 1)  # one face per chunk
    assert (run(managed, crops, noise="random", seed=7) - a).abs().max().item() <= 1e-5


def test_non_512_crops_are_resized_in_and_out(managed, model, crops, caplog) -> None:
    small = F.interpolate(crops.permute(0, 3, 1, 2), size=(200, 200), mode="area").permute(0, 2, 3, 1).contiguous()
    with caplog.at_level(logging.INFO, logger="facemend"):
        result = FaceMendCSSFTModulate.execute(crops=small, model=managed)
    out = result.outputs[0]
    assert out.shape == (2, 200, 200, 3)
    up = F.interpolate(small.permute(0, 3, 1, 2), size=(512, 512), mode="bicubic", antialias=True).clamp(0, 1)
    with torch.inference_mode():
        y = model(up)
    expected = F.interpolate(y, size=(200, 200), mode="bicubic", antialias=True).clamp(0, 1).permute(0, 2, 3, 1)
    assert (out - expected).abs().max().item() <= 1e-5
    assert "resizing 200x200" in caplog.text and any("resized" in line for line in result.ui["text"])


def test_zero_crops_pass_through(managed) -> None:
    empty = torch.zeros(0, 512, 512, 3)
    out = run(managed, empty)
    assert out.shape == (0, 512, 512, 3)


def test_progress_counts_every_face(managed, crops, monkeypatch) -> None:
    import facemend.nodes.modulate as modulate

    seen: list[int] = []

    class Recorder(modulate.Progress):
        def update(self, n: int = 1) -> None:
            seen.append(n)
            super().update(n)

    monkeypatch.setattr(modulate, "Progress", Recorder)
    run(managed, crops)
    assert sum(seen) == 2


def test_interruption_stops_the_node(managed, crops) -> None:
    request_interrupt()
    with pytest.raises(Interrupted):
        run(managed, crops)


# --------------------------------------------------------------------------- bad input


def _codebook_model() -> ManagedModel:
    spec = ArchSpec(
        id="codeformer", family="codebook", display_name="CodeFormer", required_keys=("x",),
        read_hparams=lambda sd: {}, build=lambda: torch.nn.Identity(), forward=lambda m, x: x, licence="S-Lab 1.0",
    )
    return ManagedModel(RestorationModel(spec=spec, module=torch.nn.Identity(), hparams={}))


def test_codebook_model_is_refused_with_directions(crops) -> None:
    with pytest.raises(ValueError, match="Codebook Restore"):
        run(_codebook_model(), crops)
    with pytest.raises(ValueError, match="not a FaceMend model"):
        run(object(), crops)  # e.g. a ComfyUI MODEL wired in


def test_gfpgan_model_in_another_node_points_here(managed) -> None:
    with pytest.raises(ValueError, match="CS-SFT Modulate"):
        require_family(managed, "codebook", "FaceMend Codebook Restore")


def test_0_255_crops_are_an_error(managed, crops) -> None:
    with pytest.raises(ValueError, match="divide by 255"):
        run(managed, crops * 255)


def test_slight_overshoot_is_clamped_with_a_warning(managed, model, crops, caplog) -> None:
    over = crops * 1.2 - 0.05
    with caplog.at_level(logging.WARNING, logger="facemend"):
        result = FaceMendCSSFTModulate.execute(crops=over, model=managed)
    assert (result.outputs[0] - direct(model, over.clamp(0, 1))).abs().max().item() <= 1e-5
    assert "clamped" in caplog.text and any("clamped" in line for line in result.ui["text"])


def test_bad_controls_are_refused(managed, crops) -> None:
    with pytest.raises(ValueError, match="noise"):
        run(managed, crops, noise="fresh")
    with pytest.raises(ValueError, match="strength"):
        run(managed, crops, strength=-1.0)


# --------------------------------------------------------------------------- precision


def test_bf16_autocast_stays_close_to_fp32(model, crops, monkeypatch) -> None:
    import facemend.model_loaders.inference as inference

    monkeypatch.setattr(inference, "resolve_dtype", lambda policy, device, **k: torch.bfloat16)
    bf16 = run(ManagedModel(model, precision="bf16"), crops)
    ref = direct(model, crops)
    diff = (bf16 - ref).abs()
    assert torch.isfinite(bf16).all() and diff.max() > 0  # really ran in bf16
    assert diff.mean() < 0.02, diff.mean()


def test_fp16_overflow_is_recomputed_in_fp32(crops, monkeypatch, caplog) -> None:
    import facemend.model_loaders.inference as inference

    model = small_gfpgan()
    with torch.no_grad():  # ToRGB outputs beyond fp16's 65504: inf in fp16, fine (then clamped) in fp32
        model.module.stylegan_decoder.to_rgbs[-1].modulated_conv.weight.mul_(1e6)
    monkeypatch.setattr(inference, "resolve_dtype", lambda policy, device, **k: torch.float16)
    with caplog.at_level(logging.WARNING, logger="facemend"):
        out = run(ManagedModel(model, precision="fp16"), crops[:1])
    assert "NaN/Inf" in caplog.text
    assert torch.isfinite(out).all()
    monkeypatch.setattr(inference, "resolve_dtype", lambda policy, device, **k: torch.float32)
    assert (out - run(ManagedModel(model, precision="fp32"), crops[:1])).abs().max().item() <= 1e-6


def test_per_face_seed_tensor_is_each_faces_seed(model, crops) -> None:
    x = crops.permute(0, 3, 1, 2)
    with torch.inference_mode():
        both = model(x, noise="random", seed=torch.tensor([11.0, 3.0]))
        second = model(x[1:], noise="random", seed=3)
    assert (both[1:] - second).abs().max().item() <= 1e-5
