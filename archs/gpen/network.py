"""GPEN's ``FullGenerator`` in plain PyTorch, state-dict compatible with the official releases.

GPEN (Yang et al., "GAN Prior Embedded Network for Blind Face Restoration in the Wild", CVPR 2021,
yangxy/GPEN ``face_model/gpen_model.py``) is a plain strided-conv encoder whose per-resolution
features are fed, as the "noise" inputs, to a StyleGAN2 generator; the encoder's 4x4 bottleneck
gives the one style code. Per level the generator's modulated-conv output is *concatenated* with
the encoder feature of the same resolution (scaled by the layer's noise weight; ``isconcat=True``
in every released model, hence twice as many channels after each conv), or added to it
(``isconcat=False``).

Determinism: the official ``FullGenerator`` passes encoder features to *every* noise input
(``NoiseInjection`` draws ``randn`` only when its noise is ``None``, which ``FullGenerator`` never
passes), so the network is deterministic and takes no seed. Only ``FullGenerator_SR`` (an encoder
smaller than the generator, used by no released file) would inject random noise; it is not
supported here.

Keys (``generator.`` + StyleGAN2 names of rosinality/stylegan2-pytorch, ``ecd<i>.0`` encoder
levels, ``final_linear.0``) include the FIR kernels as *persistent* buffers
(``*.blur.kernel``, ``*.upsample.kernel``, ``ecd<i>.0.0.kernel``), as the official files store
them; the forward uses the loaded kernels.

Hand-written parts, and why: the equalised conv/linear layers and the fused bias + leaky ReLU
come from :mod:`facemend.archs.gfpgan.original` and :mod:`facemend.archs.ops` (same keys, same
maths). The modules below exist because GPEN's key names differ from GFP-GAN's
(``conv``/``blur``/``input`` instead of ``modulated_conv``/``smooth``/``weight``), its FIR
kernels are stored in the state dict (GFP-GAN's are not), and its noise injection concatenates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..gfpgan.common import NormStyleCode, grouped_conv, modulated_weight
from ..gfpgan.original import EqualConv2d, EqualLinear
from ..ops.fused_act import FusedLeakyReLU
from ..ops.upfirdn2d import make_resample_kernel, upfirdn2d

#: StyleGAN2's FIR taps (the official ``blur_kernel``).
FIR_TAPS = (1, 3, 3, 1)
#: Sizes a GPEN generator can have (the official channel table stops at 2048).
SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048)


def gpen_channels(channel_multiplier: float, narrow: float) -> dict[int, int]:
    """Channels per resolution 4 ... 2048, as the official ``channels`` table (``int`` truncation included)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512}
    scaled = {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16, 2048: 8}
    out = {r: int(c * narrow) for r, c in base.items()}
    out.update({r: int(c * channel_multiplier * narrow) for r, c in scaled.items()})
    return out


def log2_size(size: int) -> int:
    """``log2(size)``; ``ValueError`` unless ``size`` is one of :data:`SIZES`."""
    if size not in SIZES:
        raise ValueError(f"GPEN size must be one of {SIZES}, got {size}")
    return int(round(math.log2(size)))


class FIRFilter(nn.Module):
    """``upfirdn2d`` with a stored FIR kernel (key ``kernel``, persistent as in the official files).

    Args:
        pad: ``(before, after)`` padding of the (upsampled) signal on each axis.
        up: zero-insertion upsampling factor (1 or 2).
        gain: kernel multiplier (4 after a 2x upsampling, so the image's mean is kept).

    ``forward``: ``(B, C, H, W)`` -> ``(B, C, H * up + before + after - 3, ...)``.
    """

    def __init__(self, pad: tuple[int, int], up: int = 1, gain: float = 1.0) -> None:
        super().__init__()
        self.up = up
        self.pad = pad
        self.register_buffer("kernel", make_resample_kernel(FIR_TAPS) * gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.up, pad=self.pad)


class DownConv(nn.Sequential):
    """Encoder level: FIR blur, stride-2 3x3 equalised conv, fused bias + leaky ReLU (keys ``0.kernel``, ``1.weight``, ``2.bias``).

    ``(B, C_in, H, W)`` -> ``(B, C_out, H/2, W/2)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            FIRFilter(pad=(2, 2)),  # StyleGAN2's pads for a 4-tap blur before a stride-2 3x3 conv
            EqualConv2d(in_channels, out_channels, 3, stride=2, padding=0, bias=False),
            FusedLeakyReLU(out_channels),
        )


class PointConv(nn.Sequential):
    """First encoder level: 1x1 equalised conv + fused bias + leaky ReLU (keys ``0.weight``, ``1.bias``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(EqualConv2d(in_channels, out_channels, 1, bias=False), FusedLeakyReLU(out_channels))


class ModulatedConv(nn.Module):
    """StyleGAN2 modulated conv (keys ``weight`` ``(1, C_out, C_in, k, k)``, ``modulation.*``, ``blur.kernel`` when upsampling).

    Upsampling is a stride-2 transposed conv followed by the FIR blur, as officially.
    ``forward(x (B, C_in, H, W), style (B, style_dim))`` -> ``(B, C_out, H or 2H, W or 2W)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
        demodulate: bool = True, upsample: bool = False,
    ) -> None:
        super().__init__()
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel_size // 2
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        if upsample:
            p = (len(FIR_TAPS) - 2) - (kernel_size - 1)
            self.blur = FIRFilter(pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        self.modulation = EqualLinear(style_dim, in_channels, bias=True, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        weight = modulated_weight(self.scale * self.weight, self.modulation(style), self.demodulate)
        if not self.upsample:
            return grouped_conv(x, weight, self.padding)
        b, c_in, h, w = x.shape
        c_out, k = weight.shape[1], weight.shape[-1]
        weight = weight.transpose(1, 2).reshape(b * c_in, c_out, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * c_in, h, w), weight, stride=2, groups=b)
        return self.blur(out.view(b, c_out, *out.shape[2:]))


class FeatureInjection(nn.Module):
    """GPEN's ``NoiseInjection`` fed with encoder features: ``cat(x, weight * f)`` or ``x + weight * f`` (key ``weight`` ``(1,)``)."""

    def __init__(self, isconcat: bool = True) -> None:
        super().__init__()
        self.isconcat = isconcat
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``, ``feat`` ``(B, C, H, W)`` -> ``(B, 2C or C, H, W)``."""
        if self.isconcat:
            return torch.cat((x, self.weight * feat), dim=1)
        return x + self.weight * feat


class StyledConv(nn.Module):
    """Modulated conv, feature injection, fused bias + leaky ReLU over the (concatenated) channels.

    Keys: ``conv.*``, ``noise.weight``, ``activate.bias`` (``C_out * 2`` when ``isconcat``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False, isconcat: bool = True
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = FeatureInjection(isconcat)
        self.activate = FusedLeakyReLU(out_channels * (2 if isconcat else 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), feat))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + ``bias`` ``(1, 3, 1, 1)`` + the FIR-upsampled previous RGB.

    Keys: ``bias``, ``conv.*``, ``upsample.kernel`` (when ``upsample``).
    """

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = FIRFilter(pad=(2, 1), up=2, gain=4.0)  # 2x FIR upsampling of the RGB skip
        self.conv = ModulatedConv(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """The learned ``(1, C, 4, 4)`` start tensor (key ``input``), repeated over the batch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyleGenerator(nn.Module):
    """GPEN's StyleGAN2 generator (official ``Generator`` keys: ``style``, ``input``, ``conv1``, ``to_rgb1``, ``convs``, ``to_rgbs``)."""

    def __init__(
        self, size: int, style_dim: int, n_mlp: int, channel_multiplier: float, narrow: float,
        isconcat: bool, lr_mlp: float = 0.01,
    ) -> None:
        super().__init__()
        self.log_size = log2_size(size)
        self.n_latent = self.log_size * 2 - 2
        fm = 2 if isconcat else 1
        ch = gpen_channels(channel_multiplier, narrow)
        self.style = nn.Sequential(
            NormStyleCode(),
            *(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)),
        )
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim, isconcat=isconcat)
        self.to_rgb1 = ToRGB(ch[4] * fm, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(StyledConv(in_ch * fm, out_ch, style_dim, upsample=True, isconcat=isconcat))
            self.convs.append(StyledConv(out_ch * fm, out_ch, style_dim, isconcat=isconcat))
            self.to_rgbs.append(ToRGB(out_ch * fm, style_dim))
            in_ch = out_ch

    def forward(self, code: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """Synthesise from one style code and the encoder features.

        Args:
            code: ``(B, style_dim)`` encoder code (mapped through ``style`` here, as officially).
            feats: encoder features from 4 px up to ``size`` px, one per resolution.

        Returns:
            ``(B, 3, size, size)`` RGB, about ``[-1, 1]`` (not clamped).
        """
        w = self.style(code)  # one latent for every layer (official: a single style, no mixing)
        out = self.conv1(self.input(w.shape[0]), w, feats[0])
        skip = self.to_rgb1(out, w)
        for j, to_rgb in enumerate(self.to_rgbs):
            feat = feats[j + 1]
            out = self.convs[2 * j](out, w, feat)
            out = self.convs[2 * j + 1](out, w, feat)
            skip = to_rgb(out, w, skip)
        return skip


class GPEN(nn.Module):
    """The official ``FullGenerator``: encoder ``ecd0 ... ecd<log2(size)-2>``, ``final_linear``, ``generator``.

    Args:
        size: face size in pixels, input = output (256, 512, 1024 or 2048 for released files).
        style_dim: style-code width (512).
        n_mlp: style-MLP depth (8).
        channel_multiplier: StyleGAN2 channel multiplier (2; 1 for GPEN-BFR-256).
        narrow: channel narrowing (1; 0.5 for GPEN-BFR-256).
        isconcat: concatenate encoder features (True for every released file) instead of adding.

    ``forward``: ``(B, 3, size, size)`` RGB in ``[-1, 1]`` (``[0, 1]`` for Seg2face, whose official
    inference does not normalise) -> ``(B, 3, size, size)`` RGB, about ``[-1, 1]``, not clamped.
    """

    def __init__(
        self, size: int = 512, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2,
        narrow: float = 1, isconcat: bool = True,
    ) -> None:
        super().__init__()
        self.size = size
        self.log_size = log2_size(size)
        ch = gpen_channels(channel_multiplier, narrow)
        self.generator = StyleGenerator(size, style_dim, n_mlp, channel_multiplier, narrow, isconcat)
        self.ecd0 = nn.Sequential(PointConv(3, ch[size]))
        for k in range(1, self.log_size - 1):
            res = size >> k
            self.add_module(f"ecd{k}", nn.Sequential(DownConv(ch[res * 2], ch[res])))
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, style_dim, activation="fused_lrelu"))

    def encoders(self) -> list[nn.Module]:
        """``ecd0`` (``size`` px) ... ``ecd<log2(size)-2>`` (4 px), in order."""
        return [getattr(self, f"ecd{k}") for k in range(self.log_size - 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for ecd in self.encoders():
            x = ecd(x)
            feats.append(x)
        code = self.final_linear(x.flatten(1))
        return self.generator(code, feats[::-1])
