"""FaceMend Diffusion Refine: the node's schema, behaviour, bad input and interruption (no ComfyUI).

Small seeded networks in the official layouts keep these tests fast; numerics against the
official code are covered by ``test_refusion_arch.py`` and ``test_refusion_sde.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import facemend.nodes.refine as refine_node
from facemend.archs.refusion import ConditionalNAFNet, ConditionalUNet, LatentUNet
from facemend.model_loaders import load_model
from facemend.nodes import all_nodes
from facemend.nodes.refine import FaceMendDiffusionRefine
from facemend.runtime import Interrupted, ManagedModel, Progress, check_interrupted
from fm_testing.weights import seeded_state_dict


def _managed(module: nn.Module, seed: int) -> ManagedModel:
    layout = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    return ManagedModel(load_model(seeded_state_dict(layout, seed)), precision="fp32")


@pytest.fixture(scope="module")
def nafnet() -> ManagedModel:
    return _managed(ConditionalNAFNet(3, 8, 1, [1, 1, 1, 1], [1, 1, 1, 1]), 11)


@pytest.fixture(scope="module")
def unet() -> ManagedModel:
    return _managed(ConditionalUNet(3, 3, 8, 2), 12)


@pytest.fixture(scope="module")
def latent_net() -> ManagedModel:
    return _managed(ConditionalNAFNet(8, 8, 1, [1, 1, 1, 1], [1, 1, 1, 1], intro_skip=True), 13)


@pytest.fixture(scope="module")
def autoencoder() -> ManagedModel:
    return _managed(LatentUNet(3, 3, 4, (1, 2, 2, 2), 8), 14)


def _image(b: int = 2, h: int = 40, w: int = 56, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, h, w, 3, generator=torch.Generator().manual_seed(seed))


def _run(image: torch.Tensor, model: ManagedModel, **kw) -> torch.Tensor:
    kw.setdefault("steps", 4)
    return FaceMendDiffusionRefine.execute(image=image, model=model, **kw).outputs[0]


def test_schema_and_defaults() -> None:
    node = FaceMendDiffusionRefine
    assert node in all_nodes() and node.NODE_ID == "FaceMendDiffusionRefine"
    assert node.CATEGORY.startswith("FaceMend/") and node.DESCRIPTION and "Paste Back" in node.DESCRIPTION
    inputs = {i.id: i for i in node.inputs()}
    assert all(i.tooltip for i in inputs.values())
    assert inputs["image"].type == "IMAGE" and inputs["model"].type == "FACEMEND_MODEL"
    assert inputs["autoencoder"].type == "FACEMEND_MODEL" and inputs["autoencoder"].optional
    # the paper's Refusion settings, shown on the node
    assert inputs["steps"].default == 100 and inputs["steps"].min == 1
    assert inputs["max_sigma"].default == 50 and "50/255" in inputs["max_sigma"].tooltip
    assert inputs["schedule"].default == "cosine" and inputs["schedule"].choices() == ["cosine", "linear", "constant"]
    assert inputs["eps"].default == 0.005 and "0.005" in inputs["eps"].tooltip
    assert inputs["sampler"].choices() == ["sde", "ode", "posterior"] and inputs["sampler"].default == "sde"
    assert inputs["strength"].default == 1.0
    assert [o.type for o in node.OUTPUTS] == ["IMAGE"]


@pytest.mark.parametrize("sampler", ["sde", "ode", "posterior"])
def test_refines_crops_reproducibly(sampler: str, nafnet: ManagedModel) -> None:
    image = _image()
    before = image.clone()
    out = _run(image, nafnet, sampler=sampler, seed=5)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(image, before)  # input untouched
    assert (out - image).abs().mean() > 1e-3  # it did something
    assert torch.equal(out, _run(image, nafnet, sampler=sampler, seed=5))
    assert not torch.allclose(out, _run(image, nafnet, sampler=sampler, seed=6))


def test_batch_item_noise_is_independent_of_batching(nafnet: ManagedModel) -> None:
    image = _image(3)
    batch = _run(image, nafnet, seed=40)
    single = _run(image[2:3], nafnet, seed=42)  # image 2 of a batch seeded 40 uses seed 42
    torch.testing.assert_close(batch[2:3], single, atol=1e-4, rtol=0)


def test_strength(nafnet: ManagedModel) -> None:
    image = _image(1)
    assert torch.equal(_run(image, nafnet, strength=0.0), image)
    light = _run(image, nafnet, steps=10, strength=0.2, seed=1)
    full = _run(image, nafnet, steps=10, strength=1.0, seed=1)
    assert (light - image).abs().mean() < (full - image).abs().mean()


def test_progress_ticks_once_per_step_and_image(nafnet: ManagedModel, monkeypatch) -> None:
    seen: list[Progress] = []

    class Recording(Progress):
        def __init__(self, total: int, desc: str = "") -> None:
            super().__init__(total, desc)
            self.updates: list[int] = []
            seen.append(self)

        def update(self, n: int = 1) -> None:
            self.updates.append(n)
            super().update(n)

    monkeypatch.setattr(refine_node, "Progress", Recording)
    _run(_image(2), nafnet, steps=10, strength=0.5)
    (bar,) = seen
    assert bar.total == 2 * 5 and sum(bar.updates) == 10 and len(bar.updates) == 5


def test_interruption_between_steps(nafnet: ManagedModel, monkeypatch) -> None:
    calls: list[int] = []
    net = nafnet.model.module
    original = net.forward
    monkeypatch.setattr(net, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))

    class InterruptAtThird(Progress):
        def update(self, n: int = 1) -> None:
            super().update(n)
            if self.done == 3 * 2:  # third step of a batch of two
                from facemend.runtime import request_interrupt

                request_interrupt()

    monkeypatch.setattr(refine_node, "Progress", InterruptAtThird)
    with pytest.raises(Interrupted):
        _run(_image(2), nafnet, steps=20)
    assert len(calls) == 3  # stopped right after the step in which it was asked to
    check_interrupted()  # the request was consumed


def test_unet_model_runs(unet: ManagedModel) -> None:
    out = _run(_image(1, 36, 44), unet, sampler="posterior", max_sigma=10)
    assert out.shape == (1, 36, 44, 3) and torch.isfinite(out).all()


def test_large_image_runs_in_blended_tiles(nafnet: ManagedModel, monkeypatch) -> None:
    sizes: list[tuple[int, int]] = []
    net = nafnet.model.module
    original = net.forward

    def spy(x, mu, t):
        sizes.append(tuple(x.shape[-2:]))
        return original(x, mu, t)

    monkeypatch.setattr(net, "forward", spy)
    image = _image(1, 150, 200)
    out = _run(image, nafnet, steps=2, tile_size=64, tile_overlap=16)
    assert out.shape == image.shape and torch.isfinite(out).all()
    assert max(h * w for h, w in sizes) <= 64 * 64 and len(sizes) == 2 * 4 * 3  # 2 steps x 4 x 3 tiles
    # with a pointwise noise predictor, tiles blend back to exactly the whole-image result
    monkeypatch.setattr(net, "forward", lambda x, mu, t: torch.tanh(x - mu) * (1 + t / 100))
    tiled = _run(image, nafnet, steps=3, tile_size=64, tile_overlap=16, seed=8)
    whole = _run(image, nafnet, steps=3, seed=8)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_latent_model_with_autoencoder(latent_net: ManagedModel, autoencoder: ManagedModel) -> None:
    image = _image(2, 48, 64)
    out = _run(image, latent_net, autoencoder=autoencoder, seed=3)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, _run(image, latent_net, autoencoder=autoencoder, seed=3))
    # a large image: encoded/decoded in pixel tiles, diffused on the latent grid
    big = _image(1, 200, 152)
    tiled = _run(big, latent_net, autoencoder=autoencoder, seed=3, steps=2, tile_size=64, tile_overlap=16)
    assert tiled.shape == big.shape and torch.isfinite(tiled).all()


def test_model_call_runs_the_reverse_process(nafnet: ManagedModel, latent_net: ManagedModel, autoencoder: ManagedModel) -> None:
    x = _image(2).permute(0, 3, 1, 2)
    y = nafnet.model(x, steps=3, seed=2)
    assert y.shape == x.shape and torch.equal(y, nafnet.model(x, steps=3, seed=2))
    assert not torch.equal(y, nafnet.model(x, steps=3, seed=3))  # the seed drives the noise
    with pytest.raises(ValueError, match="autoencoder"):
        latent_net.model(x, steps=2)
    assert latent_net.model(x, steps=2, autoencoder=autoencoder.model).shape == x.shape


# ---------------------------------------------------------------- bad input


def test_non_refusion_model_is_refused() -> None:
    fake = SimpleNamespace(family="codebook", arch="codeformer", spec=SimpleNamespace(display_name="CodeFormer"), module=nn.Identity())
    with pytest.raises(ValueError, match="Codebook Restore"):
        _run(_image(1), ManagedModel(fake))
    with pytest.raises(ValueError, match="not a FaceMend model"):
        _run(_image(1), object())


@pytest.mark.parametrize("steps", [0, -3])
def test_steps_below_one(steps: int, nafnet: ManagedModel) -> None:
    with pytest.raises(ValueError, match="FaceMend Diffusion Refine: steps must be between 1 and 1000"):
        _run(_image(1), nafnet, steps=steps)


def test_bad_settings(nafnet: ManagedModel) -> None:
    with pytest.raises(ValueError, match="max_sigma"):
        _run(_image(1), nafnet, max_sigma=0.0)
    with pytest.raises(ValueError, match="sampler"):
        _run(_image(1), nafnet, sampler="ddim")
    with pytest.raises(ValueError, match="overlap"):
        _run(_image(1), nafnet, tile_size=64, tile_overlap=40)


def test_image_smaller_than_padding_multiple(nafnet: ManagedModel, unet: ManagedModel) -> None:
    with pytest.raises(ValueError, match="at least 16x16"):
        _run(_image(1, 12, 40), nafnet)
    _run(_image(1, 16, 17), nafnet, steps=1)  # the multiple itself is fine
    with pytest.raises(ValueError, match="at least 4x4"):
        _run(_image(1, 3, 40), unet)


def test_latent_model_without_autoencoder(latent_net: ManagedModel) -> None:
    with pytest.raises(ValueError, match="needs its autoencoder"):
        _run(_image(1), latent_net)


def test_autoencoder_without_latent_model(nafnet: ManagedModel, autoencoder: ManagedModel) -> None:
    with pytest.raises(ValueError, match="autoencoder is connected but .* works directly on RGB"):
        _run(_image(1), nafnet, autoencoder=autoencoder)
    with pytest.raises(ValueError, match="got the latent-Refusion autoencoder"):
        _run(_image(1), autoencoder)
    with pytest.raises(ValueError, match="must be a latent_refusion"):
        _run(_image(1), nafnet, autoencoder=nafnet)


def test_zero_images_pass_through(nafnet: ManagedModel) -> None:
    empty = torch.zeros(0, 32, 32, 3)
    assert _run(empty, nafnet).shape == (0, 32, 32, 3)
