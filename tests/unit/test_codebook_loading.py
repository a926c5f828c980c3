"""Loading CodeFormer / RestoreFormer / RestoreFormer++ checkpoints: detection, official containers,
hyper-parameters from shapes, and clear errors for checkpoints the networks cannot take.

State dicts are built from the official layouts (``tests/golden/codebook/*_layout.json``) with
zero-storage tensors (``torch.zeros(()).expand(shape)``): detection and strict loading only need the
keys and shapes, and the checkpoint files the tests write stay a few kilobytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fm_testing.weights import load_layout
from facemend.model_loaders import UnsupportedModelError, default_registry, load_model
from facemend.model_loaders.reading import strip_partial_prefixes

EXPECTED = {
    "codeformer_layout.json": ("codeformer", "restore"),
    "codeformer_colorization_layout.json": ("codeformer", "colorization"),
    "codeformer_inpainting_layout.json": ("codeformer", "inpainting"),
    "restoreformer_layout.json": ("restoreformer", None),
    "restoreformer_pp_layout.json": ("restoreformer_pp", None),
}


def shaped(name: str) -> dict[str, torch.Tensor]:
    """The official layout ``name`` as a state dict of zero tensors with no real storage."""
    return {k: torch.zeros(()).expand(shape) for k, shape in load_layout(f"codebook/{name}").items()}


def lightning_ckpt(sd: dict[str, torch.Tensor], extra: dict[str, torch.Tensor] | None = None) -> dict[str, object]:
    """A RestoreFormer-style Lightning 1.0 checkpoint: the network under ``vqvae.``, the training loss
    modules (LPIPS, discriminators, identity net) under ``loss.``, plus Lightning's bookkeeping."""
    state = {f"vqvae.{k}": v for k, v in sd.items()}
    t = torch.zeros(()).expand
    state.update({
        "loss.perceptual_loss.scaling_layer.shift": t(1, 3, 1, 1),
        "loss.perceptual_loss.net.slice1.0.weight": t(64, 3, 3, 3),
        "loss.perceptual_loss.lin0.model.1.weight": t(1, 64, 1, 1),
        "loss.discriminator.main.0.weight": t(64, 3, 4, 4),
        "loss.discriminator.main.2.running_mean": t(128),
        "loss.net_d_left_eye.conv1.weight": t(64, 3, 3, 3),
        "loss.net_d_mouth.final_conv.bias": t(1),
        "loss.identity.conv1.weight": t(64, 1, 3, 3),
    })
    state.update(extra or {})
    return {
        "epoch": 9,
        "global_step": 123456,
        "pytorch-lightning_version": "1.0.8",
        "state_dict": state,
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6, "params": [0, 1]}]}],
        "lr_schedulers": [],
    }


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_official_layout_matches_exactly_one_architecture(layout: str) -> None:
    sd = shaped(layout)
    registry = default_registry()
    matching = [s.id for s in registry.specs if s.matches(sd)]
    assert matching == [EXPECTED[layout][0]]


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_params_ema_container_loads_strictly(layout: str, tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"params_ema": shaped(layout)}, path)
    model = load_model(path)
    arch, variant = EXPECTED[layout]
    assert model.arch == arch and model.family == "codebook"
    if variant is not None:
        assert model.hparams["variant"] == variant
    assert set(model.module.state_dict()) == set(load_layout(f"codebook/{layout}"))


def test_codeformer_hparams_come_from_shapes() -> None:
    h = load_model(shaped("codeformer_colorization_layout.json")).hparams
    assert h["connect_list"] == ["32", "64", "128"] and h["codebook_size"] == 1024 and h["n_layers"] == 9
    h = load_model(shaped("codeformer_inpainting_layout.json")).hparams
    assert h["connect_list"] == ["32", "64", "128"] and h["codebook_size"] == 512
    h = load_model(shaped("codeformer_layout.json")).hparams
    assert h["connect_list"] == ["32", "64", "128", "256"] and h["dim_embd"] == 512 and h["dim_mlp"] == 1024


def test_restoreformer_hparams_come_from_shapes() -> None:
    rf = load_model(shaped("restoreformer_layout.json"))
    pp = load_model(shaped("restoreformer_pp_layout.json"))
    assert rf.hparams["dec_attn_levels"] == [5] and rf.hparams["heads"] == 8
    assert pp.hparams["dec_attn_levels"] == [4, 5] and pp.hparams["heads"] == 4
    assert rf.hparams["ch_mult"] == [1, 2, 2, 4, 4, 8] and rf.hparams["n_embed"] == 1024


def test_gfpgan_restoreformer_pth_with_flat_keys_loads(tmp_path: Path) -> None:
    path = tmp_path / "RestoreFormer.pth"
    torch.save(shaped("restoreformer_layout.json"), path)
    assert load_model(path).arch == "restoreformer"


@pytest.mark.parametrize(
    ("layout", "arch"), [("restoreformer_layout.json", "restoreformer"), ("restoreformer_pp_layout.json", "restoreformer_pp")]
)
def test_official_lightning_ckpt_loads_and_drops_training_keys(layout: str, arch: str, tmp_path: Path) -> None:
    path = tmp_path / "RestoreFormer.ckpt"
    torch.save(lightning_ckpt(shaped(layout)), path)
    model = load_model(path)
    assert model.arch == arch
    assert not any(k.startswith(("loss.", "vqvae.")) for k in model.module.state_dict())


def test_lightning_ckpt_with_unknown_leftover_keys_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "RestoreFormer.ckpt"
    extra = {"ema_model.encoder.conv_in.weight": torch.zeros(()).expand(64, 3, 3, 3)}
    torch.save(lightning_ckpt(shaped("restoreformer_layout.json"), extra), path)
    with pytest.raises(UnsupportedModelError, match="ema_model.encoder.conv_in.weight"):
        load_model(path)


def test_codeformer_codebook_width_it_cannot_take() -> None:
    sd = shaped("codeformer_layout.json")
    sd["quantize.embedding.weight"] = torch.zeros(()).expand(1024, 128)
    with pytest.raises(UnsupportedModelError, match="128-dimensional codes.*takes 256"):
        load_model(sd)


def test_codeformer_codebook_size_disagreeing_with_its_predictor() -> None:
    sd = shaped("codeformer_layout.json")
    sd["quantize.embedding.weight"] = torch.zeros(()).expand(2048, 256)
    with pytest.raises(UnsupportedModelError, match="scores 1024 codes but its codebook holds 2048"):
        load_model(sd)


def test_codeformer_short_fusion_model_with_unknown_codebook_size() -> None:
    sd = shaped("codeformer_inpainting_layout.json")
    sd["quantize.embedding.weight"] = torch.zeros(()).expand(300, 256)
    sd["idx_pred_layer.1.weight"] = torch.zeros(()).expand(300, 512)
    with pytest.raises(UnsupportedModelError, match="300 codes.*neither the colorization.*nor the inpainting"):
        load_model(sd)


def test_restoreformer_codebook_width_it_cannot_take() -> None:
    sd = shaped("restoreformer_layout.json")
    sd["quantize.embedding.weight"] = torch.zeros(()).expand(1024, 128)
    with pytest.raises(UnsupportedModelError, match="128-dimensional codes but quant_conv produces 256"):
        load_model(sd)


def test_partial_vqvae_prefix_is_stripped_without_collisions() -> None:
    t = torch.zeros(1)
    assert set(strip_partial_prefixes({"vqvae.a": t, "loss.b": t})) == {"a", "loss.b"}
    # A stripped name that would collide with an existing key leaves the dict unchanged.
    assert set(strip_partial_prefixes({"vqvae.a": t, "a": t})) == {"vqvae.a", "a"}
