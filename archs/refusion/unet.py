"""ConditionalUNet: IR-SDE's noise network (official state-dict layout).

A ResBlock/linear-attention U-Net conditioned on the time step. Input ``cat(x_t - mu, mu)``,
reflect-padded at the bottom/right to a multiple of ``2 ** depth``; output the predicted noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import PreNormResidualAttention, ResBlock, SinusoidalTimeEmbedding, conv_nobias, downsample, pad_to_multiple, upsample


class ConditionalUNet(nn.Module):
    """Time-conditioned U-Net predicting the noise of an IR-SDE state.

    Args:
        in_nc: channels of the state (3 for RGB).
        out_nc: output channels (3).
        nf: base width (64 for most released models, 32 for the shadow-removal one).
        depth: number of levels (4, or 5 for the shadow-removal model).
        level_mults: channel multiples of each level's output relative to ``nf`` (length
            ``depth``); ``None`` is the official doubling ``2, 4, ..., 2 ** depth``.
    """

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, depth: int = 4, level_mults: Sequence[int] | None = None) -> None:
        super().__init__()
        mults = list(level_mults) if level_mults is not None else [2 ** (i + 1) for i in range(depth)]
        if len(mults) != depth:
            raise ValueError(f"level_mults has {len(mults)} entries for depth {depth}")
        self.depth = depth
        self.padding_multiple = 2**depth
        dims = [nf] + [nf * m for m in mults]
        time_dim = nf * 4
        self.init_conv = conv_nobias(in_nc * 2, nf, 7)
        self.time_mlp = nn.Sequential(SinusoidalTimeEmbedding(nf), nn.Linear(nf, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(depth):
            d_in, d_out = dims[i], dims[i + 1]
            last = i == depth - 1
            self.downs.append(nn.ModuleList([
                ResBlock(d_in, d_in, time_dim),
                ResBlock(d_in, d_in, time_dim),
                PreNormResidualAttention(d_in),
                conv_nobias(d_in, d_out, 3) if last else downsample(d_in, d_out),
            ]))
            self.ups.insert(0, nn.ModuleList([
                ResBlock(d_out + d_in, d_out, time_dim),
                ResBlock(d_out + d_in, d_out, time_dim),
                PreNormResidualAttention(d_out),
                conv_nobias(d_out, d_in, 3) if i == 0 else upsample(d_out, d_in),
            ]))
        mid = dims[-1]
        self.mid_block1 = ResBlock(mid, mid, time_dim)
        self.mid_attn = PreNormResidualAttention(mid)
        self.mid_block2 = ResBlock(mid, mid, time_dim)
        self.final_res_block = ResBlock(nf * 2, nf, time_dim)
        self.final_conv = nn.Conv2d(nf, out_nc, 3, 1, 1)

    def forward(self, x_t: torch.Tensor, mu: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Predict the noise in ``x_t``.

        Args:
            x_t: state ``(B, C, H, W)`` float; each side at least ``2 ** depth`` pixels
                (reflect padding).
            mu: condition, same shape.
            t: time step(s): a number or a tensor ``(B,)`` / ``(1,)``.

        Returns:
            Predicted noise ``(B, out_nc, H, W)``.
        """
        h, w = x_t.shape[-2:]
        t = torch.as_tensor(t, device=x_t.device).reshape(-1)
        x = pad_to_multiple(torch.cat([x_t - mu, mu], dim=1), self.padding_multiple, mode="reflect")
        x = self.init_conv(x)
        first = x
        temb = self.time_mlp(t)
        skips: list[torch.Tensor] = []
        for b1, b2, attn, down in self.downs:
            x = b1(x, temb)
            skips.append(x)
            x = attn(b2(x, temb))
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, temb)), temb)
        for b1, b2, attn, up in self.ups:
            x = b1(torch.cat([x, skips.pop()], dim=1), temb)
            x = attn(b2(torch.cat([x, skips.pop()], dim=1), temb))
            x = up(x)
        x = self.final_res_block(torch.cat([x, first], dim=1), temb)
        return self.final_conv(x)[..., :h, :w]
