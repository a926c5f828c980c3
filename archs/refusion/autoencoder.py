"""The latent-Refusion U-Net autoencoder (official ``UNet`` of ``latent-dehazing``/``unet-latent``).

The encoder maps an RGB image to a small latent (``embed_dim`` channels at ``1 / 2 ** (depth-1)``
resolution) and keeps its intermediate features; the decoder rebuilds the image from a (diffused)
latent *and those encoder skip features*, so the latent only needs to carry what changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import PreNormResidualAttention, ResBlock, conv_nobias, downsample, pad_to_multiple, upsample


class LatentUNet(nn.Module):
    """U-Net autoencoder whose decoder reuses the encoder's skip features.

    Args:
        in_ch: image channels (3).
        out_ch: output channels (3).
        ch: base width (8 in the released dehazing model).
        ch_mult: channel multiple of each level's output (released: ``(4, 8, 8, 16)``).
        embed_dim: latent channels (8).
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ch: int = 8, ch_mult: Sequence[int] = (4, 8, 8, 16), embed_dim: int = 8) -> None:
        super().__init__()
        self.depth = len(ch_mult)
        self.padding_multiple = 2**self.depth
        self.downscale = 2 ** (self.depth - 1)
        self.embed_dim = embed_dim
        dims = [ch] + [ch * m for m in ch_mult]
        self.init_conv = conv_nobias(in_ch, ch, 3)
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(self.depth):
            d_in, d_out = dims[i], dims[i + 1]
            last = i == self.depth - 1
            self.encoder.append(nn.ModuleList([
                ResBlock(d_in, d_in),
                ResBlock(d_in, d_in),
                PreNormResidualAttention(d_in) if last else nn.Identity(),
                conv_nobias(d_in, d_out, 3) if last else downsample(d_in, d_out),
            ]))
            self.decoder.insert(0, nn.ModuleList([
                ResBlock(d_out + d_in, d_out),
                ResBlock(d_out + d_in, d_out),
                PreNormResidualAttention(d_out) if last else nn.Identity(),
                conv_nobias(d_out, d_in, 3) if i == 0 else upsample(d_out, d_in),
            ]))
        mid = dims[-1]
        self.latent_conv = conv_nobias(mid, embed_dim, 1)
        self.post_latent_conv = conv_nobias(embed_dim, mid, 1)
        self.final_conv = nn.Conv2d(ch, out_ch, 3, 1, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image -> (latent, skip features).

        Args:
            x: ``(B, 3, H, W)`` RGB in ``[0, 1]``; each side at least ``2 ** depth`` pixels
                (it is reflect-padded to a multiple of that).

        Returns:
            ``z``: ``(B, embed_dim, Hp / 2**(depth-1), Wp / 2**(depth-1))`` where ``Hp, Wp`` are the
            padded sizes; ``skips``: the encoder features the decoder needs (a new list).
        """
        x = pad_to_multiple(x, self.padding_multiple, mode="reflect")
        x = self.init_conv(x)
        skips = [x]
        for b1, b2, attn, down in self.encoder:
            x = b1(x)
            skips.append(x)
            x = attn(b2(x))
            skips.append(x)
            x = down(x)
        return self.latent_conv(x), skips

    def decode(self, z: torch.Tensor, skips: Sequence[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
        """(latent, skip features) -> image.

        Args:
            z: latent ``(B, embed_dim, h, w)`` from :meth:`encode` (possibly diffused).
            skips: the features :meth:`encode` returned for the same image (not modified).
            size: ``(H, W)`` to crop the result to (the unpadded input size); ``None`` keeps the
                padded size.

        Returns:
            ``(B, out_ch, H, W)`` RGB, nominally in ``[0, 1]`` (not clamped).
        """
        x = self.post_latent_conv(z)
        n = len(skips)
        for i, (b1, b2, attn, up) in enumerate(self.decoder):
            x = b1(torch.cat([x, skips[n - 1 - 2 * i]], dim=1))
            x = attn(b2(torch.cat([x, skips[n - 2 - 2 * i]], dim=1)))
            x = up(x)
        x = self.final_conv(x + skips[0])
        if size is not None:
            x = x[..., : size[0], : size[1]]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x`` ``(B, 3, H, W)`` through the latent (encode then decode)."""
        z, skips = self.encode(x)
        return self.decode(z, skips, size=(x.shape[-2], x.shape[-1]))
