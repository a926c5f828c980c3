"""Batched, antialiased affine warps between frames and face crops (kornia, on any device).

Every warp here goes through :func:`resample`: when the transform shrinks its source (a face larger
than its crop on the way in, a crop larger than its face on the way back), the source is first
low-pass filtered at the output's resolution so fine detail cannot alias, then sampled bicubically
with ``kornia.geometry.transform.warp_affine``.

Antialiasing filter. A separable Lanczos-windowed sinc with cutoff 0.6 cycles per *output* pixel
(1.2x the output Nyquist frequency, 3 lobes, support +-2.5 output px). Detail above ~0.8 cycles per
output pixel (what would fold back into coarse moire) is removed; the slightly-above-Nyquist
cutoff keeps the image's own band intact, so detect -> paste back of unmodified crops reproduces
the photo (50 dB on the astronaut at its own size; a cutoff exactly at Nyquist, as in a Lanczos-3
resize, gives 44 dB there, and ``F.interpolate(antialias=True)`` to the face size and back 39 dB).
kornia offers Gaussian and box filters, not this kernel, and ``F.interpolate`` only resizes along
the axes, so the kernel is built here and applied with :func:`kornia.filters.filter2d_separable`
(one kernel per face, batched). Sources shrunk by 8x or more (4x when cutting crops) are first
box-averaged by an integer factor so the kernel and the copies stay small.

Regions of interest. Faces are small next to a 1080p or 8000 px frame, so warps read and write
only a window around each face (:func:`face_windows`); a face never costs a full-frame copy.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from .alignment import affine_scale, compose_affine, invert_affine

#: Antialiasing low-pass: cutoff in cycles per output pixel, and Lanczos window lobes.
AA_CUTOFF = 0.6
AA_LOBES = 3
#: Half-width of the antialiasing kernel in output pixels.
AA_SUPPORT = AA_LOBES / (2 * AA_CUTOFF)

#: RGB fill of crop pixels outside the image for ``border="grey"`` (facexlib's (135, 133, 132) BGR).
GREY_FILL = (132 / 255, 133 / 255, 135 / 255)

_KORNIA_PADDING = {"grey": "fill", "black": "zeros", "edge": "border", "reflect": "reflection"}


def _windowed_sinc(x: torch.Tensor) -> torch.Tensor:
    """Lanczos-windowed sinc low-pass at :data:`AA_CUTOFF`, ``x`` in output pixels (unnormalised)."""
    fc, half = AA_CUTOFF, AA_SUPPORT
    y = 2 * fc * torch.sinc(2 * fc * x) * torch.sinc(x / half)
    return torch.where(x.abs() < half, y, torch.zeros_like(y))


def antialias_kernels(step: torch.Tensor) -> torch.Tensor | None:
    """Per-item 1-D low-pass kernels for shrinking by ``step`` source px per output px.

    Args:
        step: ``(n,)`` float, source pixels per output pixel; items with ``step <= 1`` get the
            identity kernel.

    Returns:
        ``(n, K)`` float32 kernels (odd ``K``, each summing to 1), or ``None`` when no item shrinks.
    """
    step = step.to(torch.float64)
    if not bool((step > 1.0 + 1e-6).any()):
        return None
    radius = int(math.ceil(AA_SUPPORT * float(step.max())))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=step.device)
    s = step.clamp_min(1.0)[:, None]
    k = _windowed_sinc(x[None, :] / s)
    ident = (x == 0).to(torch.float64).expand_as(k)
    k = torch.where(step[:, None] > 1.0 + 1e-6, k, ident)
    return (k / k.sum(dim=1, keepdim=True)).float()


def _box_reduce(src: torch.Tensor, m: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average ``factor x factor`` blocks of ``src`` and fix up ``m`` (source -> output) to match."""
    pooled = F.avg_pool2d(src, factor, stride=factor, ceil_mode=True)
    # pooled pixel j is centred on source coordinate factor * j + (factor - 1) / 2
    p = torch.tensor([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2]], dtype=m.dtype, device=m.device)
    return pooled, compose_affine(m, p.expand(m.shape[0], 2, 3))


def resample(
    src: torch.Tensor,
    m: torch.Tensor,
    dsize: tuple[int, int],
    border: str = "edge",
    fill: tuple[float, ...] | None = None,
    antialias: bool = True,
    reduce_ratio: float = 4.0,
) -> torch.Tensor:
    """Warp ``src`` by ``m`` into a ``dsize`` canvas, low-pass filtering first where ``m`` shrinks.

    Args:
        src: ``(n, C, h, w)`` float tensor (any channels, any device).
        m: ``(n, 2, 3)`` similarity/affine mapping source pixel coordinates to output pixel
            coordinates (pixel centres at integers, as ``cv2.warpAffine``).
        dsize: output ``(H, W)``.
        border: what output pixels mapping outside ``src`` get: ``"edge"`` (replicate),
            ``"reflect"``, ``"black"`` (zeros) or ``"grey"`` (``fill``, default :data:`GREY_FILL`).
        fill: per-channel values for ``border="grey"`` (length C).
        antialias: filter before shrinking (see the module notes); ``False`` samples directly.
        reduce_ratio: when every item shrinks by at least ``2 * reduce_ratio``, the source is
            first box-averaged by ``floor(step / reduce_ratio)`` (cheaper, slightly softer).

    Returns:
        ``(n, C, H, W)`` in ``src``'s dtype, on ``src``'s device. Bicubic sampling may overshoot the
        input range slightly; callers clamp images.
    """
    if src.shape[0] != m.shape[0]:
        raise ValueError(f"resample: {src.shape[0]} images but {m.shape[0]} matrices")
    m = m.to(device=src.device, dtype=torch.float64)
    if antialias:
        step = 1.0 / affine_scale(m)
        factor = int(float(step.min()) // reduce_ratio)
        if factor >= 2:
            src, m = _box_reduce(src, m, factor)
            step = step / factor
        k = antialias_kernels(step)
        if k is not None:
            mode = "reflect" if border == "reflect" else "replicate"
            kk = k.to(src.device, src.dtype)
            src = kornia.filters.filter2d_separable(src, kk, kk, border_type=mode)
    padding = _KORNIA_PADDING[border]
    fill_value = None
    if padding == "fill":
        values = fill if fill is not None else GREY_FILL
        if len(values) != src.shape[1]:
            values = tuple(values) + (0.0,) * (src.shape[1] - len(values))
        fill_value = torch.tensor(values[: src.shape[1]], dtype=src.dtype, device=src.device)
    return kornia.geometry.transform.warp_affine(
        src, m.to(src.dtype if src.dtype == torch.float64 else torch.float32), dsize, mode="bicubic",
        padding_mode=padding, align_corners=True, fill_value=fill_value,
    )


def footprints(inverse: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Bounding boxes of crops in the image.

    Args:
        inverse: ``(N, 2, 3)`` crop -> image transforms.
        crop_size: crop side in pixels.

    Returns:
        ``(N, 4)`` float64 ``(x_min, y_min, x_max, y_max)`` over the crop's outer pixel edges.
    """
    e = crop_size - 0.5
    corners = torch.tensor([[-0.5, -0.5], [e, -0.5], [-0.5, e], [e, e]], dtype=torch.float64)
    pts = corners @ inverse[:, :, :2].transpose(1, 2).to(torch.float64) + inverse[:, None, :, 2].to(torch.float64)
    return torch.cat([pts.min(dim=1).values, pts.max(dim=1).values], dim=1)


def face_windows(boxes: torch.Tensor, margin: torch.Tensor | float, height: int, width: int) -> torch.Tensor:
    """Integer windows ``(x0, y0, x1, y1)`` (end exclusive) covering ``boxes`` plus ``margin``, inside the frame.

    Args:
        boxes: ``(N, 4)`` float ``(x_min, y_min, x_max, y_max)`` pixel coordinates.
        margin: pixels to add on every side (scalar or ``(N,)``).
        height, width: frame size.

    Returns:
        ``(N, 4)`` int64; windows are at least 1x1 and never leave the frame.
    """
    margin = torch.as_tensor(margin, dtype=torch.float64)
    if margin.ndim == 0:
        margin = margin.expand(boxes.shape[0])
    b = boxes.to(torch.float64)
    x0 = torch.floor(b[:, 0] - margin).clamp(0, width - 1)
    y0 = torch.floor(b[:, 1] - margin).clamp(0, height - 1)
    x1 = torch.ceil(b[:, 2] + margin + 1).clamp(1, width)
    y1 = torch.ceil(b[:, 3] + margin + 1).clamp(1, height)
    x1 = torch.maximum(x1, x0 + 1)
    y1 = torch.maximum(y1, y0 + 1)
    return torch.stack([x0, y0, x1, y1], dim=1).to(torch.int64)


def common_windows(windows: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, int, int]:
    """Grow ``windows`` to one shared size (so they stack into a batch) without leaving the frame.

    Returns:
        ``(origins (N, 2) int64 (x0, y0), window_height, window_width)``; each grown window still
        contains its original window.
    """
    wc = min(int((windows[:, 2] - windows[:, 0]).max()), width)
    hc = min(int((windows[:, 3] - windows[:, 1]).max()), height)
    x0 = torch.minimum(windows[:, 0], torch.tensor(width - wc))
    y0 = torch.minimum(windows[:, 1], torch.tensor(height - hc))
    return torch.stack([x0, y0], dim=1), hc, wc


def translation(origins: torch.Tensor, sign: float) -> torch.Tensor:
    """``(N, 2, 3)`` float64 translations by ``sign * origin``."""
    t = torch.zeros(origins.shape[0], 2, 3, dtype=torch.float64)
    t[:, 0, 0] = 1
    t[:, 1, 1] = 1
    t[:, :, 2] = sign * origins.to(torch.float64)
    return t


def gather_windows(frames: torch.Tensor, frame_index: torch.Tensor, origins: torch.Tensor, hc: int, wc: int,
                   device: torch.device) -> torch.Tensor:
    """Copy ``(hc, wc)`` windows of ``frames`` into one ``(n, C, hc, wc)`` float32 tensor on ``device``.

    ``frames`` is ``(B, C, H, W)`` (any strides, e.g. a permuted IMAGE view) and is only read.
    """
    n = frame_index.shape[0]
    out = torch.empty(n, frames.shape[1], hc, wc, dtype=torch.float32, device=device)
    for i in range(n):
        f, x0, y0 = int(frame_index[i]), int(origins[i, 0]), int(origins[i, 1])
        out[i].copy_(frames[f, :, y0:y0 + hc, x0:x0 + wc])
    return out


def source_margin(affines: torch.Tensor) -> torch.Tensor:
    """Pixels of context a crop needs around its footprint: the antialiasing support plus bicubic taps."""
    step = 1.0 / affine_scale(affines)  # source px per crop px
    return torch.ceil(AA_SUPPORT * step.clamp_min(1.0)) + 3


def extract_crops(
    frames: torch.Tensor,
    frame_index: torch.Tensor,
    affines: torch.Tensor,
    crop_size: int,
    border: str = "grey",
    device: torch.device | None = None,
    max_batch_pixels: int = 2 * 1024 * 1024,
    out_device: torch.device | None = None,
) -> torch.Tensor:
    """Aligned face crops from ``frames`` (antialiased when a face is larger than its crop).

    A face more than 4x larger than its crop is first box-averaged by an integer factor (at most
    10% softer at the crop's Nyquist frequency), so a 3000 px face costs a few small windows of
    memory, not several copies of a 3000 px window.

    Args:
        frames: ``(B, 3, H, W)`` RGB float in ``[0, 1]``; may be a view of a ComfyUI IMAGE
            (``image.permute(0, 3, 1, 2)``); only the windows around the faces are read.
        frame_index: ``(N,)`` int64 frame of each face.
        affines: ``(N, 2, 3)`` image -> crop transforms.
        crop_size: side of the square crops.
        border: fill for crop pixels outside the frame (see :data:`~facemend.face.records.BORDERS`).
        device: compute device (default: ``frames``' device).
        max_batch_pixels: cap on window + crop pixels warped together (bounds memory).
        out_device: where the result goes (default: ``frames``' device).

    Returns:
        ``(N, 3, crop_size, crop_size)`` float32 in ``[0, 1]``.
    """
    n = frame_index.shape[0]
    height, width = frames.shape[-2:]
    out_device = out_device or frames.device
    device = device or out_device
    out = torch.empty(n, 3, crop_size, crop_size, dtype=torch.float32, device=out_device)
    if n == 0:
        return out
    affines = affines.to(torch.float64).cpu()
    windows = face_windows(footprints(invert_affine(affines), crop_size), source_margin(affines), height, width)
    for idx in pixel_chunks(windows, max_batch_pixels, crop_size * crop_size):
        origins, hc, wc = common_windows(windows[idx], height, width)
        src = gather_windows(frames, frame_index[idx], origins, hc, wc, device)
        m = compose_affine(affines[idx], translation(origins, +1.0))
        crops = resample(src, m, (crop_size, crop_size), border=border, reduce_ratio=2.0)
        out[idx] = crops.clamp_(0, 1).to(out_device)
    return out


def pixel_chunks(windows: torch.Tensor, max_pixels: int, crop_pixels: int = 0) -> list[torch.Tensor]:
    """Split face positions into consecutive chunks of bounded memory.

    A chunk of ``k`` faces costs ``k`` shared windows (the largest window of the chunk) plus ``k``
    crops of ``crop_pixels``; chunks stay under ``max_pixels`` (a single face always forms one).
    """
    chunks: list[torch.Tensor] = []
    start = 0
    n = windows.shape[0]
    sizes = (windows[:, 2:] - windows[:, :2]).tolist()
    while start < n:
        end = start + 1
        mw, mh = sizes[start]
        while end < n:
            w = max(mw, sizes[end][0])
            h = max(mh, sizes[end][1])
            if (w * h + crop_pixels) * (end + 1 - start) > max_pixels:
                break
            mw, mh = w, h
            end += 1
        chunks.append(torch.arange(start, end))
        start = end
    return chunks
