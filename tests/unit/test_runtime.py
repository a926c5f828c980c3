"""The runtime bridge outside ComfyUI: folders, precision, chunking, interruption, restore_batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from facemend import runtime
from facemend.model_loaders import ControlPlan, Registry, load_model, restore_batch
from facemend.nodes.inputs import require_family
from facemend.runtime import ManagedModel, Progress, run_in_chunks
from fm_testing.tiny_arch import TINY_SPEC, tiny_state_dict


def test_standalone_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(tmp_path))
    assert runtime.folder_paths_for("facerestore_models") == [tmp_path / "facerestore_models", tmp_path / "GFPGAN", tmp_path / "Codeformer"]
    assert runtime.download_dir("facedetection") == tmp_path / "facedetection"
    (tmp_path / "GFPGAN").mkdir()
    (tmp_path / "GFPGAN" / "GFPGANv1.4.pth").write_bytes(b"x")
    (tmp_path / "GFPGAN" / "notes.txt").write_text("ignored")
    assert runtime.list_models("facerestore_models") == ["GFPGANv1.4.pth"]
    assert runtime.find_model("facerestore_models", "GFPGANv1.4.pth") == tmp_path / "GFPGAN" / "GFPGANv1.4.pth"
    assert runtime.find_model("facerestore_models", "missing.pth") is None
    for bad in ("../x.pth", "/etc/passwd", ""):
        with pytest.raises(ValueError):
            runtime.find_model("facerestore_models", bad)
    with pytest.raises(KeyError):
        runtime.folder_paths_for("loras")


def test_resolve_dtype() -> None:
    cpu = torch.device("cpu")
    assert runtime.resolve_dtype("fp32", cpu) == torch.float32
    assert runtime.resolve_dtype("fp16", cpu) == torch.float32  # not useful on CPU
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert runtime.cpu_supports_bf16() == native
    assert runtime.resolve_dtype("auto", cpu) == (torch.bfloat16 if native else torch.float32)
    assert runtime.resolve_dtype("bf16", cpu) == torch.bfloat16  # an explicit choice is honoured
    with pytest.raises(ValueError):
        runtime.resolve_dtype("int8", cpu)


def test_run_with_fallback_recomputes_non_finite_in_fp32() -> None:
    calls: list[torch.dtype] = []

    def fn() -> torch.Tensor:
        x = torch.ones(2, 2) @ torch.ones(2, 2)
        calls.append(x.dtype)
        return x / 0 if x.dtype != torch.float32 else x

    out = runtime.run_with_fallback(fn, torch.device("cpu"), torch.bfloat16)
    assert calls == [torch.bfloat16, torch.float32]
    assert torch.isfinite(out).all() and out.dtype == torch.float32


def test_chunks_back_off_on_oom_and_keep_order() -> None:
    seen: list[int] = []

    def fn(chunk: torch.Tensor, index: slice) -> torch.Tensor:
        seen.append(chunk.shape[0])
        if chunk.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return chunk * 2

    x = torch.arange(7, dtype=torch.float32).view(7, 1, 1, 1)
    progress = Progress(7)
    y = run_in_chunks(fn, x, device=torch.device("cpu"), per_item_bytes=1, max_chunk=8, progress=progress)
    assert torch.equal(y, x * 2)
    # one item first on the CPU (no timing yet), then all that fit (6) -> OOM, 4 -> OOM, then chunks of 2
    assert seen == [1, 6, 4, 2, 2, 2]
    assert progress.done == 7


def test_chunks_are_sized_to_a_second_of_work_so_cancel_is_honoured() -> None:
    """Slow items come one or a few at a time (interruption is checked and progress advanced
    between chunks); fast items are batched up to what fits in memory."""
    import time

    seen: list[int] = []
    done: list[int] = []

    def slow(chunk: torch.Tensor, index: slice) -> torch.Tensor:
        seen.append(chunk.shape[0])
        time.sleep(0.03 * chunk.shape[0])
        return chunk

    class Counting(Progress):
        def update(self, n: int = 1) -> None:
            super().update(n)
            done.append(self.done)

    x = torch.zeros(9, 1, 1, 1)
    run_in_chunks(slow, x, device=torch.device("cpu"), per_item_bytes=1, max_chunk=16, progress=Counting(9),
                  chunk_seconds=0.1)
    assert seen[0] == 1 and max(seen) <= 3, seen  # 0.1 s / 0.03 s per item
    assert done[-1] == 9 and len(done) == len(seen) >= 3

    fast: list[int] = []
    run_in_chunks(lambda c, i: fast.append(c.shape[0]) or c, torch.zeros(9, 1, 1, 1), device=torch.device("cpu"),
                  per_item_bytes=1, max_chunk=16)
    assert fast == [1, 8]


def test_oom_at_one_item_gives_advice() -> None:
    def fn(chunk: torch.Tensor, index: slice) -> torch.Tensor:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory even for one image"):
        run_in_chunks(fn, torch.zeros(2, 1, 1, 1), device=torch.device("cpu"), per_item_bytes=1)


def test_other_errors_are_not_swallowed() -> None:
    def fn(chunk: torch.Tensor, index: slice) -> torch.Tensor:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_in_chunks(fn, torch.zeros(2, 1, 1, 1), device=torch.device("cpu"), per_item_bytes=1)


def test_interruption_between_chunks() -> None:
    done: list[int] = []

    def fn(chunk: torch.Tensor, index: slice) -> torch.Tensor:
        done.append(index.start)
        runtime.request_interrupt()
        return chunk

    with pytest.raises(runtime.Interrupted):
        run_in_chunks(fn, torch.zeros(4, 1, 1, 1), device=torch.device("cpu"), per_item_bytes=1, max_chunk=1)
    assert done == [0]
    runtime.check_interrupted()  # the flag was consumed


def _managed(precision: str = "fp32") -> ManagedModel:
    return ManagedModel(load_model(tiny_state_dict(), registry=Registry([TINY_SPEC])), precision=precision)


def test_restore_batch_matches_direct_call_and_per_item_controls() -> None:
    managed = _managed()
    x = torch.rand(3, 3, 32, 32)
    x0 = x.clone()
    y = restore_batch(managed, x, ControlPlan(per_item={"gain": [0.0, 1.0, 0.0]}))
    assert torch.equal(x, x0)
    assert torch.allclose(y[0], x[0], atol=1e-6) and torch.allclose(y[2], x[2], atol=1e-6)
    direct = managed.model(x[1:2], gain=1.0).clamp(0, 1)
    assert torch.allclose(y[1:2], direct, atol=1e-6)
    with pytest.raises(ValueError, match="one per face"):
        restore_batch(managed, x, ControlPlan(per_item={"gain": [0.5, 0.5]}))


def test_restore_batch_zero_and_non_square() -> None:
    managed = _managed()
    assert restore_batch(managed, torch.zeros(0, 3, 64, 64)).shape == (0, 3, 64, 64)
    spec512 = TINY_SPEC.__class__(**{**TINY_SPEC.__dict__, "input_size": 64})
    m = ManagedModel(load_model(tiny_state_dict(), registry=Registry([spec512])), precision="fp32")
    with pytest.raises(ValueError, match="square"):
        restore_batch(m, torch.rand(1, 3, 64, 48))
    out = restore_batch(m, torch.rand(2, 3, 100, 100), ControlPlan(controls={"gain": 0.0}))  # resized in and out
    assert out.shape == (2, 3, 100, 100)


def test_require_family_messages() -> None:
    managed = _managed()
    require_family(managed, "codebook", "Codebook Restore")
    with pytest.raises(ValueError, match="is a codebook model; connect it to 'FaceMend Codebook Restore'"):
        require_family(managed, "gfpgan", "FaceMend CS-SFT Modulate")
    with pytest.raises(ValueError, match="not a FaceMend model"):
        require_family(object(), "gfpgan", "FaceMend CS-SFT Modulate")
