"""Refusion / IR-SDE networks: detection, hyper-parameters from shapes, strict loading, parity.

Goldens (``tests/golden/refusion/``) were generated ONCE with the official code of
Algolzw/image-restoration-sde at commit 2598d73cde3a1e2cf78c4ba4923414e1f4b90393, by a scratch
script kept outside the repository (``/work/scratch/refusion/make_goldens.py``). It imported the
official ``DenoisingNAFNet_arch.ConditionalNAFNet`` and ``DenoisingUNet_arch.ConditionalUNet``
from ``codes/config/deraining/models/modules``, the latent-dehazing ``ConditionalNAFNet`` and
``UNet_arch.UNet`` from ``codes/config/latent-dehazing/models/modules``, and
``codes/utils/sde_utils.py``; built the official configs

- ``nafnet``: ConditionalNAFNet(img_channel=3, width=64, middle_blk_num=1, enc_blk_nums=[1,1,1,28],
  dec_blk_nums=[1,1,1,1]) (``options/test/refusion.yml``), seed 601;
- ``nafnet_latent``: the latent-dehazing ConditionalNAFNet with img_channel=8, same widths, seed 602;
- ``unet64``: ConditionalUNet(3, 3, nf=64, depth=4) (``ir-sde.yml``), seed 603;
- ``unet32d5``: ConditionalUNet(3, 3, nf=32, depth=5) (deshadow ``ir-sde.yml``), seed 604;
- ``autoencoder``: UNet(3, 3, ch=8, ch_mult=[4,8,8,16], embed_dim=8) (``nasde.yml`` network_L), seed 605;

filled each with ``fm_testing.weights.seeded_state_dict(layout, seed)``, dumped the layouts
(``layout_<name>.json``) and ran them on inputs drawn from ``torch.Generator().manual_seed(610)``:
a batch of 2 RGB 30x45 states/conditions (not a multiple of 16, so padding and cropping are
exercised) at ``t = 37`` and at per-item times ``[3, 77]``; 8-channel 6x10 latents for the latent
NAFNet; and ``encode``/``decode`` of 30x45 images for the autoencoder. Outputs are stored in
``outputs.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facemend.archs.refusion import ConditionalNAFNet, ConditionalUNet, LatentUNet
from facemend.model_loaders import UnsupportedModelError, default_registry, load_model
from fm_testing.weights import GOLDEN_DIR, load_layout, seeded_state_dict

GOLDEN = GOLDEN_DIR / "refusion"
SEEDS = {"nafnet": 601, "nafnet_latent": 602, "unet64": 603, "unet32d5": 604, "autoencoder": 605}
ARCH = {
    "nafnet": "refusion_nafnet", "nafnet_latent": "refusion_nafnet", "unet64": "irsde_unet",
    "unet32d5": "irsde_unet", "autoencoder": "latent_refusion",
}
HPARAMS = {
    "nafnet": {"img_channel": 3, "width": 64, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 28], "dec_blk_nums": [1, 1, 1, 1], "intro_skip": False},
    "nafnet_latent": {"img_channel": 8, "width": 64, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 28], "dec_blk_nums": [1, 1, 1, 1], "intro_skip": True},
    "unet64": {"in_nc": 3, "out_nc": 3, "nf": 64, "depth": 4, "level_mults": [2, 4, 8, 16]},
    "unet32d5": {"in_nc": 3, "out_nc": 3, "nf": 32, "depth": 5, "level_mults": [2, 4, 8, 16, 32]},
    "autoencoder": {"in_ch": 3, "out_ch": 3, "ch": 8, "ch_mult": [4, 8, 8, 16], "embed_dim": 8},
}


@pytest.fixture(scope="module")
def goldens() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "outputs.safetensors"))


@pytest.fixture(scope="module")
def state_dicts() -> dict[str, dict[str, torch.Tensor]]:
    return {name: seeded_state_dict(load_layout(f"refusion/layout_{name}.json"), seed) for name, seed in SEEDS.items()}


@pytest.fixture(scope="module")
def models(state_dicts):
    return {name: load_model(sd) for name, sd in state_dicts.items()}


def test_goldens_are_small() -> None:
    assert sum(p.stat().st_size for p in GOLDEN.iterdir()) <= 3 * 1024 * 1024


@pytest.mark.parametrize("name", list(SEEDS))
def test_official_layout_detects_as_exactly_its_id(name: str, state_dicts, models) -> None:
    sd = state_dicts[name]
    hits = [s.id for s in default_registry().specs if s.matches(sd)]
    assert hits == [ARCH[name]]
    model = models[name]
    assert model.arch == ARCH[name] and model.family == "refusion" and model.licence == "MIT"
    assert model.hparams == HPARAMS[name]
    # our module lists the keys in the official order with the official shapes
    assert {k: tuple(v.shape) for k, v in model.module.state_dict().items()} == load_layout(f"refusion/layout_{name}.json")
    assert list(model.module.state_dict()) == list(load_layout(f"refusion/layout_{name}.json"))


@pytest.mark.parametrize("name", ["nafnet_latent", "unet32d5", "autoencoder"])
def test_module_prefixed_state_dict_loads_strictly(name: str, state_dicts) -> None:
    sd = {f"module.{k}": v for k, v in state_dicts[name].items()}
    model = load_model(sd)
    assert model.arch == ARCH[name] and model.hparams == HPARAMS[name]
    for k, v in model.module.state_dict().items():
        assert torch.equal(v, state_dicts[name][k])


def test_checkpoint_file_round_trip(tmp_path: Path, state_dicts) -> None:
    path = tmp_path / "refusion_ae.pth"
    torch.save({f"module.{k}": v for k, v in state_dicts["autoencoder"].items()}, path)
    assert load_model(path).arch == "latent_refusion"


def test_missing_key_is_refused(state_dicts) -> None:
    sd = dict(state_dicts["unet64"])
    del sd["downs.1.0.block2.proj.weight"]
    with pytest.raises(UnsupportedModelError, match="missing"):
        load_model(sd)


def test_unsupported_variants_are_not_detected(state_dicts) -> None:
    # latent-bokeh NAFNet: lens-information MLPs in every block
    sd = dict(state_dicts["nafnet"])
    sd["cam_mlp.0.weight"] = torch.zeros(512, 192)
    assert not any(s.matches(sd) for s in default_registry().specs)
    # denoising-sde U-Net: unconditional (init_conv takes in_nc, not 2 * in_nc)
    sd = dict(state_dicts["unet64"])
    sd["init_conv.weight"] = torch.zeros(64, 3, 7, 7)
    assert not any(s.matches(sd) for s in default_registry().specs)
    with pytest.raises(UnsupportedModelError):
        load_model(sd)


@pytest.mark.parametrize("name", ["nafnet", "unet64", "unet32d5"])
def test_noise_network_matches_official(name: str, models, goldens) -> None:
    net = models[name].module
    with torch.no_grad():
        y = net(goldens["net_in_xt"], goldens["net_in_mu"], 37)
        yv = net(goldens["net_in_xt"], goldens["net_in_mu"], torch.tensor([3.0, 77.0]))
    torch.testing.assert_close(y, goldens[f"out_{name}_t37"], atol=1e-4, rtol=0)
    torch.testing.assert_close(yv, goldens[f"out_{name}_tvec"], atol=1e-4, rtol=0)
    assert not torch.allclose(y, yv, atol=1e-3)  # the time input matters


def test_latent_nafnet_matches_official(models, goldens) -> None:
    net = models["nafnet_latent"].module
    with torch.no_grad():
        y = net(goldens["net_in_xt8"], goldens["net_in_mu8"], 37)
        yv = net(goldens["net_in_xt8"], goldens["net_in_mu8"], torch.tensor([3.0, 77.0]))
    torch.testing.assert_close(y, goldens["out_nafnet_latent_t37"], atol=1e-4, rtol=0)
    torch.testing.assert_close(yv, goldens["out_nafnet_latent_tvec"], atol=1e-4, rtol=0)
    # the latent variant's intro skip is real: without it the output changes
    plain = ConditionalNAFNet(8, 64, 1, [1, 1, 1, 28], [1, 1, 1, 1], intro_skip=False).eval()
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain(goldens["net_in_xt8"], goldens["net_in_mu8"], 37), y, atol=1e-3)


def test_autoencoder_matches_official(models, goldens) -> None:
    ae = models["autoencoder"].module
    assert isinstance(ae, LatentUNet) and ae.downscale == 8 and ae.padding_multiple == 16
    with torch.no_grad():
        z, skips = ae.encode(goldens["ae_in"])
        recon = ae.decode(z, skips, size=(30, 45))
    torch.testing.assert_close(z, goldens["ae_latent"], atol=1e-4, rtol=0)
    torch.testing.assert_close(recon, goldens["ae_recon"], atol=1e-4, rtol=0)
    # the model call is the clamped round trip
    out = models["autoencoder"](goldens["ae_in"])
    torch.testing.assert_close(out, goldens["ae_recon"].clamp(0, 1), atol=1e-4, rtol=0)


def test_networks_run_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    net = ConditionalNAFNet(3, 16, 1, [1, 1], [1, 1]).eval()
    unet = ConditionalUNet(3, 3, 8, 2).eval()
    x, mu = torch.rand(1, 3, 20, 28), torch.rand(1, 3, 20, 28)
    for m in (net, unet):
        with torch.no_grad():
            ref = m(x, mu, 10)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = m(x, mu, 10)
        assert low.shape == ref.shape and torch.isfinite(low).all()
        assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3

