"""Architecture registry and load_model, proven with a tiny test architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from facemend.model_loaders import Registry, RestorationModel, UnsupportedModelError, load_model
from fm_testing.tiny_arch import TINY_SPEC, TINY_WIDE_SPEC, tiny_state_dict

REG = Registry([TINY_SPEC])


@pytest.mark.parametrize("ext", [".pth", ".safetensors", ".ckpt", ".bin"])
def test_load_from_files(tmp_path: Path, ext: str) -> None:
    sd = tiny_state_dict(channels=6)
    p = tmp_path / f"tiny{ext}"
    if ext == ".safetensors":
        save_file(sd, str(p))
    elif ext == ".ckpt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1}, p)
    else:
        torch.save({"params_ema": sd, "params": tiny_state_dict(channels=6, seed=9)}, p)
    m = load_model(p, registry=REG)
    assert isinstance(m, RestorationModel)
    assert m.arch == "tiny_test" and m.family == "codebook" and m.hparams == {"channels": 6}
    assert torch.equal(m.module.state_dict()["tiny.conv_in.weight"], sd["tiny.conv_in.weight"])  # params_ema chosen
    assert m.parameter_count == sum(v.numel() for v in sd.values())
    assert m.source == str(p) and "tiny_test" in m.describe() and "test-only" in m.describe()


def test_call_contract_and_controls() -> None:
    m = load_model(tiny_state_dict(), registry=REG)
    x = torch.rand(2, 3, 16, 16)
    x0 = x.clone()
    y = m(x, gain=0.0)
    assert torch.equal(x, x0)  # input untouched
    assert torch.allclose(y, x, atol=1e-6)  # gain 0 -> identity
    assert not torch.allclose(m(x, gain=1.0), x)
    with pytest.raises(TypeError, match="does not take control"):
        m(x, fidelity=0.5)


def test_unknown_names_closest_and_missing_keys() -> None:
    sd = {"tiny.conv_in.weight": torch.zeros(4, 3, 3, 3), "other.weight": torch.zeros(1)}
    with pytest.raises(UnsupportedModelError, match=r"Closest architecture: tiny_test.*tiny\.conv_out\.weight"):
        load_model(sd, registry=REG)


def test_completely_foreign_and_stable_diffusion() -> None:
    with pytest.raises(UnsupportedModelError, match="match none"):
        load_model({"foo.weight": torch.zeros(1)}, registry=REG)
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1), "first_stage_model.decoder.conv_in.weight": torch.zeros(1)}
    with pytest.raises(UnsupportedModelError, match="Stable Diffusion"):
        load_model(sd, registry=REG)


def test_strict_unexpected_and_shape_mismatch() -> None:
    sd = tiny_state_dict() | {"tiny.extra.weight": torch.zeros(2)}
    with pytest.raises(UnsupportedModelError, match=r"unexpected keys \['tiny.extra.weight'\]"):
        load_model(sd, registry=REG)
    bad = tiny_state_dict(channels=4)
    bad["tiny.conv_out.weight"] = torch.zeros(3, 5, 3, 3)  # disagrees with conv_in's 4 channels
    with pytest.raises(UnsupportedModelError, match="does not fit"):
        load_model(bad, registry=REG)


def test_two_fingerprints_is_an_error_not_a_guess() -> None:
    reg = Registry([TINY_SPEC, TINY_WIDE_SPEC])
    with pytest.raises(UnsupportedModelError, match="several architectures"):
        load_model(tiny_state_dict(channels=32), registry=reg)


def test_predicate_distinguishes_by_shape() -> None:
    narrow_only = Registry([TINY_WIDE_SPEC])
    assert load_model(tiny_state_dict(channels=16), registry=narrow_only).arch == "tiny_wide"
    with pytest.raises(UnsupportedModelError, match="shapes that do not fit"):
        load_model(tiny_state_dict(channels=4), registry=narrow_only)


def test_duplicate_ids_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Registry([TINY_SPEC, TINY_SPEC])


def test_default_registry_ids_unique_and_families_known() -> None:
    from facemend.model_loaders import default_registry

    reg = default_registry()
    assert len({s.id for s in reg.specs}) == len(reg.specs)
    from facemend.archs.families import FAMILIES

    assert {s.family for s in reg.specs} == {f.id for f in FAMILIES}
    for s in reg.specs:
        assert s.licence and s.required_keys and s.display_name
