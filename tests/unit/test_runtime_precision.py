"""The GPU-first inference path, checked on the CPU: reduced-precision weight storage with an fp32
master, the fp32 reload for the NaN/Inf retry, channels-last weights, memory-sized chunks and the
opt-in ``torch.compile`` with its fallback. (CPU bf16 stands in for GPU fp16/bf16: same code.)"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math

import pytest
import torch
from torch import nn

from facemend import runtime
from facemend.model_loaders import RestorationModel, load_model
from facemend.model_loaders import restore_batch
from facemend.runtime import ManagedModel
from facemend.runtime.compile import enable_compile

CPU = torch.device("cpu")


def _bf16_works() -> bool:
    try:
        torch.nn.functional.conv2d(torch.ones(1, 2, 4, 4, dtype=torch.bfloat16), torch.ones(2, 2, 3, 3, dtype=torch.bfloat16))
        return True
    except RuntimeError:
        return False


pytestmark = pytest.mark.skipif(not _bf16_works(), reason="this CPU/torch build cannot run bf16 convolutions at all")


def tiny_gfpgan() -> RestorationModel:
    from facemend.archs.gfpgan import GFPGANv1Clean

    torch.manual_seed(5)
    return load_model(GFPGANv1Clean(out_size=64, channel_multiplier=1, narrow=0.25).state_dict())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _fp32_reference(model: RestorationModel, x: torch.Tensor) -> torch.Tensor:
    """``restore_batch`` in fp32 on an independent copy of ``model`` (same resizing as the real runs)."""
    twin = dataclasses.replace(model, module=copy.deepcopy(model.module))
    return restore_batch(ManagedModel(twin, precision="fp32"), x)


def test_bf16_storage_halves_weights_keeps_fp32_master_and_restores_exactly(face_crop: torch.Tensor) -> None:
    model = tiny_gfpgan()
    x = face_crop[..., ::8, ::8].repeat(3, 1, 1, 1)
    original = {k: v.clone() for k, v in model.module.state_dict().items()}
    ref = _fp32_reference(model, x)
    fp32_bytes = runtime.models.module_bytes(model.module)

    managed = ManagedModel(model, precision="bf16")
    y = restore_batch(managed, x)
    assert runtime.module_dtype(model.module) == torch.bfloat16
    assert runtime.models.module_bytes(model.module) < 0.55 * fp32_bytes
    conv = model.module.conv_body_first.weight
    assert conv.dtype == torch.bfloat16 and conv.is_contiguous(memory_format=torch.channels_last)
    assert managed.weights.master is not None and all(t.dtype == torch.float32 for t in managed.weights.master.values())
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert 35 < psnr(y, ref) < math.inf  # it really ran in bf16, and well
    assert torch.equal(x, face_crop[..., ::8, ::8].repeat(3, 1, 1, 1))  # input untouched

    managed.unload()
    assert runtime.module_dtype(model.module) == torch.float32
    restored = model.module.state_dict()
    assert all(torch.equal(restored[k], v) and restored[k].dtype == v.dtype for k, v in original.items())
    assert torch.equal(_fp32_reference(model, x), ref)


def test_forced_overflow_retries_in_fp32_with_reloaded_fp32_weights(face_crop: torch.Tensor, caplog) -> None:
    model = tiny_gfpgan()
    x = face_crop[..., ::8, ::8]
    ref = _fp32_reference(model, x)
    seen: list[torch.dtype] = []

    def overflow(mod: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        seen.append(mod.weight.dtype)
        return out * math.inf if out.dtype != torch.float32 else out  # reduced precision "overflows"

    model.module.final_conv.register_forward_hook(overflow)
    managed = ManagedModel(model, precision="bf16")
    with caplog.at_level(logging.WARNING, logger="facemend"):
        y = restore_batch(managed, x)
    assert seen == [torch.bfloat16, torch.float32]  # the retry ran on fp32 weights, not bf16 ones
    assert managed.weights.reloads == 1
    assert torch.equal(y, ref)  # the fp32 retry is the exact fp32 result
    assert "NaN/Inf" in caplog.text and "reloading its fp32 weights" in caplog.text
    restore_batch(managed, x)  # the next run starts from bf16 weights again (and retries again)
    assert seen[2:] == [torch.bfloat16, torch.float32] and managed.weights.reloads == 2


class PreciseNet(nn.Module):
    """A stand-in codebook network: ``precise_codes`` means "my code choice runs in my weights' dtype"."""

    precise_codes = True

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 3, padding=1)
        self.decoder = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def test_precise_codes_networks_keep_fp32_storage_unless_they_name_fp32_submodules() -> None:
    net = PreciseNet()
    managed = ManagedModel(None, module=net, precision="bf16")
    managed.load()
    assert net.encoder.weight.dtype == torch.float32 and net.decoder.weight.dtype == torch.float32
    assert net.encoder.weight.is_contiguous()  # fp32 storage keeps the checkpoint's layout too

    net2 = PreciseNet()
    net2.fp32_submodules = ("encoder",)
    managed2 = ManagedModel(None, module=net2, precision="bf16")
    managed2.load()
    assert net2.encoder.weight.dtype == torch.float32 and net2.decoder.weight.dtype == torch.bfloat16
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(net2(torch.rand(1, 3, 8, 8))).all()


def test_fp32_policy_leaves_weights_alone() -> None:
    model = tiny_gfpgan()
    before = {k: v.data_ptr() for k, v in model.module.state_dict().items()}
    ManagedModel(model, precision="fp32").load()
    assert {k: v.data_ptr() for k, v in model.module.state_dict().items()} == before


def test_to_channels_last_handles_5d_weights_and_keeps_values() -> None:
    model = tiny_gfpgan()
    sd = {k: v.clone() for k, v in model.module.state_dict().items()}
    runtime.to_channels_last(model.module)
    assert model.module.final_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(model.module.state_dict()[k], v) for k, v in sd.items())


def test_chunks_are_sized_from_free_memory_and_compute_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.memory, "free_memory_bytes", lambda device: 1000)
    sizes: dict[torch.dtype, list[int]] = {torch.float32: [], torch.bfloat16: []}
    for dtype, seen in sizes.items():
        runtime.run_in_chunks(
            lambda chunk, index, seen=seen: seen.append(chunk.shape[0]) or chunk.clone(),
            torch.zeros(20, 1, 1, 1), device=CPU, dtype=dtype, per_item_bytes=100, max_chunk=64,
        )
    # one item first on the CPU (no timing yet), then what fits: 60% of 1000 bytes / 100 per item
    assert sizes[torch.float32] == [1, 6, 6, 6, 1]
    assert sizes[torch.bfloat16] == [1, 10, 9]  # half-size activations: 60 bytes per item


def test_compile_is_off_by_default_cached_per_dtype_and_matches_eager(face_crop: torch.Tensor) -> None:
    model = tiny_gfpgan()
    x = face_crop[..., ::8, ::8]
    ref = _fp32_reference(model, x)
    assert not isinstance(model.module.__dict__.get("forward"), runtime.compile.CompiledForward)
    managed = ManagedModel(model, precision="fp32", compile=True, compile_backend="eager")
    dispatcher = model.module.forward
    assert isinstance(dispatcher, runtime.compile.CompiledForward)
    for _ in range(2):
        y = restore_batch(managed, x)
    assert torch.allclose(y, ref, atol=1e-5)
    managed.precision = "bf16"
    restore_batch(managed, x)
    assert dispatcher.calls == {(torch.float32, "cpu"): 2, (torch.bfloat16, "cpu"): 1}
    assert set(dispatcher.cache) == {(torch.float32, "cpu"), (torch.bfloat16, "cpu")}
    assert enable_compile(model.module) is dispatcher  # enabling twice keeps the one cache


def test_compile_failure_falls_back_to_eager_with_a_log_line(face_crop: torch.Tensor, caplog) -> None:
    model = tiny_gfpgan()
    x = face_crop[..., ::8, ::8]
    ref = _fp32_reference(model, x)

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    managed = ManagedModel(model, precision="fp32", compile=True, compile_backend=broken_backend)
    with caplog.at_level(logging.WARNING, logger="facemend"):
        y = restore_batch(managed, x)
    assert torch.allclose(y, ref, atol=1e-6)
    assert "torch.compile of GFPGANv1Clean failed" in caplog.text and "running it eagerly" in caplog.text
    assert model.module.forward.failed is not None


def test_compile_does_not_swallow_out_of_memory() -> None:
    class Oom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    m = Oom()
    enable_compile(m, backend=lambda gm, ex: gm)
    with pytest.raises(RuntimeError, match="out of memory"):
        m(torch.zeros(1))
    assert m.forward.failed is None


def test_two_wrappers_of_one_network_share_its_weight_store(face_crop: torch.Tensor) -> None:
    model = tiny_gfpgan()
    x = face_crop[..., ::8, ::8]
    first = ManagedModel(model, precision="bf16")
    restore_batch(first, x)
    second = ManagedModel(model, precision="fp32")  # e.g. a re-run loader wrapping the cached network
    assert second.weights is first.weights
    assert torch.equal(restore_batch(second, x), _fp32_reference(model, x))
    assert runtime.module_dtype(model.module) == torch.float32
    assert len(model.module._forward_pre_hooks) == 1
