"""The original GFPGANv1 (GFPGANv1.pth) and GFPGANBilinear, with StyleGAN2's equalised layers.

Both share one key layout (official ``GFPGANv1`` / ``GFPGANBilinear`` in TencentARC/GFPGAN
``gfpgan/archs/``, built on BasicSR's ``stylegan2_arch.py``): weights are stored unscaled and
multiplied by ``1/sqrt(fan_in)`` at run time, biases live in fused bias+leaky-ReLU layers. They
differ only in how they resample:

- ``resample="fir"`` (GFPGANv1): StyleGAN2's FIR filter ``[1, 3, 3, 1]`` through ``upfirdn2d``;
  upsampling modulated convs are stride-2 transposed convs followed by the blur.
- ``resample="bilinear"`` (GFPGANBilinear): ``F.interpolate`` bilinear, then ordinary convs.

The compiled ops of the official code (upfirdn2d, fused bias + leaky ReLU) are replaced by the
plain-PyTorch versions in :mod:`facemend.archs.ops`, so this runs on any device and under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.fused_act import FusedLeakyReLU, fused_leaky_relu
from ..ops.upfirdn2d import make_resample_kernel, upfirdn2d
from .common import (
    ConstantInput,
    GFPGANBase,
    NormStyleCode,
    grouped_conv,
    log2_size,
    modulated_weight,
    register_noise_buffers,
    stylegan_channels,
)

RESAMPLE_KERNEL = (1, 3, 3, 1)
RESAMPLE_MODES = ("fir", "bilinear")


class Blur(nn.Module):
    """FIR filtering with StyleGAN2's padding for a following (or preceding) strided conv.

    ``factor_up=2`` is the blur after a stride-2 transposed conv of kernel ``conv_kernel``;
    ``factor_down=2`` the blur before a stride-2 conv. The kernel is a non-persistent buffer, so
    it follows the module's device but is not part of the state dict (as officially).
    """

    def __init__(self, factor_up: int = 1, factor_down: int = 1, conv_kernel: int = 1) -> None:
        super().__init__()
        k = make_resample_kernel(RESAMPLE_KERNEL)
        taps = k.shape[0]
        if factor_up > 1:
            k = k * factor_up**2
            p = (taps - factor_up) - (conv_kernel - 1)
            self.pad = ((p + 1) // 2 + factor_up - 1, p // 2 + 1)
        elif factor_down > 1:
            p = (taps - factor_down) + (conv_kernel - 1)
            self.pad = ((p + 1) // 2, p // 2)
        else:
            raise ValueError("Blur needs factor_up > 1 or factor_down > 1")
        self.register_buffer("kernel", k, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class FIRUpsample(nn.Module):
    """2x upsampling with the FIR filter (zero insertion + blur); used on the RGB skip path."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        k = make_resample_kernel(RESAMPLE_KERNEL) * factor**2
        p = k.shape[0] - factor
        self.factor = factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.register_buffer("kernel", k, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class BilinearResize(nn.Module):
    """``F.interpolate(x, scale_factor, bilinear, align_corners=False)`` as a parameter-free module."""

    def __init__(self, scale_factor: float) -> None:
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)


class EqualConv2d(nn.Module):
    """Conv with run-time weight scale ``1/sqrt(C_in * k * k)``. Keys: ``weight``, optional ``bias``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear with run-time scale ``lr_mul/sqrt(in)`` on the weight and ``lr_mul`` on the bias.

    ``activation="fused_lrelu"`` applies the bias inside a scaled leaky ReLU (StyleGAN2's MLP).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"unsupported EqualLinear activation {activation!r}")
        self.lr_mul = lr_mul
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation == "fused_lrelu":
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)


class ScaledLeakyReLU(nn.Module):
    """``leaky_relu(x, slope) * sqrt(2)`` (no parameters)."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(x, self.negative_slope)
        return out.mul_(math.sqrt(2)) if not torch.is_grad_enabled() else out * math.sqrt(2)


class ConvLayer(nn.Sequential):
    """[resample] + EqualConv2d + activation, as ``nn.Sequential`` (official indices in the keys).

    With ``downsample`` the first item halves the size (FIR blur before a stride-2 conv, or a
    bilinear resize before a stride-1 conv) and the conv sits at index 1.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
        resample: str = "fir",
    ) -> None:
        layers: list[nn.Module] = []
        stride, padding = 1, kernel_size // 2
        if downsample:
            if resample == "fir":
                layers.append(Blur(factor_down=2, conv_kernel=kernel_size))
                stride, padding = 2, 0
            else:
                layers.append(BilinearResize(0.5))
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Down-sampling residual block: ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``."""

    def __init__(self, in_channels: int, out_channels: int, resample: str = "fir") -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, resample=resample)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False, resample=resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class ConvUpLayer(nn.Module):
    """Bilinear 2x upsampling + equalised conv (+ fused bias/leaky ReLU under the key ``activation``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.padding = padding
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias and not activate else None
        self.activation: nn.Module | None = None
        if activate:
            self.activation = FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(out, self.weight * self.scale, bias=self.bias, padding=self.padding)
        return self.activation(out) if self.activation is not None else out


class ResUpBlock(nn.Module):
    """Up-sampling residual block of the U-Net decoder: ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvUpLayer(in_channels, out_channels, 3, padding=1)
        self.skip = ConvUpLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv with equalised weight; optional 2x upsampling.

    ``fir``: stride-2 transposed conv then FIR blur; ``bilinear``: bilinear resize then conv.
    Keys: ``weight`` ``(1, C_out, C_in, k, k)``, ``modulation.{weight,bias}`` (EqualLinear).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_style_feat: int,
        demodulate: bool = True,
        upsample: bool = False,
        resample: str = "fir",
    ) -> None:
        super().__init__()
        self.demodulate = demodulate
        self.upsample = upsample
        self.resample = resample
        self.padding = kernel_size // 2
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        if upsample and resample == "fir":
            self.smooth = Blur(factor_up=2, conv_kernel=kernel_size)
        self.modulation = EqualLinear(num_style_feat, in_channels, bias=True, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C_in, H, W)``, ``style`` ``(B, num_style_feat)`` -> ``(B, C_out, H', W')``."""
        weight = modulated_weight(self.scale * self.weight, self.modulation(style), self.demodulate)
        if not self.upsample:
            return grouped_conv(x, weight, self.padding)
        if self.resample == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            return grouped_conv(x, weight, self.padding)
        # transposed conv: per-sample weights as (B * C_in, C_out, k, k), groups = B
        b, c_in, h, w = x.shape
        c_out, k = weight.shape[1], weight.shape[-1]
        weight = weight.transpose(1, 2).reshape(b * c_in, c_out, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * c_in, h, w), weight, stride=2, groups=b)
        return self.smooth(out.view(b, c_out, *out.shape[2:]))


class StyleConv(nn.Module):
    """Modulated conv + noise * ``weight``, then fused bias + leaky ReLU (key ``activate.bias``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_style_feat: int,
        upsample: bool = False,
        resample: str = "fir",
    ) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, num_style_feat, upsample=upsample, resample=resample
        )
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.modulated_conv(x, style)
        out = out + self.weight * noise
        return self.activate(out)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + ``bias``, plus the 2x-upsampled previous RGB."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True, resample: str = "fir") -> None:
        super().__init__()
        self.upsample: nn.Module | None = None
        if upsample:
            self.upsample = FIRUpsample(2) if resample == "fir" else BilinearResize(2.0)
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample is not None:
                skip = self.upsample(skip)
            out = out + skip
        return out


class StyleGAN2Decoder(nn.Module):
    """The StyleGAN2 generator's modules (official ``StyleGAN2GeneratorSFT`` / ``...BilinearSFT`` keys)."""

    def __init__(
        self,
        out_size: int,
        num_style_feat: int,
        num_mlp: int,
        channel_multiplier: float,
        narrow: float,
        lr_mlp: float,
        resample: str,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [NormStyleCode()]
        layers += [
            EqualLinear(num_style_feat, num_style_feat, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(num_mlp)
        ]
        self.style_mlp = nn.Sequential(*layers)
        ch = stylegan_channels(channel_multiplier, narrow)
        self.constant_input = ConstantInput(ch[4])
        self.style_conv1 = StyleConv(ch[4], ch[4], 3, num_style_feat, resample=resample)
        self.to_rgb1 = ToRGB(ch[4], num_style_feat, upsample=False, resample=resample)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        register_noise_buffers(self.noises, out_size)
        in_ch = ch[4]
        for i in range(3, log2_size(out_size) + 1):
            out_ch = ch[2**i]
            self.style_convs.append(StyleConv(in_ch, out_ch, 3, num_style_feat, upsample=True, resample=resample))
            self.style_convs.append(StyleConv(out_ch, out_ch, 3, num_style_feat, resample=resample))
            self.to_rgbs.append(ToRGB(out_ch, num_style_feat, upsample=True, resample=resample))
            in_ch = out_ch


class GFPGANv1(GFPGANBase):
    """GFP-GAN with StyleGAN2's equalised layers: the original (``resample="fir"``) or bilinear version.

    Args:
        out_size: face size in pixels (512 for released models).
        num_style_feat: latent width (512).
        channel_multiplier: StyleGAN2 channel multiplier (1 for GFPGANv1.pth).
        num_mlp: style MLP depth (8).
        narrow: channel narrowing ratio (1).
        sft_half: CS-SFT on half the channels (True for released models).
        different_w: one latent per generator layer (True for released models).
        input_is_latent: the encoder emits latents directly (True in official inference).
        lr_mlp: the style MLP's learning-rate multiplier, part of its weight scale (0.01).
        resample: ``"fir"`` (GFPGANv1) or ``"bilinear"`` (GFPGANBilinear).
    """

    def __init__(
        self,
        out_size: int = 512,
        num_style_feat: int = 512,
        channel_multiplier: float = 1,
        num_mlp: int = 8,
        narrow: float = 1,
        sft_half: bool = True,
        different_w: bool = True,
        input_is_latent: bool = True,
        lr_mlp: float = 0.01,
        resample: str = "fir",
    ) -> None:
        super().__init__()
        if resample not in RESAMPLE_MODES:
            raise ValueError(f"resample must be one of {RESAMPLE_MODES}, got {resample!r}")
        self.resample = resample
        self.out_size = out_size
        self.num_style_feat = num_style_feat
        self.different_w = different_w
        self.input_is_latent = input_is_latent
        self.sft_half = sft_half
        self.log_size = log2_size(out_size)
        self.num_latent = self.log_size * 2 - 2
        self.num_layers = (self.log_size - 2) * 2 + 1
        unet = stylegan_channels(channel_multiplier, narrow * 0.5)

        self.conv_body_first = ConvLayer(3, unet[out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_ch = unet[out_size]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_ch, unet[2 ** (i - 1)], resample=resample))
            in_ch = unet[2 ** (i - 1)]
        self.final_conv = ConvLayer(in_ch, unet[4], 3)
        self.conv_body_up = nn.ModuleList()
        in_ch = unet[4]
        for i in range(3, self.log_size + 1):
            self.conv_body_up.append(ResUpBlock(in_ch, unet[2**i]))
            in_ch = unet[2**i]
        self.toRGB = nn.ModuleList(EqualConv2d(unet[2**i], 3, 1) for i in range(3, self.log_size + 1))
        latent_out = self.num_latent * num_style_feat if different_w else num_style_feat
        self.final_linear = EqualLinear(unet[4] * 4 * 4, latent_out)
        self.stylegan_decoder = StyleGAN2Decoder(
            out_size, num_style_feat, num_mlp, channel_multiplier, narrow, lr_mlp, resample
        )
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for i in range(3, self.log_size + 1):
            ch = unet[2**i]
            sft_ch = ch if sft_half else ch * 2
            for heads, last_bias in ((self.condition_scale, 1.0), (self.condition_shift, 0.0)):
                heads.append(
                    nn.Sequential(
                        EqualConv2d(ch, ch, 3, padding=1),
                        ScaledLeakyReLU(0.2),
                        EqualConv2d(ch, sft_ch, 3, padding=1, bias_init=last_bias),
                    )
                )

    def encode_first(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_body_first(x)

    def encode_final(self, feat: torch.Tensor) -> torch.Tensor:
        return self.final_conv(feat)
