"""Diffusion refinement of whole images or face crops with a Refusion / IR-SDE noise network.

Follows the official test scripts: the condition ``mu`` is the degraded image (or, for latent
Refusion, its latent), the reverse process starts from ``mu + max_sigma * z`` (``noise_state``)
and runs the chosen sampler down to step 1; the result is the image (or the decoded latent).
Large inputs are handled in overlapping tiles: at every step the noise prediction is computed
tile by tile and blended, so the state stays global and seams are smoothed at each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .autoencoder import LatentUNet
from .layers import pad_to_multiple
from .sde import IRSDE, SAMPLERS, SCHEDULES, NoiseDraw
from .tiling import Window, blend_tiles, windows

#: Steps the released networks were trained with (every official config uses ``T: 100``).
TRAINING_STEPS = 100


@dataclass(frozen=True)
class RefineSettings:
    """Sampler settings; defaults are the paper's Refusion settings.

    Attributes:
        sampler: ``"sde"`` (reverse SDE, the paper's sampler), ``"ode"`` (deterministic
            probability-flow ODE) or ``"posterior"`` (posterior sampling).
        steps: number of steps ``T`` of the SDE (>= 1).
        max_sigma: stationary noise std; ``>= 1`` means the 0-255 scale (50 = 50/255).
        eps: weight of the clean image left at ``t = T``.
        schedule: ``"cosine"``, ``"linear"`` or ``"constant"``.
        strength: fraction of the reverse process to run, in ``[0, 1]``: 1 starts from pure
            noise around the input (full restoration), smaller values start part-way for a
            light refinement, 0 returns the input unchanged.
        network_steps: ``T`` the network was trained with; its time input is rescaled when
            ``steps`` differs (see :meth:`IRSDE.network_time`).
        tile: tile side in the network's own grid (pixels, or latent pixels for latent models);
            inputs up to this size run in one piece, exactly like the official code.
        overlap: overlap between neighbouring tiles, same units.
    """

    sampler: str = "sde"
    steps: int = 100
    max_sigma: float = 50.0
    eps: float = 0.005
    schedule: str = "cosine"
    strength: float = 1.0
    network_steps: int = TRAINING_STEPS
    tile: int = 512
    overlap: int = 64

    def validate(self) -> None:
        """Raise ``ValueError`` with an actionable message for out-of-range settings."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be a whole number >= 1, got {self.steps}")
        if not self.max_sigma > 0:
            raise ValueError(f"max_sigma must be > 0 (e.g. 50 on the 0-255 scale), got {self.max_sigma}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be between 0 and 1 (e.g. 0.005), got {self.eps}")
        if not 0 <= self.strength <= 1:
            raise ValueError(f"strength must be between 0 and 1, got {self.strength}")
        if self.tile < 64:
            raise ValueError(f"tile size must be at least 64, got {self.tile}")
        if not 0 <= self.overlap < self.tile // 2:
            raise ValueError(f"tile overlap must be between 0 and half the tile size ({self.tile // 2}), got {self.overlap}")

    def start_step(self) -> int:
        """First reverse step: ``round(strength * steps)`` (0 = nothing to do)."""
        if self.strength <= 0:
            return 0
        return max(1, min(int(self.steps), round(self.strength * self.steps)))

    def make_sde(self) -> IRSDE:
        """The :class:`IRSDE` for these settings."""
        return IRSDE(max_sigma=self.max_sigma, T=int(self.steps), schedule=self.schedule, eps=self.eps)


def seed_generators(seed: int, count: int, first_index: int = 0) -> list[torch.Generator]:
    """CPU generators for items ``first_index .. first_index + count - 1``: item ``i`` uses
    ``seed + i`` (mod 2**64), so an image's noise does not depend on batch chunking."""
    return [torch.Generator().manual_seed((int(seed) + first_index + i) % 2**64) for i in range(count)]


def minimum_side(net: nn.Module, autoencoder: LatentUNet | None = None) -> int:
    """Smallest image side the network pair accepts: its padding multiple (16 for Refusion)."""
    m = int(getattr(net, "padding_multiple", 1))
    if autoencoder is not None:
        m = max(m, autoencoder.padding_multiple)
    return m


def refine_images(
    net: nn.Module,
    images: torch.Tensor,
    settings: RefineSettings,
    draw: NoiseDraw,
    autoencoder: LatentUNet | None = None,
    on_step: Callable[[int], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    clamp: bool = True,
) -> torch.Tensor:
    """Refine RGB images with the reverse IR-SDE.

    Args:
        net: a noise network ``net(x_t, mu, t)`` (ConditionalNAFNet / ConditionalUNet) on the
            images' device. Latent networks (8 channels) need ``autoencoder``.
        images: ``(B, 3, H, W)`` RGB float in ``[0, 1]`` (not modified); every side at least
            :func:`minimum_side`.
        settings: sampler settings (validated here).
        draw: standard normal noise source (e.g. :func:`~.sde.generator_noise`); called first for
            the initial state, then once per stochastic step.
        autoencoder: the latent-Refusion U-Net for latent networks.
        on_step: called after every reverse step with the step index ``t`` (progress,
            interruption checks: raising stops the run).
        on_phase: called with ``"encode"``, ``"diffuse"``, ``"decode"`` before each phase (latent
            models) or ``"diffuse"`` (pixel models), so callers can load the model a phase needs.
        clamp: clamp the result to ``[0, 1]`` (turn off only to compare raw numerics).

    Returns:
        ``(B, 3, H, W)`` float32 RGB, clamped to ``[0, 1]`` unless ``clamp`` is False.
    """
    settings.validate()
    _check_pair(net, autoencoder)
    b, c, h, w = images.shape
    if c != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W), got {c} channels")
    side = minimum_side(net, autoencoder)
    if min(h, w) < side:
        raise ValueError(
            f"the image is {w}x{h} pixels but this model needs at least {side}x{side} "
            f"(its padding multiple); upscale or pad the image first"
        )
    t0 = settings.start_step()
    if b == 0 or t0 == 0:
        return images.float().clamp(0, 1) if clamp else images.float().clone()
    sde = settings.make_sde()
    step = (lambda t, _x: on_step(t)) if on_step is not None else None
    if autoencoder is None:
        if on_phase is not None:
            on_phase("diffuse")
        out = _diffuse(net, sde, settings, images.float(), draw, t0, step)
    else:
        out = _refine_latent(net, autoencoder, images.float(), sde, settings, draw, t0, step, on_phase)
    return out.clamp(0, 1) if clamp else out


def _check_pair(net: nn.Module, autoencoder: LatentUNet | None) -> None:
    channels = getattr(net, "img_channel", 3)
    if autoencoder is None and channels != 3:
        raise ValueError(
            f"this noise network works in a {channels}-channel latent space and needs its latent-Refusion "
            "autoencoder (the U-Net that encodes images to that latent)"
        )
    if autoencoder is not None:
        if channels == 3:
            raise ValueError(
                "an autoencoder was given but the noise network works on RGB pixels; remove the autoencoder "
                "or use a latent (8-channel) Refusion network"
            )
        if autoencoder.embed_dim != channels:
            raise ValueError(
                f"the autoencoder's latent has {autoencoder.embed_dim} channels but the noise network expects {channels}"
            )


def _diffuse(
    net: nn.Module,
    sde: IRSDE,
    settings: RefineSettings,
    mu: torch.Tensor,
    draw: NoiseDraw,
    t0: int,
    on_step: Callable[[int, torch.Tensor], None] | None,
) -> torch.Tensor:
    """Reverse process on ``mu``'s grid with tiled, blended noise predictions."""
    grid = (mu.shape[-2], mu.shape[-1])

    def noise_fn(x_t: torch.Tensor, t: int) -> torch.Tensor:
        tn = torch.tensor([sde.network_time(t, settings.network_steps)], device=x_t.device)
        return blend_tiles(
            lambda win: net(win.slice(x_t), win.slice(mu), tn), x_t.shape, grid, settings.tile, settings.overlap
        )

    x_start = sde.initial_state(mu, draw(mu.shape), t0)
    return sde.sample(noise_fn, x_start, mu, sampler=settings.sampler, t_start=t0, draw=draw, on_step=on_step)


def _refine_latent(
    net: nn.Module,
    ae: LatentUNet,
    images: torch.Tensor,
    sde: IRSDE,
    settings: RefineSettings,
    draw: NoiseDraw,
    t0: int,
    on_step: Callable[[int, torch.Tensor], None] | None,
    on_phase: Callable[[str], None] | None,
) -> torch.Tensor:
    """Encode -> diffuse the latent -> decode with the encoder's skip features.

    The image is reflect-padded to the autoencoder's multiple (as its ``encode`` does) and
    encoded/decoded in pixel tiles of ``settings.tile`` (rounded down to that multiple); each
    decoded tile reuses the skip features of its own encoder pass (recomputed, so only one tile's
    features are in memory). With a single tile this is exactly the official pipeline.
    """
    b, _, h, w = images.shape
    f = ae.downscale
    padded = pad_to_multiple(images, ae.padding_multiple, mode="reflect")
    grid = (padded.shape[-2] // f, padded.shape[-1] // f)
    tile_px = max(ae.padding_multiple, settings.tile // ae.padding_multiple * ae.padding_multiple)
    tile_l = tile_px // f
    overlap_l = min(math.ceil(settings.overlap / f), max(0, tile_l // 2 - 1))
    single = len(windows(grid[0], grid[1], tile_l, overlap_l)) == 1

    if on_phase is not None:
        on_phase("encode")
    cached: list[torch.Tensor] | None = None
    if single:
        mu, cached = ae.encode(padded)
        mu = mu.float()
    else:
        mu = blend_tiles(
            lambda win: ae.encode(win.scaled(f).slice(padded))[0], (b, ae.embed_dim, *grid), grid, tile_l, overlap_l
        )

    if on_phase is not None:
        on_phase("diffuse")
    z0 = _diffuse(net, sde, settings, mu, draw, t0, on_step)

    if on_phase is not None:
        on_phase("decode")
    if single:
        assert cached is not None
        out = ae.decode(z0, cached).float()
    else:

        def decode(win: Window) -> torch.Tensor:
            _, skips = ae.encode(win.scaled(f).slice(padded))
            return ae.decode(win.slice(z0), skips)

        out = blend_tiles(decode, (b, 3, grid[0] * f, grid[1] * f), grid, tile_l, overlap_l, scale=f)
    return out[..., :h, :w]

