"""Modulated deformable convolution (DCNv2) without compiled extensions.

The official VQFR / BasicSR code calls mmcv-style CUDA kernels or, on recent torchvision,
``torchvision.ops.deform_conv2d``. We use torchvision's operator when it can be imported (it has
CPU and CUDA kernels) and otherwise a pure-PyTorch version built on ``F.grid_sample`` that runs on
any device. Both follow torchvision's tensor layout:

- ``offset``: ``(B, 2 * G * kh * kw, Ho, Wo)``; for offset group ``g`` and kernel tap ``k`` (row-major
  over ``kh x kw``), channel ``2 * (g * kh * kw + k)`` is the row (y) shift and the next one the
  column (x) shift, in input pixels.
- ``mask``: ``(B, G * kh * kw, Ho, Wo)``, the modulation scalar of each tap (DCNv2).
- input channels are split evenly into the ``G`` offset groups.

Sampling is bilinear with zeros outside the image, exactly like torchvision's kernel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Pair = int | tuple[int, int]


def _pair(v: Pair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _torchvision_op() -> Callable[..., torch.Tensor] | None:
    """``torchvision.ops.deform_conv2d`` when torchvision (with its C++ ops) imports, else ``None``."""
    try:
        from torchvision.ops import deform_conv2d
    except (ImportError, RuntimeError, OSError):  # missing package, or a build without compiled ops
        return None
    return deform_conv2d


def torchvision_available() -> bool:
    """True when :func:`modulated_deform_conv2d` will use torchvision's operator by default."""
    return _torchvision_op() is not None


def deform_conv2d_reference(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> torch.Tensor:
    """Pure-PyTorch modulated deformable convolution (``F.grid_sample`` based).

    Written by hand because torchvision's operator is a compiled extension that may be missing
    (minimal installs, unusual devices); this version needs only core PyTorch ops.

    Args:
        x: ``(B, C, H, W)`` float input.
        offset: ``(B, 2 * G * kh * kw, Ho, Wo)`` sampling shifts in pixels (layout in the module doc).
        mask: ``(B, G * kh * kw, Ho, Wo)`` modulation, or ``None`` for plain deformable conv (DCNv1).
        weight: ``(O, C // groups, kh, kw)``; ``groups`` is inferred from ``C``.
        bias: ``(O,)`` or ``None``.
        stride, padding, dilation: as for ``nn.Conv2d``.

    Returns:
        ``(B, O, Ho, Wo)`` in ``x``'s dtype (computed in ``x``'s dtype; call with fp32 tensors for
        fp32 accuracy).
    """
    b, c, h, w = x.shape
    out_ch, c_per_group, kh, kw = weight.shape
    if c % c_per_group:
        raise ValueError(f"deform_conv2d: {c} input channels do not split into groups of {c_per_group}")
    groups = c // c_per_group
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    ho, wo = offset.shape[-2:]
    taps = kh * kw
    n_off = offset.shape[1] // (2 * taps)
    if n_off < 1 or offset.shape[1] != 2 * taps * n_off or c % n_off:
        raise ValueError(f"deform_conv2d: offset has {offset.shape[1]} channels; expected 2*{taps}*G with G dividing {c}")
    exp_ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    exp_wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if (ho, wo) != (exp_ho, exp_wo):
        raise ValueError(f"deform_conv2d: offset is {ho}x{wo} but the output is {exp_ho}x{exp_wo}")

    off = offset.view(b, n_off, taps, 2, ho, wo)
    mod = mask.view(b, n_off, taps, ho, wo) if mask is not None else None
    # Inputs per offset group: (B * G, C / G, H, W).
    xg = x.reshape(b * n_off, c // n_off, h, w)
    base_y = (torch.arange(ho, device=x.device, dtype=x.dtype) * sh - ph).view(1, 1, ho, 1)
    base_x = (torch.arange(wo, device=x.device, dtype=x.dtype) * sw - pw).view(1, 1, 1, wo)
    out = None
    for k in range(taps):
        ki, kj = divmod(k, kw)
        py = base_y + ki * dh + off[:, :, k, 0]  # (B, G, Ho, Wo) absolute row in input pixels
        px = base_x + kj * dw + off[:, :, k, 1]
        # grid_sample (align_corners=False) maps pixel p to (2p + 1) / size - 1; zero padding
        # outside the image matches torchvision's bilinear_interpolate (taps outside count as 0).
        grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
        sampled = F.grid_sample(
            xg, grid.reshape(b * n_off, ho, wo, 2), mode="bilinear", padding_mode="zeros", align_corners=False
        ).view(b, n_off, c // n_off, ho, wo)
        if mod is not None:
            sampled = sampled * mod[:, :, k].unsqueeze(2)
        # One tap of the kernel is a 1x1 (grouped) convolution of the sampled features.
        term = F.conv2d(sampled.reshape(b, c, ho, wo), weight[:, :, ki : ki + 1, kj : kj + 1], groups=groups)
        out = term if out is None else out + term
    assert out is not None
    if bias is not None:
        out = out + bias.view(1, out_ch, 1, 1)
    return out


def modulated_deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    *,
    use_torchvision: bool | None = None,
) -> torch.Tensor:
    """Modulated deformable convolution, always computed in fp32 (fp64 for fp64 inputs).

    Sampling positions must not be rounded to half precision (a bf16 position near pixel 300 is
    off by a whole pixel), so under autocast the inputs are cast to fp32, the op runs with
    autocast off, and the result is returned in ``x``'s dtype.

    Args:
        x, offset, mask, weight, bias, stride, padding, dilation: see :func:`deform_conv2d_reference`.
        use_torchvision: ``True`` forces ``torchvision.ops.deform_conv2d`` (error if missing),
            ``False`` forces the pure-PyTorch version, ``None`` picks torchvision when importable.

    Returns:
        ``(B, O, Ho, Wo)`` with ``x``'s dtype.
    """
    op = _torchvision_op() if use_torchvision is not False else None
    if use_torchvision and op is None:
        raise RuntimeError("torchvision.ops.deform_conv2d is not available in this environment")
    dtype = x.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    f32 = [t.to(work) if t is not None else None for t in (x, offset, mask, weight, bias)]
    with torch.autocast(device_type=x.device.type, enabled=False):
        if op is not None:
            y = op(
                f32[0], f32[1], f32[3], f32[4],
                stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation), mask=f32[2],
            )
        else:
            y = deform_conv2d_reference(f32[0], f32[1], f32[2], f32[3], f32[4], stride, padding, dilation)
    return y.to(dtype)
