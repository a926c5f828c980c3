"""Raw per-face degradation measures on the face's own pixel grid (what :mod:`facemend.face.quality` scores).

:func:`measure_faces` maps each aligned crop back onto its source image's pixel grid (one grid px
per source px, on integer source pixels, the source's axes; crop resolution for a face larger than
its crop) and measures there, batched and on any device:

* edge width (:func:`_blur_sigma`): re-blur ratio of Sobel gradient energies on the strongest edges;
* noise (:func:`_noise_sigma`): Immerkaer's second-difference kernel, median of the response;
* JPEG blocking (:func:`_blockiness`): 8-phase fold of neighbour differences on a wider window.

Hand-written pieces and why: none of the three is a kornia, OpenCV or scikit-image primitive
(``skimage.restoration.estimate_sigma`` and ``skimage.measure.blur_effect`` are NumPy loops per
image, CPU only); each is built here from :func:`kornia.filters.filter2d`,
:func:`kornia.filters.spatial_gradient`, :func:`kornia.filters.gaussian_blur2d`, a median and a
matrix product. The grey conversion and the first box average are one strided convolution
(:func:`_luma_reduced`). Where the numbers come from and how they become cues: the notes of
:mod:`facemend.face.quality`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import kornia
import torch

from .alignment import compose_affine, invert_affine
from .warp import resample

#: The face window analysed, in FFHQ-512 crop coordinates (x0, y0, x1, y1): eyes, nose and mouth.
FACE_WINDOW_512 = (128.0, 160.0, 384.0, 416.0)
#: The window searched for JPEG blocks, as a multiple of the face window's side (same centre):
#: 384 FFHQ-512 px, the face with its outline, hair and some background. Blocks are everywhere in a
#: JPEG, and more of them make the 8-phase fold steadier.
BLOCK_WINDOW = 1.5
#: Grid pixels added on each side of the largest window (room for the Gaussian bands' support).
MARGIN = 12


@dataclass(frozen=True)
class Measures:
    """Raw per-face measures, each ``(N,)`` float32 on the crops' device (their ranges: :mod:`facemend.face.quality`).

    Attributes:
        face_px: side of the FFHQ face square in source px.
        blur_px: edge width, Gaussian sigma in grid px: source px for a face enlarged into its crop
            (``s <= 1``), crop px for a larger face (then the crop's resolution is the limit, and a
            face that is sharp in its crop is sharp for the restorer).
        noise: noise std of the luminance, ``[0, 1]`` units.
        blockiness: JPEG block-boundary strength (0 where not measured).
        block_measured: bool, where the grid is the source's pixel grid (blocking is measured).
    """

    face_px: torch.Tensor
    blur_px: torch.Tensor
    noise: torch.Tensor
    blockiness: torch.Tensor
    block_measured: torch.Tensor


@dataclass(frozen=True)
class _Grid:
    """Where each face's analysis windows lie (all CPU tensors, one row per face).

    Attributes:
        m: ``(N, 2, 3)`` float64 crop -> canvas transforms.
        scale: ``(N,)`` float64 source px per crop px; step: ``(N,)`` source px per grid px.
        canvas: common canvas side in grid px.
        start, side: ``(N,)`` int64 first canvas row/column and side of the face window.
        block_start, block_side: the same for the :data:`BLOCK_WINDOW`.
    """

    m: torch.Tensor
    scale: torch.Tensor
    step: torch.Tensor
    canvas: int
    start: torch.Tensor
    side: torch.Tensor
    block_start: torch.Tensor
    block_side: torch.Tensor


def _grid_transforms(
    n: int, crop_size: int, face_scale: torch.Tensor | None, affines: torch.Tensor | None, padding: float
) -> _Grid:
    """Crop -> analysis-grid transforms and window positions.

    A face's window covers the same source pixels whatever else is in the batch: its first pixel
    is fixed in source coordinates (on an integer source pixel where the grid is the source grid)
    and the canvas is placed around it, so batching changes nothing but the canvas' outer margin.
    """
    if affines is not None:
        to_src = invert_affine(affines.to(torch.float64).cpu())
        scale = to_src[:, :, :2].det().abs().sqrt()
    else:
        scale = (face_scale.to(torch.float64).cpu() if face_scale is not None else torch.ones(n, dtype=torch.float64))
        to_src = torch.zeros(n, 2, 3, dtype=torch.float64)
        to_src[:, 0, 0] = scale
        to_src[:, 1, 1] = scale
    step = scale.clamp_min(1.0)
    face = crop_size / padding
    x0, y0, x1, y1 = (v / 512.0 * face + (crop_size - face) / 2 for v in FACE_WINDOW_512)
    centre = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, 1.0], dtype=torch.float64)
    side = ((x1 - x0) * scale / step).round().clamp_min(8).to(torch.int64)
    extra = (side.to(torch.float64) * (BLOCK_WINDOW - 1) / 2).round().to(torch.int64)
    block_side = side + 2 * extra
    canvas = int(block_side.max()) + 2 * MARGIN
    start = (canvas - side) // 2
    c_src = to_src @ centre  # (N, 2) window centre in source coordinates
    first = c_src - step[:, None] * (side[:, None].to(torch.float64) - 1) / 2
    first = torch.where(step[:, None] == 1.0, first.round(), first)  # grid px on integer source px
    origin = first - step[:, None] * start[:, None].to(torch.float64)
    g = torch.zeros(n, 2, 3, dtype=torch.float64)  # source -> grid
    g[:, 0, 0] = 1 / step
    g[:, 1, 1] = 1 / step
    g[:, :, 2] = -origin / step[:, None]
    return _Grid(compose_affine(g, to_src), scale, step, canvas, start, side, start - extra, block_side)


#: ITU-R BT.601 luma weights (kornia's ``rgb_to_grayscale``).
_LUMA = (0.299, 0.587, 0.114)


def _luma_reduced(crops: torch.Tensor, m: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Luma of ``crops``, box-averaged by ``factor`` when >= 2, with ``m`` (crop -> grid) adjusted.

    Hand-written: one strided convolution does the grey conversion and the box average together
    (``rgb_to_grayscale`` then ``avg_pool2d`` reads the 512 px crop twice and costs 1.5 ms more per
    face on a 2-core Xeon). The box average takes the whole part of the shrink (3x3 for a 160 px
    face in a 512 crop, i.e. about one source pixel), so :func:`resample`'s windowed sinc only
    filters the small remainder.
    """
    x = crops.to(torch.float32)
    if factor < 2:
        return kornia.color.rgb_to_grayscale(x), m
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1).expand(1, 3, factor, factor)
    y = torch.nn.functional.conv2d(x, w / (factor * factor), stride=factor)
    off = (factor - 1) / 2  # reduced pixel j is centred on crop coordinate factor * j + off
    p = torch.tensor([[factor, 0.0, off], [0.0, factor, off]], dtype=m.dtype)
    return y, compose_affine(m, p.expand(m.shape[0], 2, 3))


def _window_mask(start: torch.Tensor, side: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """``(N, 1, size, size)`` bool: rows and columns ``start .. start + side - 1`` of each face."""
    idx = torch.arange(size, device=device)
    lo = start.to(device)[:, None]
    inside = (idx[None, :] >= lo) & (idx[None, :] < lo + side.to(device)[:, None])  # (N, size)
    return (inside[:, :, None] & inside[:, None, :]).unsqueeze(1)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = mask.to(x.dtype)
    return (x * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)


#: Immerkaer's noise kernel (sum of squares 36): second differences, blind to linear shading.
_IMMERKAER = ((1.0, -2.0, 1.0), (-2.0, 4.0, -2.0), (1.0, -2.0, 1.0))


def _noise_sigma(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Robust Immerkaer estimate of the noise std of ``y`` ``(N, 1, H, W)`` over ``mask``."""
    k = torch.tensor(_IMMERKAER, dtype=y.dtype, device=y.device)[None]
    r = kornia.filters.filter2d(y, k, border_type="reflect").abs()
    r = torch.where(mask, r, torch.full_like(r, float("nan")))
    return r.flatten(1).nanmedian(dim=1).values / (0.6745 * 6.0)


def _gauss(y: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(y, (k, k), (sigma, sigma), border_type="reflect")


#: Re-blur used by the edge-width estimate, in grid px.
REBLUR_SIGMA = 2.0
#: Share of the window's pixels (strongest re-blurred gradients) taken as edges.
EDGE_SHARE = 0.1


def _grad_energy(y: torch.Tensor) -> torch.Tensor:
    """Squared normalised-Sobel gradient magnitude of ``(N, 1, H, W)`` -> ``(N, 1, H, W)``."""
    g = kornia.filters.spatial_gradient(y, mode="sobel", normalized=True)
    return g.pow(2).sum(dim=2)


@functools.cache
def _noise_gains() -> tuple[float, float]:
    """Gradient energy that unit white noise leaves unblurred and after the re-blur."""
    imp = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    imp[..., 20, 20] = 1.0
    return float(_grad_energy(imp).sum()), float(_grad_energy(_gauss(imp, REBLUR_SIGMA)).sum())


def _blur_sigma(y: torch.Tensor, ya: torch.Tensor, mask: torch.Tensor, sigma_n: torch.Tensor) -> torch.Tensor:
    """Edge width (Gaussian sigma, grid px) of ``y`` ``(N, 1, H, W)`` over ``mask``, by re-blurring.

    A step edge blurred by ``sigma`` has peak gradient ``~ 1 / sigma``; re-blurred by ``a`` it has
    ``~ 1 / sqrt(sigma^2 + a^2)``, so with ``R^2`` the ratio of the two gradient energies on the
    edges, ``sigma = a / sqrt(R^2 - 1)`` (it includes the Sobel operator's own ~0.7 px width). Edges
    are the :data:`EDGE_SHARE` strongest re-blurred gradients; the noise's expected gradient energy
    is subtracted from both (noise would otherwise look like fine detail). ``ya`` is ``y`` blurred by
    :data:`REBLUR_SIGMA`.
    """
    e0 = _grad_energy(y)
    ea = _grad_energy(ya)
    masked = torch.where(mask, ea, torch.full_like(ea, float("nan"))).flatten(1)
    thr = masked.nanquantile(1 - EDGE_SHARE, dim=1)
    edges = mask & (ea >= thr[:, None, None, None])
    g0, ga = _noise_gains()
    var = sigma_n.pow(2)
    r2 = (_masked_mean(e0, edges) - var * g0) / (_masked_mean(ea, edges) - var * ga).clamp_min(1e-12)
    return REBLUR_SIGMA / (r2 - 1).clamp_min(1e-4).sqrt()


def _phase_excess(img: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(N,)`` strongest 8-phase mean of ``|img[:, :, j+1] - img[:, :, j]|`` minus the mean of the
    other 7 phases, over pixel pairs inside ``w`` (``(N, H, W)`` float 0/1)."""
    d = (img[:, :, 1:] - img[:, :, :-1]).abs()
    wd = w[:, :, 1:] * w[:, :, :-1]
    cols = torch.arange(d.shape[-1], device=img.device)
    onehot = torch.nn.functional.one_hot(cols % 8, 8).to(img.dtype)  # (W-1, 8)
    phase = ((d * wd).sum(1) @ onehot) / (wd.sum(1) @ onehot).clamp_min(1.0)  # (N, 8)
    top = phase.max(dim=1).values
    return top - (phase.sum(1) - top) / 7


def _blockiness(y: torch.Tensor, smooth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """JPEG block-boundary strength of ``y`` ``(N, 1, H, W)`` over ``mask``.

    Per axis, neighbour differences are averaged per position modulo 8 (a one-hot matrix product:
    deterministic on every device, unlike a scatter); the excess of the strongest phase over the
    others (an absolute difference: noise raises every phase alike and cancels) is averaged over
    both axes and divided by the mean neighbour difference of ``smooth`` (``y`` blurred at sigma
    2, which JPEG leaves nearly intact), so the measure does not depend on the face's contrast.
    A ratio of phases would not do: re-compressing adds ringing inside blocks, raising all phases.
    """
    w = mask[:, 0].to(y.dtype)
    img, sm = y[:, 0], smooth[:, 0]
    excess = (_phase_excess(img, w) + _phase_excess(img.transpose(1, 2), w.transpose(1, 2))) / 2
    activity = (_phase_excess_base(sm, w) + _phase_excess_base(sm.transpose(1, 2), w.transpose(1, 2))) / 2
    return excess / activity.clamp_min(1e-6)


def _phase_excess_base(img: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(N,)`` mean ``|img[:, :, j+1] - img[:, :, j]|`` over pixel pairs inside ``w``."""
    d = (img[:, :, 1:] - img[:, :, :-1]).abs()
    wd = w[:, :, 1:] * w[:, :, :-1]
    return (d * wd).flatten(1).sum(1) / wd.flatten(1).sum(1).clamp_min(1.0)


def measure_faces(
    crops: torch.Tensor,
    face_scale: torch.Tensor | None = None,
    *,
    affines: torch.Tensor | None = None,
    padding: float = 1.0,
) -> Measures:
    """Measure resolution, blur, noise and blocking of each face crop (no calibration applied).

    Args:
        crops: ``(N, 3, S, S)`` RGB float in ``[0, 1]`` (any device; never modified), FFHQ-aligned
            with ``padding`` (the crops of :func:`~facemend.face.pipeline.detect_and_align`).
        face_scale: ``(N,)`` source px per crop px (:func:`source_scale`), or ``None``: the crops
            are taken as native (one crop px = one source px).
        affines: ``(N, 2, 3)`` source -> crop transforms (``FaceSet.affines``); when given, the grid
            follows the source's axes (needed to find JPEG blocks in rotated faces) and
            ``face_scale`` is read from them.
        padding: the crops' ``padding`` (``FaceSet.padding``, >= 1).

    Returns:
        :class:`Measures` on ``crops``' device. Deterministic; each face's values do not depend
        on the other faces of the batch beyond float rounding.
    """
    if crops.ndim != 4 or crops.shape[1] != 3 or crops.shape[2] != crops.shape[3]:
        raise ValueError(f"FaceMend quality: crops must be square RGB (N, 3, S, S); got {tuple(crops.shape)}")
    if not crops.is_floating_point():
        raise ValueError(f"FaceMend quality: crops must be float in [0, 1]; got {crops.dtype}")
    n, _, size, _ = crops.shape
    device = crops.device
    for name, t in (("face_scale", face_scale), ("affines", affines)):
        if t is not None and t.shape[0] != n:
            raise ValueError(f"FaceMend quality: {n} crops but {t.shape[0]} {name}")
    if n == 0:
        z = torch.zeros(0, dtype=torch.float32, device=device)
        return Measures(z, z, z, z, torch.zeros(0, dtype=torch.bool, device=device))
    with torch.inference_mode():
        g = _grid_transforms(n, size, face_scale, affines, padding)
        grid = torch.empty(n, 1, g.canvas, g.canvas, dtype=torch.float32, device=device)
        factors = (1 / g.scale).floor().clamp(1, 64).to(torch.int64)
        for f in torch.unique(factors).tolist():  # one box factor per face, whatever the batch
            idx = (factors == f).nonzero().flatten()
            if len(idx) == n:  # the usual case: no gather (a copy of every crop)
                y, m = _luma_reduced(crops, g.m, int(f))
                grid = resample(y, m, (g.canvas, g.canvas), border="edge")
                break
            y, m = _luma_reduced(crops[idx.to(device)], g.m[idx], int(f))
            grid[idx.to(device)] = resample(y, m, (g.canvas, g.canvas), border="edge")
        smooth = _gauss(grid, REBLUR_SIGMA)
        native = (g.step <= 1.0).to(device)
        block_mask = _window_mask(g.block_start, g.block_side, g.canvas, device)
        block = torch.where(native, _blockiness(grid, smooth, block_mask), torch.zeros(n, device=device))
        c0 = int(g.start.min()) - MARGIN  # the face windows and their margin, for the costlier filters
        c1 = int((g.start + g.side).max()) + MARGIN
        grid, smooth = grid[..., c0:c1, c0:c1], smooth[..., c0:c1, c0:c1]
        mask = _window_mask(g.start - c0, g.side, c1 - c0, device)
        noise = _noise_sigma(grid, mask)
        blur = _blur_sigma(grid, smooth, mask, noise)  # grid px: the finer of source and crop px
        face_px = (g.scale * size / padding).to(device, torch.float32)
        return Measures(face_px=face_px, blur_px=blur, noise=noise, blockiness=block, block_measured=native)
