"""Overlapping tiles with feathered blending, so large images run in bounded memory.

A grid of windows covers an ``H x W`` plane; each window's result is weighted by a ramp that
rises over the overlap on sides shared with a neighbour (and is flat on the image border), and
the weighted results are divided by the summed weights. Every pixel gets a positive weight, so
the blend is exact where tiles agree and smooth where they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Window:
    """A tile ``[y0, y1) x [x0, x1)`` on the grid."""

    y0: int
    y1: int
    x0: int
    x1: int

    def scaled(self, factor: int) -> Window:
        """The same window on a grid ``factor`` times finer (latent -> pixels)."""
        return Window(self.y0 * factor, self.y1 * factor, self.x0 * factor, self.x1 * factor)

    def slice(self, t: torch.Tensor) -> torch.Tensor:
        """``t[..., y0:y1, x0:x1]`` (a view)."""
        return t[..., self.y0 : self.y1, self.x0 : self.x1]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap``
    shared pixels between neighbours; the last tile ends exactly at ``length``."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """All windows covering an ``height x width`` grid, row by row (one window if it fits)."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got {tile}, {overlap}")
    return [
        Window(y, min(y + tile, height), x, min(x + tile, width))
        for y in tile_starts(height, tile, overlap)
        for x in tile_starts(width, tile, overlap)
    ]


def _ramp(length: int, start: int, stop: int, total: int, overlap: int) -> torch.Tensor:
    w = torch.ones(length)
    n = min(overlap, length // 2)
    if n <= 0:
        return w
    ramp = torch.arange(1, n + 1, dtype=torch.float32) / (n + 1)
    if start > 0:
        w[:n] = torch.minimum(w[:n], ramp)
    if stop < total:
        w[-n:] = torch.minimum(w[-n:], ramp.flip(0))
    return w


def window_weight(win: Window, height: int, width: int, overlap: int) -> torch.Tensor:
    """Blend weight ``(y1 - y0, x1 - x0)`` in ``(0, 1]`` for ``win`` on a ``height x width`` grid."""
    wy = _ramp(win.y1 - win.y0, win.y0, win.y1, height, overlap)
    wx = _ramp(win.x1 - win.x0, win.x0, win.x1, width, overlap)
    return wy[:, None] * wx[None, :]


def blend_tiles(
    fn: Callable[[Window], torch.Tensor],
    shape: tuple[int, int, int, int],
    grid: tuple[int, int],
    tile: int,
    overlap: int,
    scale: int = 1,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Evaluate ``fn`` on every window of ``grid`` and blend the results.

    Args:
        fn: ``fn(window)`` -> ``(B, C, h * scale, w * scale)`` result for that window of the grid.
        shape: ``(B, C, H, W)`` of the blended output (``H = grid_h * scale``).
        grid: ``(grid_h, grid_w)``, the plane the windows are laid on.
        tile, overlap: window size and minimum overlap, in grid units.
        scale: output pixels per grid unit (e.g. 8 when decoding latent windows to pixels).
        device: where the output lives (default: that of the first tile result).

    Returns:
        ``(B, C, H, W)`` float32. With a single window this is ``fn``'s result itself.
    """
    gh, gw = grid
    wins = windows(gh, gw, tile, overlap)
    if len(wins) == 1:
        return fn(wins[0]).float()
    out: torch.Tensor | None = None
    total = None
    for win in wins:
        y = fn(win).float()
        if out is None:
            dev = device or y.device
            out = torch.zeros(shape, dtype=torch.float32, device=dev)
            total = torch.zeros((1, 1, shape[2], shape[3]), dtype=torch.float32, device=dev)
        w = window_weight(win, gh, gw, overlap).to(out.device)
        if scale != 1:
            w = w.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        big = win.scaled(scale)
        big.slice(out).add_(y.to(out.device) * w)
        big.slice(total).add_(w)
    assert out is not None and total is not None
    return out / total
