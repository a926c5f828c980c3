"""Building blocks shared by VQFR v1 and v2 (official state-dict names kept).

All modules take and return float feature maps ``(B, C, H, W)``; they run in fp32, fp16 or
bf16 autocast. Deformable convolution always samples in fp32 (see ``archs.ops.deform_conv``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.deform_conv import modulated_deform_conv2d
from ..ops.vq import group_norm


def norm_act(channels: int) -> list[nn.Module]:
    """``[GroupNorm, SiLU]``, the pre-activation used before VQFR's convolutions."""
    return [group_norm(channels), nn.SiLU(inplace=True)]


class Resample(nn.Module):
    """v1's bilinear resize by an integer ``factor`` with a 3x3 conv (none when ``factor == 1``).

    ``"up"``: conv, then bilinear x factor. ``"down"``: bilinear / factor, then conv.
    """

    def __init__(self, in_ch: int, out_ch: int, factor: int, direction: str) -> None:
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self.factor = factor
        self.direction = direction
        if factor != 1:
            self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return x
        h, w = x.shape[-2:]
        if self.direction == "up":
            return F.interpolate(self.conv(x), size=(h * self.factor, w * self.factor), mode="bilinear", align_corners=False)
        size = (int(h / self.factor), int(w / self.factor))
        return self.conv(F.interpolate(x, size=size, mode="bilinear", align_corners=False))


class ModulatedDeformConv(nn.Module):
    """DCNv2 whose offsets and masks come from a separate feature map (``forward(x, feat)``).

    State dict: ``weight (O, C, k, k)``, ``bias (O,)``, ``conv_offset`` (``C -> 3 * G * k * k``).
    The offset conv's output splits into thirds ``(o1, o2, m)``: offsets ``cat(o1, o2)`` in
    torchvision's layout and modulation ``sigmoid(m)``.

    ``use_torchvision`` (instance attribute, not saved): ``None`` = torchvision's operator when
    importable, ``False`` = the pure-PyTorch fallback (for comparisons and benchmarks).
    """

    use_torchvision: bool | None = None

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, padding: int, deformable_groups: int) -> None:
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.conv_offset = nn.Conv2d(in_ch, deformable_groups * 3 * kernel_size * kernel_size, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        o1, o2, m = torch.chunk(self.conv_offset(feat), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(m.float())
        return modulated_deform_conv2d(
            x, offset, mask, self.weight, self.bias, padding=self.padding, use_torchvision=self.use_torchvision
        )


class TextureWarping(nn.Module):
    """Texture warping module: warps texture-branch features toward the degraded input.

    Offsets are predicted from the input features (resized to this level) concatenated with the
    texture features, refined with the previous level's (upsampled) offsets, then drive a DCNv2
    over the texture features.

    Args:
        channel: texture feature channels at this level.
        cond_channels: channels of the input-feature map (``inpfeat_extraction`` output).
        downscale: this level's resolution divisor (``2 ** level``).
        deformable_groups: DCN offset groups.
        previous_offset_channel: channels of the coarser level's offsets (0 at the coarsest).
        learned_downsample: v1 resizes the input features with :class:`Resample` (bilinear + conv,
            ``downsample`` in the state dict); v2 only resizes them bilinearly.
    """

    def __init__(
        self,
        channel: int,
        cond_channels: int,
        downscale: int,
        deformable_groups: int,
        previous_offset_channel: int,
        learned_downsample: bool,
    ) -> None:
        super().__init__()
        self.downscale = downscale
        self.learned_downsample = learned_downsample
        if learned_downsample:
            self.downsample = Resample(cond_channels, cond_channels, downscale, "down")
        self.offset_conv1 = nn.Sequential(
            nn.Conv2d(channel + cond_channels, channel, 1),
            *norm_act(channel),
            nn.Conv2d(channel, channel, 7, padding=3, groups=channel),
            *norm_act(channel),
            nn.Conv2d(channel, channel, 1),
        )
        self.offset_conv2 = nn.Sequential(
            nn.Conv2d(channel + previous_offset_channel, channel, 3, padding=1), *norm_act(channel)
        )
        self.dcn = ModulatedDeformConv(channel, channel, 3, 1, deformable_groups)

    def forward(
        self, x_main: torch.Tensor, inpfeat: torch.Tensor, previous_offset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(warped features (B, channel, h, w), offset features (B, channel, h, w))``."""
        if self.learned_downsample:
            cond = self.downsample(inpfeat)
        elif self.downscale != 1:
            h, w = inpfeat.shape[-2:]
            cond = F.interpolate(inpfeat, size=(h // self.downscale, w // self.downscale), mode="bilinear", align_corners=False)
        else:
            cond = inpfeat  # a same-size bilinear resize is the identity
        offset = self.offset_conv1(torch.cat([cond.to(x_main.dtype), x_main], dim=1))
        if previous_offset is not None:
            offset = torch.cat([offset, previous_offset.to(offset.dtype)], dim=1)
        offset = self.offset_conv2(offset)
        return self.dcn(x_main, offset), offset


def upsample_offset(offset: torch.Tensor) -> torch.Tensor:
    """Bring the coarser level's offset features to the next level: bilinear x2, values x2."""
    return F.interpolate(offset, scale_factor=2, mode="bilinear", align_corners=False) * 2
