"""The mean-reverting SDE of IR-SDE / Refusion and its three reverse samplers.

Forward process (Luo et al., ICML 2023), discretised in ``T`` steps ``t = 1..T``::

    dx = theta_t (mu - x) dt + sigma_t dW,      sigma_t**2 / theta_t = 2 * max_sigma**2

with marginal ``x_t ~ N(mu + (x_0 - mu) exp(-thetabar_t dt), sigmabar_t**2)``,
``sigmabar_t**2 = max_sigma**2 (1 - exp(-2 thetabar_t dt))`` and ``dt`` chosen so that
``exp(-thetabar_T dt) = eps``: at ``t = T`` the state is ``mu`` plus noise of std ``max_sigma``.
The noise network predicts ``(x_t - mean_t) / sigmabar_t``; the score is ``-noise / sigmabar_t``.

Same numerics as the official ``codes/utils/sde_utils.py`` (``IRSDE``) of
Algolzw/image-restoration-sde: fp32 schedules built the same way, steps evaluated in the same
order. Differences, all explicit: the initial state and every random draw come from a caller's
noise source (seedable), the network time may be rescaled to its training ``T`` (see
:meth:`IRSDE.sample`), and nothing is printed or saved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

SCHEDULES = ("cosine", "linear", "constant")
SAMPLERS = ("sde", "ode", "posterior")

#: ``noise_fn(x_t, t)``: predicted noise for state ``x_t`` ``(B, C, H, W)`` at integer step ``t``.
NoiseFn = Callable[[torch.Tensor, int], torch.Tensor]
#: ``draw(shape)``: standard normal noise of ``shape`` (float32, any device).
NoiseDraw = Callable[[torch.Size], torch.Tensor]


def theta_schedule(name: str, T: int) -> torch.Tensor:
    """The ``T + 1`` mean-reversion speeds ``theta_0..theta_T`` (float32, CPU).

    ``cosine``: ``1 - alphabar`` of the improved-DDPM cosine schedule (s = 0.008) on ``T + 2``
    intervals, dropping both ends; ``linear``: ``1000 / (T+1) * linspace(1e-4, 0.02)``;
    ``constant``: ones.
    """
    if name == "cosine":
        n = T + 2
        s = 0.008
        grid = torch.linspace(0, n, n + 1, dtype=torch.float32)
        alphabar = torch.cos(((grid / n) + s) / (1 + s) * math.pi * 0.5) ** 2
        alphabar = alphabar / alphabar[0]
        return 1 - alphabar[1:-1]
    if name == "linear":
        n = T + 1
        scale = 1000 / n
        return torch.linspace(scale * 0.0001, scale * 0.02, n, dtype=torch.float32)
    if name == "constant":
        return torch.ones(T + 1, dtype=torch.float32)
    raise ValueError(f"unknown theta schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def generator_noise(generators: Sequence[torch.Generator]) -> NoiseDraw:
    """A :data:`NoiseDraw` giving item ``i`` of the batch its noise from ``generators[i]``.

    Each item's noise depends only on its own generator, so results do not change with batch
    chunking. Noise is drawn on each generator's device in float32.
    """
    gens = list(generators)

    def draw(shape: torch.Size) -> torch.Tensor:
        if shape[0] != len(gens):
            raise ValueError(f"noise for a batch of {shape[0]} requested from {len(gens)} generators")
        return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=torch.float32) for g in gens])

    return draw


class IRSDE:
    """Mean-reverting SDE with ``T`` steps (``t = 1..T``; ``t = 0`` only anchors the schedule).

    Args:
        max_sigma: stationary noise std. Values ``>= 1`` are on the 0-255 scale (50 -> 50/255),
            values below 1 on the 0-1 scale. Must be > 0.
        T: number of steps (>= 1).
        schedule: ``"cosine"`` (default), ``"linear"`` or ``"constant"`` theta schedule.
        eps: remaining weight of ``x_0`` at ``t = T`` (``exp(-thetabar_T dt)``), in ``(0, 1)``.

    Attributes (float32 CPU tensors, index ``t``): ``thetas``, ``sigmas``, ``thetas_cumsum``
    (``thetabar``), ``sigma_bars``; ``dt`` (0-d tensor); ``max_sigma`` (float, 0-1 scale).
    """

    def __init__(self, max_sigma: float = 50.0, T: int = 100, schedule: str = "cosine", eps: float = 0.005) -> None:
        if int(T) != T or T < 1:
            raise ValueError(f"T (steps) must be an integer >= 1, got {T}")
        if not max_sigma > 0:
            raise ValueError(f"max_sigma must be > 0 (values >= 1 are on the 0-255 scale), got {max_sigma}")
        if not 0 < eps < 1:
            raise ValueError(f"eps must be between 0 and 1 (exclusive), got {eps}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown theta schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        self.T = int(T)
        self.schedule = schedule
        self.eps = float(eps)
        self.max_sigma = max_sigma / 255 if max_sigma >= 1 else float(max_sigma)
        ms = self.max_sigma
        thetas = theta_schedule(schedule, self.T)
        self.thetas = thetas
        self.sigmas = torch.sqrt(ms**2 * 2 * thetas)
        self.thetas_cumsum = torch.cumsum(thetas, dim=0) - thetas[0]  # thetas[0] != 0: anchor t=0 at 0
        self.dt = -1 / self.thetas_cumsum[-1] * math.log(eps)
        self.sigma_bars = torch.sqrt(ms**2 * (1 - torch.exp(-2 * self.thetas_cumsum * self.dt)))

    # ----------------------------------------------------------------- marginals

    def mean_weight(self, t: int) -> torch.Tensor:
        """``exp(-thetabar_t dt)``: how much of ``x_0 - mu`` is left at step ``t`` (0-d tensor)."""
        return torch.exp(-self.thetas_cumsum[t] * self.dt)

    def mu_bar(self, x0: torch.Tensor, mu: torch.Tensor, t: int) -> torch.Tensor:
        """Marginal mean at step ``t``: ``mu + (x0 - mu) exp(-thetabar_t dt)`` (same shape as ``x0``)."""
        return mu + (x0 - mu) * torch.exp(-self.thetas_cumsum[t] * self.dt)

    def sigma_bar(self, t: int) -> torch.Tensor:
        """Marginal standard deviation at step ``t`` (0-d tensor; variance is its square)."""
        return self.sigma_bars[t]

    def initial_state(self, mu: torch.Tensor, z: torch.Tensor, t_start: int | None = None) -> torch.Tensor:
        """The state the reverse process starts from, built from the condition ``mu``.

        For ``t_start = T`` this is the official ``noise_state``: ``mu + max_sigma * z``. For a
        partial start (``t_start < T``) it is the marginal at ``t_start`` taking ``x_0 = mu``:
        ``mu + sigmabar_{t_start} * z`` (light refinement of an already good image).

        Args:
            mu: condition ``(B, C, H, W)`` (the degraded image or its latent).
            z: standard normal noise of the same shape.
            t_start: first reverse step, ``1..T`` (``None`` = ``T``).
        """
        t0 = self.T if t_start is None else int(t_start)
        if not 1 <= t0 <= self.T:
            raise ValueError(f"t_start must be in 1..{self.T}, got {t0}")
        if t0 == self.T:
            return mu + z.to(mu) * self.max_sigma
        return mu + self.sigma_bars[t0].to(mu.device) * z.to(mu)

    # ------------------------------------------------------------- reverse steps

    def score_from_noise(self, noise: torch.Tensor, t: int) -> torch.Tensor:
        """Score ``-noise / sigmabar_t`` from the network's noise prediction."""
        return -noise / self.sigma_bars[t]

    def reverse_sde_step(self, x: torch.Tensor, mu: torch.Tensor, noise: torch.Tensor, t: int, z: torch.Tensor) -> torch.Tensor:
        """One Euler-Maruyama step of the reverse-time SDE from ``t`` to ``t - 1``.

        ``x - (theta_t (mu - x) - sigma_t**2 score) dt - sigma_t sqrt(dt) z`` with standard normal ``z``.
        """
        score = self.score_from_noise(noise, t)
        drift = (self.thetas[t] * (mu - x) - self.sigmas[t] ** 2 * score) * self.dt
        return x - drift - self.sigmas[t] * (z.to(x) * math.sqrt(self.dt))

    def reverse_ode_step(self, x: torch.Tensor, mu: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
        """One Euler step of the probability-flow ODE: ``x - (theta_t (mu - x) - sigma_t**2 score / 2) dt``."""
        score = self.score_from_noise(noise, t)
        return x - (self.thetas[t] * (mu - x) - 0.5 * self.sigmas[t] ** 2 * score) * self.dt

    def x0_from_noise(self, x: torch.Tensor, mu: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
        """Estimate of the clean state: ``(x - mu - sigmabar_t noise) exp(thetabar_t dt) + mu``."""
        return (x - mu - self.sigma_bars[t] * noise) * torch.exp(self.thetas_cumsum[t] * self.dt) + mu

    def posterior_mean(self, x: torch.Tensor, x0: torch.Tensor, mu: torch.Tensor, t: int) -> torch.Tensor:
        """Mean of ``p(x_{t-1} | x_t, x_0)`` (the optimal reverse step)."""
        a = torch.exp(-self.thetas[t] * self.dt)
        b = torch.exp(-self.thetas_cumsum[t] * self.dt)
        c = torch.exp(-self.thetas_cumsum[t - 1] * self.dt)
        w_t = a * (1 - c**2) / (1 - b**2)
        w_0 = c * (1 - a**2) / (1 - b**2)
        return w_t * (x - mu) + w_0 * (x0 - mu) + mu

    def posterior_std(self, t: int) -> torch.Tensor:
        """Standard deviation of ``p(x_{t-1} | x_t, x_0)`` (0-d tensor, 0-1 scale)."""
        a = torch.exp(-2 * self.thetas[t] * self.dt)
        b = torch.exp(-2 * self.thetas_cumsum[t] * self.dt)
        c = torch.exp(-2 * self.thetas_cumsum[t - 1] * self.dt)
        var = (1 - a) * (1 - c) / (1 - b)
        log_var = torch.log(torch.clamp(var, min=1e-20 * self.dt))
        return (0.5 * log_var).exp() * self.max_sigma

    def reverse_posterior_step(self, x: torch.Tensor, mu: torch.Tensor, noise: torch.Tensor, t: int, z: torch.Tensor) -> torch.Tensor:
        """One posterior-sampling step: ``x_0`` from the noise, then sample ``p(x_{t-1} | x_t, x_0)``."""
        x0 = self.x0_from_noise(x, mu, noise, t)
        return self.posterior_mean(x, x0, mu, t) + self.posterior_std(t) * z.to(x)

    # ------------------------------------------------------------------ sampling

    def network_time(self, t: int, network_T: int | None = None) -> float:
        """The time value fed to the noise network at step ``t``.

        The released networks were trained with ``T = 100`` and see the integer step. Running
        with another ``T`` keeps the same continuous process (``dt`` is rescaled), so the network
        should see the matching point of *its* schedule: ``t * network_T / T``. ``None`` (or
        ``network_T == T``) gives ``t`` itself, as the official sampler does.
        """
        if network_T is None or network_T == self.T:
            return float(t)
        return t * network_T / self.T

    def sample(
        self,
        noise_fn: NoiseFn,
        x: torch.Tensor,
        mu: torch.Tensor,
        sampler: str = "sde",
        t_start: int | None = None,
        draw: NoiseDraw | None = None,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Run the reverse process from step ``t_start`` down to ``1``.

        Args:
            noise_fn: ``noise_fn(x_t, t)`` -> predicted noise (``t`` is the integer step; use
                :meth:`network_time` inside it when the network expects another scale).
            x: initial state ``(B, C, H, W)`` float32 (see :meth:`initial_state`); not modified.
            mu: condition, same shape.
            sampler: ``"sde"`` (reverse SDE), ``"ode"`` (probability-flow ODE, deterministic) or
                ``"posterior"`` (posterior sampling, Luo et al. 2024).
            t_start: first step (``None`` = ``T``).
            draw: source of the standard normal noise of the stochastic samplers, called once
                per step in step order with the state's shape (default: ``torch.randn``).
            on_step: called after each step as ``on_step(t, x_{t-1})`` (progress, interruption).

        Returns:
            The final state ``x_0`` estimate, float32, same shape as ``x`` (not clamped).
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        t0 = self.T if t_start is None else int(t_start)
        if not 1 <= t0 <= self.T:
            raise ValueError(f"t_start must be in 1..{self.T}, got {t0}")
        draw = draw or (lambda shape: torch.randn(shape))
        x = x.float().clone()
        mu = mu.float()
        for t in range(t0, 0, -1):
            noise = noise_fn(x, t).float()
            if sampler == "ode":
                x = self.reverse_ode_step(x, mu, noise, t)
            elif sampler == "sde":
                x = self.reverse_sde_step(x, mu, noise, t, draw(x.shape))
            else:
                x = self.reverse_posterior_step(x, mu, noise, t, draw(x.shape))
            if on_step is not None:
                on_step(t, x)
        return x
