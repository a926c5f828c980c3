"""upfirdn2d (upsample, FIR filter, downsample) in plain PyTorch.

StyleGAN2's resampling: insert ``up - 1`` zeros between pixels, pad (negative pads crop), convolve
every channel with the same 2-D FIR kernel, keep every ``down``-th pixel. The official code uses a
compiled CUDA kernel on GPUs; here the same operation is a zero-insertion reshape, ``F.pad`` and a
depthwise ``F.conv2d`` (stride = ``down``), so it runs on any device and under autocast.
``torch``/``kornia`` filters have no zero-insertion upsampling with asymmetric padding, hence
this small function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def make_resample_kernel(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The normalised 2-D FIR kernel ``outer(taps, taps) / sum``: ``(K, K)`` float32, sums to 1."""
    k = torch.as_tensor(list(taps), dtype=torch.float32)
    k2 = k[None, :] * k[:, None]
    return k2 / k2.sum()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel``, downsample (same on both axes).

    Args:
        x: ``(B, C, H, W)`` features, any float dtype and device.
        kernel: ``(K, K)`` FIR kernel (as in the StyleGAN2 papers it is applied as a true
            convolution, i.e. flipped; the usual kernels are symmetric anyway).
        up: integer upsampling factor (zeros inserted between pixels).
        down: integer downsampling factor (every ``down``-th output pixel kept).
        pad: ``(before, after)`` padding of the upsampled signal on each axis; negative crops.

    Returns:
        ``(B, C, (H*up + before + after - K) // down + 1, ...same for W)``, ``x``'s dtype.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if p0 > 0 or p1 > 0:
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        hh, ww = x.shape[-2:]
        x = x[:, :, max(-p0, 0) : hh - max(-p1, 0), max(-p0, 0) : ww - max(-p1, 0)]
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(device=x.device, dtype=x.dtype).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, stride=down, groups=c)
