"""The VQ-GAN building blocks shared by CodeFormer, RestoreFormer(++) and VQFR (``archs/ops/vq.py``).

The end-to-end parity tests prove the blocks inside each network; these pin down the contracts the
networks rely on: official key names, memory formats, exact GroupNorm, attention maths, and the
dtype of the residual stream under autocast.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facemend.archs.ops.vq import AttnBlock, GroupNorm, ResnetBlock, channels_last_group_norm, map_attention, working_layout


def _map(c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, h, w, generator=g) * 3 + 4  # an offset mean, as after a conv
    x[0, :, :16] = 0.25  # a constant band
    x[1] *= 1e-3  # a small-scale sample
    return x


@pytest.mark.parametrize("name", ["nin_shortcut", "conv_out", "shortcut_conv", "residual_func"])
def test_resnet_block_keeps_each_codebase_s_shortcut_name(name: str) -> None:
    keys = set(ResnetBlock(64, 128, shortcut_name=name).state_dict())
    assert {f"{name}.weight", f"{name}.bias", "norm1.weight", "conv1.weight", "norm2.bias", "conv2.bias"} <= keys
    assert len(keys) == 10
    assert not any(k.startswith(name) for k in ResnetBlock(64, 64, shortcut_name=name).state_dict())


def test_resnet_block_is_the_pre_activation_residual_formula() -> None:
    torch.manual_seed(0)
    block = ResnetBlock(32, 64).eval()
    x = torch.randn(2, 32, 8, 8)

    def reference(t: torch.Tensor) -> torch.Tensor:
        h = block.conv1(F.silu(F.group_norm(t, 32, block.norm1.weight, block.norm1.bias, 1e-6)))
        h = block.conv2(F.silu(F.group_norm(h, 32, block.norm2.weight, block.norm2.bias, 1e-6)))
        return block.nin_shortcut(t) + h

    with torch.inference_mode():
        before = x.clone()
        got = block(x)
        assert torch.equal(x, before)  # the input is never written
        assert torch.allclose(got, reference(x), atol=1e-5)


@pytest.mark.parametrize("block", [ResnetBlock(64, 64), AttnBlock(64)], ids=["resnet", "attention"])
def test_blocks_keep_the_input_memory_format_and_values(block: torch.nn.Module) -> None:
    torch.manual_seed(1)
    block.eval()
    x = torch.randn(2, 64, 16, 16)
    with torch.inference_mode():
        nchw = block(x)
        cl = block(working_layout(x))
    assert nchw.is_contiguous() and cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(nchw, cl, atol=1e-5)


@pytest.mark.parametrize("block", [ResnetBlock(64, 64), AttnBlock(64)], ids=["resnet", "attention"])
def test_an_fp32_residual_stream_stays_fp32_under_autocast(block: torch.nn.Module) -> None:
    x = torch.randn(1, 64, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert block.eval()(x).dtype == torch.float32
        assert block(x.bfloat16()).dtype == torch.bfloat16


def test_channels_last_group_norm_matches_float64_reference() -> None:
    x = _map(64, 256, 192)
    w, b = torch.randn(64), torch.randn(64)
    ref = F.group_norm(x.double(), 32, w.double(), b.double(), 1e-6)
    xc = working_layout(x)
    before = xc.clone()
    out = channels_last_group_norm(xc, 32, w, b, 1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(xc, before)
    assert (out.double() - ref).abs().max().item() < 2e-5
    # PyTorch's own channels-last kernel is the reason this function exists: it is far less exact.
    native = F.group_norm(xc, 32, w, b, 1e-6)
    assert (native.double() - ref).abs().max().item() > 10 * (out.double() - ref).abs().max().item()


def test_group_norm_module_is_exact_in_both_layouts() -> None:
    norm = GroupNorm(32, 128, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = _map(128, 128, 128, seed=1)
    ref = F.group_norm(x.double(), 32, norm.weight.double(), norm.bias.double(), 1e-6)
    with torch.inference_mode():
        for layout in (x, working_layout(x)):
            assert (norm(layout).double() - ref).abs().max().item() < 2e-5


def test_map_attention_is_multi_head_softmax_attention() -> None:
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 64, 4, 4, generator=g) for _ in range(3))
    for heads in (1, 4):
        d = 64 // heads

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, heads, HW, d), head-major channels
            return t.reshape(2, heads, d, 16).transpose(2, 3)

        weights = torch.softmax(split(q) @ split(k).transpose(2, 3) / d**0.5, dim=-1)
        ref = (weights @ split(v)).transpose(2, 3).reshape(2, 64, 4, 4)
        got = map_attention(working_layout(q), working_layout(k), working_layout(v), heads=heads)
        assert torch.allclose(got, ref, atol=1e-5)
