"""CodeFormer (Zhou et al., NeurIPS 2022): VQ codebook lookup predicted by a transformer, plus a
controllable feature transform that blends in encoder features with fidelity weight ``w``.

State-dict layout of sczhou/CodeFormer's ``CodeFormer`` (``codeformer.pth``,
``codeformer_colorization.pth``, ``codeformer_inpainting.pth`` load with ``strict=True``).
Licence of the released weights and the reference code: S-Lab License 1.0 (non-commercial).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.vq import run_in_full_precision, working_layout
from .vqgan import CODE_DIM, Codebook, Encoder, Generator, res_block

#: Feature-map width at each fusion resolution.
FUSE_CHANNELS = {"16": 512, "32": 256, "64": 256, "128": 128, "256": 128, "512": 64}
#: Encoder block after which the skip feature of each resolution is taken (the official table).
ENCODER_TAP = {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
#: Generator block after which the fusion of each resolution is applied (the official table).
GENERATOR_FUSE = {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}

#: The released checkpoints and how the official inference scripts run each of them.
VARIANTS = ("restore", "colorization", "inpainting")

Fidelity = float | torch.Tensor


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters (same state-dict keys:
    ``in_proj_weight`` ``(3E, E)``, ``in_proj_bias`` ``(3E,)``, ``out_proj``), batch-first, run through
    ``scaled_dot_product_attention``. Queries and keys see ``x + pos``, values see ``x``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``x``, ``pos``: ``(B, L, E)`` -> ``(B, L, E)``."""
        b, n, e = x.shape
        w, bias = self.in_proj_weight, self.in_proj_bias
        q, k = F.linear(x + pos, w[: 2 * e], bias[: 2 * e]).split(e, dim=-1)
        v = F.linear(x, w[2 * e :], bias[2 * e :])

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.heads, e // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.out_proj(out.transpose(1, 2).reshape(b, n, e))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: self-attention (with position embedding) then a GELU MLP."""

    def __init__(self, dim: int, heads: int, dim_mlp: int) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.linear1 = nn.Linear(dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), pos)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class FuseSFT(nn.Module):
    """Controllable feature transform: ``dec + w * (dec * scale(e) + shift(e))`` where
    ``e = res_block(cat(enc, dec))``. ``w`` is a float or a per-sample tensor ``(B,)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.encode_enc = res_block(2 * channels, channels)
        self.scale = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2, True), nn.Conv2d(channels, channels, 3, padding=1)
        )
        self.shift = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2, True), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, w: Fidelity) -> torch.Tensor:
        e = self.encode_enc(torch.cat([enc, dec], dim=1))
        residual = torch.addcmul(self.shift(e), dec, self.scale(e))
        if isinstance(w, torch.Tensor):
            w = w.to(device=residual.device, dtype=residual.dtype).reshape(-1, 1, 1, 1)
        return dec + residual.mul_(w)


def adaptive_instance_norm(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``content`` ``(B, C, H, W)`` the per-channel mean and std of ``style`` (unbiased variance + ``eps``)."""

    def stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        var, mean = torch.var_mean(t.flatten(2), dim=2, unbiased=True)
        return mean[..., None, None], (var + eps).sqrt()[..., None, None]

    s_mean, s_std = stats(style)
    c_mean, c_std = stats(content)
    return (content - c_mean) / c_std * s_std + s_mean


class CodeFormer(nn.Module):
    """CodeFormer on ``(B, 3, 512, 512)`` faces.

    Args:
        codebook_size: number of codes (1024 for restoration/colorization, 512 for inpainting).
        dim_embd: transformer width (512).
        n_layers: transformer layers (9).
        n_head: attention heads (8; not recorded in checkpoints).
        dim_mlp: transformer MLP width (``2 * dim_embd``).
        latent_size: number of latent tokens (256 = 16x16).
        connect_list: resolutions (as strings, e.g. ``"32"``) where encoder features are fused.
        variant: ``"restore"``, ``"colorization"`` or ``"inpainting"``: how :meth:`restore` runs it.

    ``precise_codes`` (instance attribute, default True): under fp16/bf16 autocast, run the encoder in
    fp32 (the transformer always is) so reduced precision cannot change the predicted codes; False
    runs the encoder in the autocast dtype too (faster, but codes flip: see
    :func:`~facemend.archs.ops.vq.run_in_full_precision`).
    """

    precise_codes: bool = True

    def __init__(
        self,
        codebook_size: int = 1024,
        dim_embd: int = 512,
        n_layers: int = 9,
        n_head: int = 8,
        dim_mlp: int = 1024,
        latent_size: int = 256,
        connect_list: Sequence[str] = ("32", "64", "128", "256"),
        variant: str = "restore",
    ) -> None:
        super().__init__()
        unknown = [s for s in connect_list if s not in FUSE_CHANNELS]
        if unknown:
            raise ValueError(f"CodeFormer cannot fuse at resolution(s) {unknown}; known: {list(FUSE_CHANNELS)}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown CodeFormer variant {variant!r}; expected one of {VARIANTS}")
        self.variant = variant
        self.connect_list = tuple(connect_list)
        self.encoder = Encoder()
        self.quantize = Codebook(codebook_size)
        self.generator = Generator()
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(CODE_DIM, dim_embd)
        self.ft_layers = nn.ModuleList(TransformerLayer(dim_embd, n_head, dim_mlp) for _ in range(n_layers))
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))
        self.fuse_convs_dict = nn.ModuleDict({s: FuseSFT(FUSE_CHANNELS[s]) for s in self.connect_list})

    def predict_codes(self, lq_feat: torch.Tensor) -> torch.Tensor:
        """Code logits ``(B, H*W, codebook_size)`` for latent features ``(B, 256, H, W)``.

        Runs in the parameters' dtype with autocast off: the transformer is cheap next to the
        convolutions, and full precision keeps the chosen codes stable under bf16/fp16 autocast.
        """
        dtype = self.position_emb.dtype
        with torch.autocast(device_type=lq_feat.device.type, enabled=False):
            tokens = self.feat_emb(lq_feat.flatten(2).transpose(1, 2).to(dtype))  # (B, HW, E)
            pos = self.position_emb.unsqueeze(0)
            for layer in self.ft_layers:
                tokens = layer(tokens, pos)
            return self.idx_pred_layer(tokens)

    def forward(self, x: torch.Tensor, w: Fidelity = 0.0, adain: bool = True) -> torch.Tensor:
        """``x``: ``(B, 3, 512, 512)`` RGB in ``[-1, 1]`` -> restored image, same shape, about ``[-1, 1]``.

        Args:
            w: fidelity weight in ``[0, 1]`` (float, or a ``(B,)`` tensor): 0 = codebook only (quality),
                1 = most encoder detail (fidelity). Fusion is skipped when every weight is 0.
            adain: match the codebook features' channel statistics to the encoder's.
        """
        taps = frozenset(ENCODER_TAP[s] for s in self.connect_list)
        lq_feat, tapped = run_in_full_precision(lambda t: self.encoder(t, taps), x, self.position_emb, self.precise_codes)
        b, _, h, wd = lq_feat.shape
        if h * wd != self.position_emb.shape[0]:
            raise ValueError(
                f"CodeFormer expects {self.position_emb.shape[0]} latent tokens (512x512 input); got {h}x{wd} from {tuple(x.shape)}"
            )
        indices = self.predict_codes(lq_feat).argmax(dim=-1)
        quant = self.quantize.lookup(indices, h, wd)
        if adain:
            quant = adaptive_instance_norm(quant, lq_feat.to(quant.dtype))
        fuse = bool((w > 0).any()) if isinstance(w, torch.Tensor) else w > 0
        fuse_after = {GENERATOR_FUSE[s]: s for s in self.connect_list} if fuse else {}
        out = quant.contiguous(memory_format=torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
        for i, block in enumerate(self.generator.blocks):
            out = block(out)
            size = fuse_after.get(i)
            if size is not None:
                out = self.fuse_convs_dict[size](tapped[ENCODER_TAP[size]], out, w)
        return out

    def restore(self, x: torch.Tensor, fidelity: Fidelity = 0.5) -> torch.Tensor:
        """Run this checkpoint the way its official inference script does.

        Args:
            x: ``(B, 3, 512, 512)`` RGB float in ``[0, 1]`` (never modified).
            fidelity: ``w`` for the restoration model (float or ``(B,)`` tensor in ``[0, 1]``);
                ignored by the colorization (``w = 0``) and inpainting (``w = 1``) models.

        Returns:
            ``(B, 3, 512, 512)`` RGB in ``[0, 1]``. The inpainting model keeps every input pixel that
            is not pure white and fills the pure-white ones (the official masked composite).
        """
        x = working_layout(x * 2 - 1)
        if self.variant == "restore":
            out = self(x, w=fidelity, adain=True)
        elif self.variant == "colorization":
            out = self(x, w=0.0, adain=True)
        else:
            out = self(x, w=1.0, adain=False)
            hole = x.sum(dim=1, keepdim=True) == 3  # all three channels exactly 1.0 (white), as officially
            out = torch.where(hole, out.to(x.dtype), x)
        return ((out.float() + 1) / 2).clamp_(0, 1)
