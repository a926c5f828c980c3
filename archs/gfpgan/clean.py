"""GFPGANv1Clean: GFP-GAN without custom ops (GFPGANCleanv1-NoCE-C2 = v1.2, v1.3, v1.4).

Plain ``nn.Conv2d``/``nn.Linear`` layers whose weights already include StyleGAN2's equalised-lr
scales, bilinear resampling instead of FIR filters. State-dict layout = the official
``GFPGANv1Clean`` (TencentARC/GFPGAN ``gfpgan/archs/gfpganv1_clean_arch.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import (
    ConstantInput,
    GFPGANBase,
    NormStyleCode,
    log2_size,
    modulated_conv2d,
    register_noise_buffers,
    stylegan_channels,
)


class ModulatedConv2d(nn.Module):
    """Style-modulated conv without bias; ``sample_mode="upsample"`` doubles the size (bilinear) first.

    Keys: ``weight`` ``(1, C_out, C_in, k, k)``, ``modulation.{weight,bias}`` (``nn.Linear``).
    The style linear and the demodulation run in fp32 (tiny tensors) whatever the autocast state;
    the conv itself runs in the input's / autocast dtype (see :func:`~.common.modulated_conv2d`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_style_feat: int,
        demodulate: bool = True,
        sample_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.demodulate = demodulate
        self.sample_mode = sample_mode
        self.padding = kernel_size // 2
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.ones_(self.modulation.bias)
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size) / math.sqrt(in_channels * kernel_size**2)
        )

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``x`` ``(B, C_in, H, W)``, ``style`` ``(B, num_style_feat)`` -> ``gain *`` ``(B, C_out, H', W')``."""
        lin = self.modulation
        with torch.autocast(device_type=style.device.type, enabled=False):
            s = F.linear(style.float(), lin.weight.float(), lin.bias.float())
        if self.sample_mode == "downsample":
            x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        return modulated_conv2d(
            x, self.weight, s, demodulate=self.demodulate, padding=self.padding, gain=gain,
            upsample=self.sample_mode == "upsample", weight_sq=self._weight_sq() if self.demodulate else None,
        )

    def _apply(self, *args: Any, **kwargs: Any) -> nn.Module:  # nn.Module's signature
        self.__dict__.pop("_sq_cache", None)  # moved or cast: never keep a copy on the old device
        return super()._apply(*args, **kwargs)

    def _weight_sq(self) -> torch.Tensor:
        """``(C_out, C_in)`` fp32 ``sum_k weight**2``, cached while the weight tensor is unchanged."""
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        cached = self.__dict__.get("_sq_cache")
        if cached is None or cached[0] != key:
            with torch.autocast(device_type=w.device.type, enabled=False):
                sq = w.detach().reshape(w.shape[1], w.shape[2], -1).float().pow(2).sum(-1)
            self.__dict__["_sq_cache"] = cached = (key, sq)
        return cached[1]


class StyleConv(nn.Module):
    """Modulated conv * sqrt(2) + noise * ``weight`` + ``bias``, then leaky ReLU (0.2)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int, sample_mode: str | None = None
    ) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, num_style_feat, demodulate=True, sample_mode=sample_mode
        )
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C_in, H, W)``, ``style`` ``(B, F)``, ``noise`` ``(1 or B, 1, H', W')`` -> ``(B, C_out, H', W')``.

        Everything after the conv runs in place on the conv's own output, in its dtype (no
        promotion of bf16/fp16 activations by fp32 parameters or noise).
        """
        out = self.modulated_conv(x, style, gain=2**0.5)
        out = out.add_(noise.to(out.dtype) * self.weight.to(out.dtype))
        out = out.add_(self.bias.to(out.dtype))
        return F.leaky_relu_(out, 0.2)  # in place on our own fresh tensor, as the official code


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + bias, added to the (bilinearly upsampled) previous RGB.

    The 3-channel RGB path is kept in fp32 under autocast (cheap, and it accumulates over levels).
    """

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``, ``skip`` ``(B, 3, H/2, W/2)`` or ``None`` -> ``(B, 3, H, W)`` float32."""
        out = self.modulated_conv(x, style).float().add_(self.bias.float())
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out.add_(skip)
        return out


class ResBlock(nn.Module):
    """Residual block that halves (``mode="down"``) or doubles (``"up"``) the size, bilinearly.

    Bilinear halving with ``align_corners=False`` is exactly a 2x2 average, computed as such; the
    bias-free 1x1 skip conv commutes with the (linear, per-channel) resampling, so it runs at the
    smaller of the two resolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = 0.5 if mode == "down" else 2.0

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_factor == 0.5 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
            return F.avg_pool2d(x, 2)
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H * scale, W * scale)``; ``x`` is not modified."""
        out = F.leaky_relu_(self.conv1(x), 0.2)
        out = self._resample(out)
        out = F.leaky_relu_(self.conv2(out), 0.2)
        if self.scale_factor < 1:
            skip = self.skip(self._resample(x))
        else:
            skip = self._resample(self.skip(x))
        return out.add_(skip.to(out.dtype))


class StyleGAN2DecoderClean(nn.Module):
    """The StyleGAN2 generator's modules (official ``StyleGAN2GeneratorCSFT`` key layout).

    Its forward pass is driven level by level by :class:`~.common.GFPGANBase`.
    """

    def __init__(self, out_size: int, num_style_feat: int, num_mlp: int, channel_multiplier: float, narrow: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            layers += [nn.Linear(num_style_feat, num_style_feat), nn.LeakyReLU(0.2, inplace=True)]
        self.style_mlp = nn.Sequential(*layers)
        ch = stylegan_channels(channel_multiplier, narrow)
        self.constant_input = ConstantInput(ch[4])
        self.style_conv1 = StyleConv(ch[4], ch[4], 3, num_style_feat)
        self.to_rgb1 = ToRGB(ch[4], num_style_feat, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        register_noise_buffers(self.noises, out_size)
        in_ch = ch[4]
        for i in range(3, log2_size(out_size) + 1):
            out_ch = ch[2**i]
            self.style_convs.append(StyleConv(in_ch, out_ch, 3, num_style_feat, sample_mode="upsample"))
            self.style_convs.append(StyleConv(out_ch, out_ch, 3, num_style_feat))
            self.to_rgbs.append(ToRGB(out_ch, num_style_feat, upsample=True))
            in_ch = out_ch


class GFPGANv1Clean(GFPGANBase):
    """GFP-GAN, clean version (no compiled ops). See :class:`~.common.GFPGANBase` for the forward pass.

    Args:
        out_size: face size in pixels (512 for every released model).
        num_style_feat: latent width (512).
        channel_multiplier: StyleGAN2 channel multiplier (2 for v1.2/v1.3/v1.4).
        num_mlp: style MLP depth (8).
        narrow: channel narrowing ratio (1).
        sft_half: CS-SFT on half the channels (True for released models).
        different_w: one latent per generator layer (True for released models).
        input_is_latent: the encoder emits latents directly (True in official inference).
    """

    def __init__(
        self,
        out_size: int = 512,
        num_style_feat: int = 512,
        channel_multiplier: float = 2,
        num_mlp: int = 8,
        narrow: float = 1,
        sft_half: bool = True,
        different_w: bool = True,
        input_is_latent: bool = True,
    ) -> None:
        super().__init__()
        self.out_size = out_size
        self.num_style_feat = num_style_feat
        self.different_w = different_w
        self.input_is_latent = input_is_latent
        self.sft_half = sft_half
        self.log_size = log2_size(out_size)
        self.num_latent = self.log_size * 2 - 2
        self.num_layers = (self.log_size - 2) * 2 + 1
        unet = stylegan_channels(channel_multiplier, narrow * 0.5)  # the U-Net uses half the channels

        self.conv_body_first = nn.Conv2d(3, unet[out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_ch = unet[out_size]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_ch, unet[2 ** (i - 1)], mode="down"))
            in_ch = unet[2 ** (i - 1)]
        self.final_conv = nn.Conv2d(in_ch, unet[4], 3, 1, 1)
        self.conv_body_up = nn.ModuleList()
        in_ch = unet[4]
        for i in range(3, self.log_size + 1):
            self.conv_body_up.append(ResBlock(in_ch, unet[2**i], mode="up"))
            in_ch = unet[2**i]
        self.toRGB = nn.ModuleList(nn.Conv2d(unet[2**i], 3, 1) for i in range(3, self.log_size + 1))
        latent_out = self.num_latent * num_style_feat if different_w else num_style_feat
        self.final_linear = nn.Linear(unet[4] * 4 * 4, latent_out)
        self.stylegan_decoder = StyleGAN2DecoderClean(out_size, num_style_feat, num_mlp, channel_multiplier, narrow)
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for i in range(3, self.log_size + 1):
            ch = unet[2**i]
            sft_ch = ch if sft_half else ch * 2
            for heads in (self.condition_scale, self.condition_shift):
                heads.append(
                    nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ch, sft_ch, 3, 1, 1))
                )

        #: Kept in fp32 when the runtime stores the rest in fp16/bf16: the style linears are tiny
        #: and run in fp32 anyway (see ModulatedConv2d), so half-precision copies would only cost
        #: a cast per call.
        self.fp32_submodules = tuple(name for name, m in self.named_modules() if name.endswith("modulation"))

    def encode_first(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu_(self.conv_body_first(x), 0.2)

    def encode_final(self, feat: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu_(self.final_conv(feat), 0.2)
