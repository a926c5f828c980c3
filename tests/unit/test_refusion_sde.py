"""The IR-SDE: schedules, marginals, and the three reverse samplers against the official code.

Goldens (``tests/golden/refusion/outputs.safetensors``) were generated ONCE with the official
``codes/utils/sde_utils.py`` (``IRSDE``) of Algolzw/image-restoration-sde at commit
2598d73cde3a1e2cf78c4ba4923414e1f4b90393 by a scratch script outside the repository
(``/work/scratch/refusion/make_goldens.py``; see ``test_refusion_arch.py`` for the networks and
their weight seeds). What the script did:

- schedules: ``IRSDE(max_sigma=50, T=100, schedule=s, eps=0.005)`` for s in cosine/linear/constant,
  stored ``thetas``, ``sigmas``, ``thetas_cumsum``, ``sigma_bars``, ``dt`` and
  ``reverse_optimum_std(t)`` for t = 1..100; and ``sigma_bars`` of
  ``IRSDE(max_sigma=0.1, T=37, cosine, eps=0.01)``.
- trajectories: ``torch.randn_like`` was patched to draw from ``torch.Generator().manual_seed(s)``
  (``torch.randn(x.shape, generator=g)``), which is what our sampler draws from a seeded generator,
  so both runs see the same injected noises. With ``mu`` a 1x3x32x48 image (generator 610),
  ``x_T = sde.noise_state(mu)`` and ``sde.reverse_<method>(x_T)`` recording the state after every
  step, using the official Refusion NAFNet (seed 601): ODE (noise seed 620), posterior (621) and
  reverse SDE (622) with ``IRSDE(50, T=10, cosine, 0.005)``; and the official IR-SDE U-Net
  (nf 64, depth 4, seed 603) with the posterior sampler, ``IRSDE(10, T=6, linear, 0.005)``, seed 623.
- latent Refusion (latent-dehazing ``test.py``): ``latent, hidden = UNet.encode(lq)`` for a 1x3x64x96
  image, ``noise_state(latent)``, ``set_mu(latent)``, ``reverse_sde`` with ``IRSDE(50, T=8, cosine,
  0.005)`` and the 8-channel NAFNet (seed 602), ``decode(latent, hidden)``; noise seed 624.

Trajectories are compared state by state to 1e-4 relative to the largest magnitude of the
official state (random weights make the states large, so this is a strict test).
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from facemend.archs.refusion import IRSDE, RefineSettings, generator_noise, refine_images, theta_schedule
from facemend.model_loaders import load_model
from fm_testing.weights import GOLDEN_DIR, load_layout, seeded_state_dict

GOLDEN = GOLDEN_DIR / "refusion"


@pytest.fixture(scope="module")
def goldens() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "outputs.safetensors"))


@pytest.fixture(scope="module")
def nafnet():
    return load_model(seeded_state_dict(load_layout("refusion/layout_nafnet.json"), 601)).module


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _noise(seed: int):
    return generator_noise([torch.Generator().manual_seed(seed)])


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_schedules_match_official(schedule: str, goldens) -> None:
    sde = IRSDE(max_sigma=50, T=100, schedule=schedule, eps=0.005)
    for attr in ("thetas", "sigmas", "thetas_cumsum", "sigma_bars"):
        torch.testing.assert_close(getattr(sde, attr), goldens[f"sched_{schedule}_{attr}"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sde.dt.reshape(1), goldens[f"sched_{schedule}_dt"], rtol=1e-6, atol=0)
    std = torch.stack([sde.posterior_std(t) for t in range(1, 101)])
    torch.testing.assert_close(std, goldens[f"sched_{schedule}_poststd"], rtol=1e-5, atol=1e-9)
    assert torch.equal(sde.thetas, theta_schedule(schedule, 100))


def test_max_sigma_scale_and_other_settings(goldens) -> None:
    assert IRSDE(50).max_sigma == pytest.approx(50 / 255)
    assert IRSDE(1).max_sigma == pytest.approx(1 / 255)  # >= 1 means the 0-255 scale
    assert IRSDE(0.1).max_sigma == pytest.approx(0.1)
    sde = IRSDE(max_sigma=0.1, T=37, schedule="cosine", eps=0.01)
    torch.testing.assert_close(sde.sigma_bars, goldens["sched_small_sigma_bars"], rtol=1e-6, atol=1e-8)


def test_marginals() -> None:
    sde = IRSDE(max_sigma=50, T=100, schedule="cosine", eps=0.005)
    # the time scale is chosen so that only eps of x0 - mu is left at T
    assert float(sde.mean_weight(100)) == pytest.approx(0.005, rel=1e-4)
    assert float(sde.mean_weight(0)) == 1.0 and float(sde.sigma_bar(0)) == 0.0
    assert float(sde.sigma_bar(100)) == pytest.approx(50 / 255 * math.sqrt(1 - 0.005**2), rel=1e-5)
    assert torch.all(sde.sigma_bars[1:] > sde.sigma_bars[:-1])
    x0, mu = torch.full((1, 1, 1, 1), 1.0), torch.zeros(1, 1, 1, 1)
    assert float(sde.mu_bar(x0, mu, 100)) == pytest.approx(0.005, rel=1e-4)
    # sigma_t**2 / theta_t = 2 max_sigma**2 (stationary variance max_sigma**2)
    torch.testing.assert_close(sde.sigmas**2 / sde.thetas, torch.full((101,), 2 * (50 / 255) ** 2), rtol=1e-5, atol=0)
    # a forward simulation with many samples reproduces the marginal std at step T
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(20000)
    for t in range(1, 101):
        x = x + sde.thetas[t] * (0 - x) * sde.dt + sde.sigmas[t] * torch.randn(20000, generator=g) * math.sqrt(sde.dt)
    assert float(x.std()) == pytest.approx(float(sde.sigma_bar(100)), rel=0.05)


@pytest.mark.parametrize(("method", "seed"), [("ode", 620), ("posterior", 621)])
def test_nafnet_trajectory_matches_official(method: str, seed: int, nafnet, goldens) -> None:
    mu = goldens["traj_mu"]
    sde = IRSDE(max_sigma=50, T=10, schedule="cosine", eps=0.005)
    draw = _noise(seed)
    x_t = sde.initial_state(mu, draw(mu.shape))
    torch.testing.assert_close(x_t, goldens[f"traj_nafnet_{method}_xT"], atol=1e-6, rtol=0)
    states: list[torch.Tensor] = []
    with torch.no_grad():
        out = sde.sample(lambda x, t: nafnet(x, mu, t), x_t, mu, sampler=method, draw=draw, on_step=lambda t, s: states.append(s.clone()))
    official = goldens[f"traj_nafnet_{method}_states"]
    assert len(states) == official.shape[0] == 10
    for i, (ours, theirs) in enumerate(zip(states, official)):
        assert _rel(ours, theirs) < 1e-4, f"{method}: state after step {10 - i} differs"
    assert torch.equal(out, states[-1])


def test_unet_posterior_trajectory_matches_official(goldens) -> None:
    unet = load_model(seeded_state_dict(load_layout("refusion/layout_unet64.json"), 603)).module
    mu = goldens["traj_mu"]
    sde = IRSDE(max_sigma=10, T=6, schedule="linear", eps=0.005)
    draw = _noise(623)
    x_t = sde.initial_state(mu, draw(mu.shape))
    states: list[torch.Tensor] = []
    with torch.no_grad():
        sde.sample(lambda x, t: unet(x, mu, t), x_t, mu, sampler="posterior", draw=draw, on_step=lambda t, s: states.append(s.clone()))
    for ours, theirs in zip(states, goldens["traj_unet64_posterior_states"], strict=True):
        assert _rel(ours, theirs) < 1e-4


def test_refine_images_reverse_sde_matches_official(nafnet, goldens) -> None:
    """refine_images = noise_state(mu) + reverse SDE, exactly as the official test scripts."""
    mu = goldens["traj_mu"]
    settings = RefineSettings(sampler="sde", steps=10, network_steps=10)
    with torch.no_grad():
        raw = refine_images(nafnet, mu, settings, _noise(622), clamp=False)
    assert _rel(raw, goldens["traj_nafnet_sde_states"][-1]) < 1e-4
    # the result is clamped to [0, 1] by default
    ref = goldens["traj_nafnet_sde_states"][-1]
    assert ref.min() < 0 and ref.max() > 1


def test_latent_refusion_pipeline_matches_official(goldens) -> None:
    net = load_model(seeded_state_dict(load_layout("refusion/layout_nafnet_latent.json"), 602)).module
    ae = load_model(seeded_state_dict(load_layout("refusion/layout_autoencoder.json"), 605)).module
    settings = RefineSettings(sampler="sde", steps=8, network_steps=8)
    with torch.no_grad():
        out = refine_images(net, goldens["latent_lq"], settings, _noise(624), autoencoder=ae, clamp=False)
    assert _rel(out, goldens["latent_out"]) < 1e-4


def test_network_time_rescaling() -> None:
    assert IRSDE(T=100).network_time(37, 100) == 37.0
    assert IRSDE(T=20).network_time(20, 100) == 100.0
    assert IRSDE(T=20).network_time(1, 100) == 5.0
    assert IRSDE(T=20).network_time(7) == 7.0


def test_partial_start_uses_the_marginal() -> None:
    sde = IRSDE(max_sigma=50, T=100)
    mu, z = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert torch.allclose(sde.initial_state(mu, z), torch.full_like(mu, 50 / 255))
    assert torch.allclose(sde.initial_state(mu, z, 30), torch.full_like(mu, float(sde.sigma_bar(30))))
    assert float(sde.sigma_bar(30)) < 50 / 255 * 0.9
    assert RefineSettings(strength=0.3).start_step() == 30
    assert RefineSettings(strength=0.001).start_step() == 1
    assert RefineSettings(strength=0).start_step() == 0
    # a partial run takes exactly t_start steps
    steps: list[int] = []
    sde.sample(lambda x, t: torch.zeros_like(x), mu, mu, sampler="ode", t_start=30, on_step=lambda t, s: steps.append(t))
    assert steps == list(range(30, 0, -1))


def test_seeded_runs_are_reproducible() -> None:
    torch.manual_seed(0)
    sde = IRSDE(max_sigma=50, T=5)
    mu = torch.rand(2, 3, 8, 8)

    def fn(x: torch.Tensor, t: int) -> torch.Tensor:  # a toy noise predictor, pointwise
        return 0.3 * torch.tanh(x)
    gens = lambda s: generator_noise([torch.Generator().manual_seed(s), torch.Generator().manual_seed(s + 1)])  # noqa: E731
    for method in ("sde", "posterior"):
        a = sde.sample(fn, mu, mu, sampler=method, draw=gens(3))
        b = sde.sample(fn, mu, mu, sampler=method, draw=gens(3))
        c = sde.sample(fn, mu, mu, sampler=method, draw=gens(4))
        assert torch.equal(a, b) and not torch.allclose(a, c)
        # item 1 with seed 4 = item 0 of a run seeded 4, 5: per-item noise does not depend on the batch
        d = sde.sample(fn, mu[1:], mu[1:], sampler=method, draw=generator_noise([torch.Generator().manual_seed(4)]))
        torch.testing.assert_close(d[0], a[1], atol=1e-6, rtol=0)
    # the ODE draws nothing during sampling
    calls: list[int] = []
    ode = sde.sample(fn, mu, mu, sampler="ode", draw=lambda s: calls.append(1) or torch.zeros(s))
    assert calls == []
    # ... and is a deterministic function of its initial state
    assert torch.equal(ode, sde.sample(fn, mu, mu, sampler="ode"))
    assert not torch.allclose(ode, sde.sample(fn, mu + 0.1, mu, sampler="ode"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"T": 0}, "T"), ({"T": 2.5}, "T"), ({"max_sigma": 0}, "max_sigma"), ({"eps": 0}, "eps"),
        ({"eps": 1.5}, "eps"), ({"schedule": "quadratic"}, "schedule"),
    ],
)
def test_bad_sde_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IRSDE(**kwargs)


def test_bad_sampler_and_start() -> None:
    sde = IRSDE(T=4)
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="sampler"):
        sde.sample(lambda a, t: a, x, x, sampler="ddim")
    with pytest.raises(ValueError, match="t_start"):
        sde.sample(lambda a, t: a, x, x, t_start=5)
