"""Tiled refinement: window geometry, seamless blending, and tiled == whole for local networks.

A network whose noise prediction is pointwise (here the *oracle* for clean image = condition,
``(x_t - mu) / sigmabar_t``) gives the same result tiled or whole, so any seam, misplaced window
or wrong weight shows up as a difference.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facemend.archs.refusion import IRSDE, RefineSettings, generator_noise, refine_images
from facemend.archs.refusion.tiling import blend_tiles, tile_starts, window_weight, windows


class OracleNoise(nn.Module):
    """Predicts the exact noise of ``x_t`` when the clean image is ``mu`` (pointwise)."""

    def __init__(self, steps: int, channels: int = 3, network_steps: int = 100) -> None:
        super().__init__()
        self.sde = IRSDE(max_sigma=50, T=steps)
        self.steps, self.network_steps = steps, network_steps
        self.img_channel = channels
        self.padding_multiple = 16
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.sizes.append((x.shape[-2], x.shape[-1]))
        step = round(float(t.reshape(-1)[0]) * self.steps / self.network_steps)
        return (x - mu) / self.sde.sigma_bar(step)


class BlockAutoencoder(nn.Module):
    """A stand-in latent autoencoder that is local to 8x8 blocks (so tiling must be exact).

    encode: 8x8 average pool, channels repeated to 8; skips: the padded image.
    decode: the skip image plus the upsampled latent change of the first 3 channels.
    """

    downscale = 8
    padding_multiple = 16
    embed_dim = 8

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = F.avg_pool2d(x, 8)
        return torch.cat([z, z, z[:, :2]], dim=1), [x]

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
        base = skips[0]
        delta = z[:, :3] - F.avg_pool2d(base, 8)
        return base + F.interpolate(delta, scale_factor=8, mode="nearest")


def _draw(seed: int, n: int = 1):
    return generator_noise([torch.Generator().manual_seed(seed + i) for i in range(n)])


def test_windows_cover_the_grid_with_overlap() -> None:
    assert tile_starts(100, 128, 16) == [0]
    starts = tile_starts(300, 128, 32)
    assert starts[0] == 0 and starts[-1] == 300 - 128
    assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:]))
    wins = windows(300, 200, 128, 32)
    covered = torch.zeros(300, 200)
    for w in wins:
        assert w.y1 - w.y0 == 128 and w.x1 - w.x0 == 128
        covered[w.y0 : w.y1, w.x0 : w.x1] += 1
    assert covered.min() >= 1
    weight = window_weight(wins[0], 300, 200, 32)
    assert weight.min() > 0 and weight[0, 0] == 1 and weight[-1, -1] < 0.05


@pytest.mark.parametrize("scale", [1, 8])
def test_blend_is_a_partition_of_unity(scale: int) -> None:
    target = torch.randn(2, 3, 37 * scale, 53 * scale)
    out = blend_tiles(lambda w: w.scaled(scale).slice(target), tuple(target.shape), (37, 53), 16, 5, scale=scale)
    torch.testing.assert_close(out, target, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("sampler", ["sde", "ode", "posterior"])
def test_pixel_tiles_equal_whole_image(sampler: str) -> None:
    image = torch.rand(2, 3, 150, 230, generator=torch.Generator().manual_seed(1))
    net = OracleNoise(steps=6)
    whole = refine_images(net, image, RefineSettings(sampler=sampler, steps=6), _draw(3, 2), clamp=False)
    assert max(h * w for h, w in net.sizes) == 150 * 230
    net.sizes.clear()
    tiled = refine_images(net, image, RefineSettings(sampler=sampler, steps=6, tile=64, overlap=16), _draw(3, 2), clamp=False)
    assert max(h * w for h, w in net.sizes) <= 64 * 64
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_posterior_sampler_with_perfect_noise_returns_the_clean_image() -> None:
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    out = refine_images(OracleNoise(steps=20), image, RefineSettings(sampler="posterior", steps=20), _draw(9), clamp=False)
    torch.testing.assert_close(out, image, atol=1e-4, rtol=0)


def test_latent_tiles_equal_whole_image() -> None:
    image = torch.rand(1, 3, 203, 150, generator=torch.Generator().manual_seed(4))  # not multiples of 16
    net = OracleNoise(steps=5, channels=8)
    ae = BlockAutoencoder()
    whole = refine_images(net, image, RefineSettings(sampler="sde", steps=5), _draw(5), autoencoder=ae, clamp=False)
    assert whole.shape == image.shape
    tiled = refine_images(net, image, RefineSettings(sampler="sde", steps=5, tile=64, overlap=16), _draw(5), autoencoder=ae, clamp=False)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)
    # the diffusion ran in latent space (an 8x smaller grid)
    assert max(h * w for h, w in net.sizes) <= 64 * 64 and max(net.sizes)[0] <= (208 // 8)
