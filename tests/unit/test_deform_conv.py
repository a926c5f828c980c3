"""Modulated deformable convolution: torchvision's operator vs our pure-PyTorch fallback.

The fallback (``deform_conv2d_reference``, grid_sample based) is also checked against a direct,
loop-by-loop transcription of the DCNv2 definition on tiny inputs, so it is tested even where
torchvision is missing.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facemend.archs.ops.deform_conv import deform_conv2d_reference, modulated_deform_conv2d, torchvision_available

# (batch, in_ch, H, W, out_ch, offset_groups, kernel, stride, padding, dilation, conv_groups)
CASES = [
    (2, 8, 13, 17, 6, 2, 3, 1, 1, 1, 1),
    (1, 12, 20, 16, 8, 3, 3, 2, 2, 2, 2),
    (2, 4, 9, 9, 5, 1, 1, 1, 0, 1, 1),
    (1, 16, 24, 24, 16, 4, 3, 1, 1, 1, 1),  # VQFR's configuration: 3x3, padding 1, 4 offset groups
    (1, 6, 7, 11, 4, 2, 2, 1, 0, 1, 2),  # even kernel, no padding
]


def _inputs(case: tuple[int, ...], seed: int, offset_scale: float = 3.0):
    b, c, h, w, o, g, k, s, p, d, grp = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=gen)
    weight = torch.randn(o, c // grp, k, k, generator=gen) / math.sqrt(c * k * k / grp)
    bias = torch.randn(o, generator=gen)
    ho = (h + 2 * p - d * (k - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (k - 1) - 1) // s + 1
    # Offsets of several pixels push many taps across the border (zero padding is exercised).
    offset = torch.randn(b, 2 * g * k * k, ho, wo, generator=gen) * offset_scale
    mask = torch.rand(b, g * k * k, ho, wo, generator=gen)
    return x, offset, mask, weight, bias, s, p, d


def _naive(x, offset, mask, weight, bias, stride, padding, dilation):
    """DCNv2 straight from the definition (bilinear taps, zeros outside), float64, loops."""
    x, offset, weight = x.double(), offset.double(), weight.double()
    b, c, h, w = x.shape
    o, cpg, kh, kw = weight.shape
    groups = c // cpg
    ho, wo = offset.shape[-2:]
    g = offset.shape[1] // (2 * kh * kw)
    out = torch.zeros(b, o, ho, wo, dtype=torch.float64)

    def pix(n, ch, yy, xx):
        return x[n, ch, yy, xx] if 0 <= yy < h and 0 <= xx < w else 0.0

    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                cols = torch.zeros(c, kh * kw, dtype=torch.float64)
                for ch in range(c):
                    gi = ch // (c // g)
                    for ki in range(kh):
                        for kj in range(kw):
                            t = ki * kw + kj
                            dy = offset[n, 2 * (gi * kh * kw + t), i, j]
                            dx = offset[n, 2 * (gi * kh * kw + t) + 1, i, j]
                            py = i * stride - padding + ki * dilation + dy
                            px = j * stride - padding + kj * dilation + dx
                            if py <= -1 or py >= h or px <= -1 or px >= w:
                                v = 0.0
                            else:
                                y0, x0 = math.floor(py), math.floor(px)
                                ly, lx = py - y0, px - x0
                                v = (
                                    (1 - ly) * (1 - lx) * pix(n, ch, y0, x0)
                                    + (1 - ly) * lx * pix(n, ch, y0, x0 + 1)
                                    + ly * (1 - lx) * pix(n, ch, y0 + 1, x0)
                                    + ly * lx * pix(n, ch, y0 + 1, x0 + 1)
                                )
                            m = mask[n, gi * kh * kw + t, i, j] if mask is not None else 1.0
                            cols[ch, t] = v * m
                for oc in range(o):
                    gc = oc // (o // groups)
                    sl = slice(gc * cpg, (gc + 1) * cpg)
                    out[n, oc, i, j] = (cols[sl] * weight[oc].reshape(cpg, kh * kw)).sum()
    if bias is not None:
        out += bias.double().view(1, -1, 1, 1)
    return out


@pytest.mark.parametrize("case", CASES[:3] + CASES[4:])
def test_fallback_matches_definition(case):
    b, c, h, w, o, g, k, s, p, d, grp = case
    small = (1, c, min(h, 7), min(w, 8), o, g, k, s, p, d, grp)  # the loops are slow; keep it tiny
    x, off, mask, wt, bias, s, p, d = _inputs(small, seed=11)
    want = _naive(x, off, mask, wt, bias, s, p, d)
    got = deform_conv2d_reference(x, off, mask, wt, bias, s, p, d)
    assert (got.double() - want).abs().max().item() < 1e-5
    got_nomask = deform_conv2d_reference(x, off, None, wt, bias, s, p, d)
    assert (got_nomask.double() - _naive(x, off, None, wt, bias, s, p, d)).abs().max().item() < 1e-5


@pytest.mark.skipif(not torchvision_available(), reason="torchvision.ops.deform_conv2d not importable")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_torchvision_and_fallback_agree(case, seed):
    x, off, mask, wt, bias, s, p, d = _inputs(case, seed)
    tv = modulated_deform_conv2d(x, off, mask, wt, bias, s, p, d, use_torchvision=True)
    pure = modulated_deform_conv2d(x, off, mask, wt, bias, s, p, d, use_torchvision=False)
    assert tv.shape == pure.shape
    assert (tv - pure).abs().max().item() < 1e-4


@pytest.mark.skipif(not torchvision_available(), reason="torchvision.ops.deform_conv2d not importable")
def test_agree_at_vqfr_scale():
    """A 128-channel, 4-group DCN on a 96x96 map with offsets of tens of pixels."""
    x, off, mask, wt, bias, s, p, d = _inputs((1, 128, 96, 96, 128, 4, 3, 1, 1, 1, 1), seed=3, offset_scale=12.0)
    tv = modulated_deform_conv2d(x, off, mask, wt, bias, s, p, d, use_torchvision=True)
    pure = modulated_deform_conv2d(x, off, mask, wt, bias, s, p, d, use_torchvision=False)
    assert (tv - pure).abs().max().item() < 1e-4


@pytest.mark.parametrize("use_tv", [False, True])
def test_zero_offsets_unit_mask_is_plain_conv(use_tv):
    if use_tv and not torchvision_available():
        pytest.skip("torchvision.ops.deform_conv2d not importable")
    x, off, mask, wt, bias, s, p, d = _inputs(CASES[1], seed=5)
    y = modulated_deform_conv2d(x, torch.zeros_like(off), torch.ones_like(mask), wt, bias, s, p, d, use_torchvision=use_tv)
    ref = F.conv2d(x, wt, bias, stride=s, padding=p, dilation=d, groups=x.shape[1] // wt.shape[1])
    assert (y - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("use_tv", [False, True])
def test_bf16_autocast_samples_in_fp32(use_tv):
    """Under CPU bf16 autocast the op keeps fp32 sampling and returns the input's dtype."""
    if use_tv and not torchvision_available():
        pytest.skip("torchvision.ops.deform_conv2d not importable")
    x, off, mask, wt, bias, s, p, d = _inputs(CASES[3], seed=7)
    ref = modulated_deform_conv2d(x, off, mask, wt, bias, s, p, d, use_torchvision=use_tv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = modulated_deform_conv2d(x.bfloat16(), off.bfloat16(), mask, wt, bias, s, p, d, use_torchvision=use_tv)
    assert y.dtype == torch.bfloat16
    # Only the bf16 rounding of x and offset remains (positions are not rounded again inside).
    want = modulated_deform_conv2d(x.bfloat16().float(), off.bfloat16().float(), mask, wt, bias, s, p, d, use_torchvision=use_tv)
    assert (y.float() - want).abs().max().item() <= 0.02 * want.abs().max().item()
    assert (y.float() - ref).abs().mean().item() < 0.05


def test_bad_offset_shape_is_refused():
    x, off, mask, wt, bias, s, p, d = _inputs(CASES[0], seed=0)
    with pytest.raises(ValueError, match="offset"):
        deform_conv2d_reference(x, off[:, :-1], mask, wt, bias, s, p, d)
