"""ConditionalNAFNet: Refusion's noise network (official state-dict layout).

A NAFNet U-Net whose blocks are modulated by a time embedding. Input is the noisy state ``x_t``
and the condition ``mu`` (the degraded image, or its latent); the network sees
``cat(x_t - mu, mu)`` and predicts the noise of ``x_t``. Sizes are zero-padded at the bottom/right
to a multiple of ``2 ** len(enc_blk_nums)`` and the output is cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import ChannelLayerNorm, SimpleGate, SinusoidalTimeEmbedding, pad_to_multiple


class NAFBlock(nn.Module):
    """NAFNet block with time modulation.

    ``mlp`` maps the time embedding ``(B, time_dim)`` to per-channel shift/scale for the attention
    half and the feed-forward half. Feature map ``(B, c, H, W)`` in and out.
    """

    def __init__(self, c: int, time_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(SimpleGate(), nn.Linear(time_dim // 2, c * 4))
        dw = c * 2
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        # simplified channel attention: global average -> 1x1 conv
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, c * 2, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1 = ChannelLayerNorm(c)
        self.norm2 = ChannelLayerNorm(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift_att, scale_att, shift_ffn, scale_ffn = self.mlp(temb)[:, :, None, None].chunk(4, dim=1)
        x = self.norm1(inp) * (scale_att + 1) + shift_att
        x = self.sg(self.conv2(self.conv1(x)))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.norm2(y) * (scale_ffn + 1) + shift_ffn
        x = self.conv5(self.sg(self.conv4(x)))
        return y + x * self.gamma


class ConditionalNAFNet(nn.Module):
    """Time-conditioned NAFNet predicting the noise of an IR-SDE state.

    Args:
        img_channel: channels of the state (3 for RGB, 8 for the latent-dehazing latent space).
        width: channels after the intro conv (64 in every released model).
        middle_blk_num: NAFBlocks at the bottom.
        enc_blk_nums: NAFBlocks per encoder level (released: ``[1, 1, 1, 28]``).
        dec_blk_nums: NAFBlocks per decoder level (released: ``[1, 1, 1, 1]``).
        intro_skip: add the intro features to the last decoder output before ``ending`` (the
            official latent-dehazing variant; it has the same keys as the plain one).
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 64,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (1, 1, 1, 28),
        dec_blk_nums: Sequence[int] = (1, 1, 1, 1),
        intro_skip: bool = False,
    ) -> None:
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError("ConditionalNAFNet needs as many decoder levels as encoder levels")
        self.img_channel = img_channel
        self.intro_skip = intro_skip
        time_dim = width * 4
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(width), nn.Linear(width, time_dim * 2), SimpleGate(), nn.Linear(time_dim, time_dim)
        )
        self.intro = nn.Conv2d(img_channel * 2, width, 3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        # containers registered in the official order, so state_dict() lists keys as released files do
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.middle_blks = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for n in enc_blk_nums:
            self.encoders.append(nn.ModuleList(NAFBlock(chan, time_dim) for _ in range(n)))
            self.downs.append(nn.Conv2d(chan, chan * 2, 2, 2))
            chan *= 2
        self.middle_blks.extend(NAFBlock(chan, time_dim) for _ in range(middle_blk_num))
        for n in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.ModuleList(NAFBlock(chan, time_dim) for _ in range(n)))
        self.padding_multiple = 2 ** len(enc_blk_nums)

    def forward(self, x_t: torch.Tensor, mu: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Predict the noise in ``x_t``.

        Args:
            x_t: state ``(B, C, H, W)`` float (RGB in ``[0, 1]`` plus noise, or a latent).
            mu: condition, same shape as ``x_t``.
            t: time step(s): a number, or a tensor ``(B,)`` / ``(1,)`` (broadcast over the batch).

        Returns:
            Predicted noise ``(B, C, H, W)``.
        """
        h, w = x_t.shape[-2:]
        t = torch.as_tensor(t, device=x_t.device).reshape(-1)
        temb = self.time_mlp(t)
        x = pad_to_multiple(torch.cat([x_t - mu, mu], dim=1), self.padding_multiple)
        x = self.intro(x)
        intro = x
        skips = []
        for blocks, down in zip(self.encoders, self.downs):
            for block in blocks:
                x = block(x, temb)
            skips.append(x)
            x = down(x)
        for block in self.middle_blks:
            x = block(x, temb)
        for blocks, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = up(x) + skip
            for block in blocks:
                x = block(x, temb)
        if self.intro_skip:
            x = x + intro
        return self.ending(x)[..., :h, :w]
