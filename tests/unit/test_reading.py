"""Checkpoint reading: formats, containers, prefixes and every kind of bad file (real files)."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from facemend.model_loaders import UnsupportedModelError, read_checkpoint, unwrap_state_dict
from fm_testing.tiny_arch import tiny_state_dict


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("ext", [".pth", ".pt", ".ckpt", ".bin"])
def test_pickle_formats_roundtrip(tmp_path: Path, ext: str) -> None:
    sd = tiny_state_dict()
    p = tmp_path / f"m{ext}"
    torch.save(sd, p)
    assert _same(read_checkpoint(p), sd)


def test_safetensors_roundtrip(tmp_path: Path) -> None:
    sd = tiny_state_dict()
    p = tmp_path / "m.safetensors"
    save_file(sd, str(p))
    assert _same(read_checkpoint(p), sd)


def test_legacy_non_zip_pickle(tmp_path: Path) -> None:
    sd = tiny_state_dict()
    p = tmp_path / "legacy.pth"
    torch.save(sd, p, _use_new_zipfile_serialization=False)
    with open(p, "rb") as f:
        assert f.read(2) != b"PK"  # really the legacy format
    assert _same(read_checkpoint(p), sd)


def test_real_legacy_cuda_saved_file_reads_on_cpu() -> None:
    from fm_testing.images import RETINAFACE_MOBILENET

    if not RETINAFACE_MOBILENET.is_file():
        pytest.skip(f"shared weights not found at {RETINAFACE_MOBILENET}")
    sd = read_checkpoint(RETINAFACE_MOBILENET)
    assert all(t.device.type == "cpu" for t in sd.values())
    assert not any(k.startswith("module.") for k in sd)  # prefix stripped
    assert "body.stage1.0.0.weight" in sd


def test_container_preference_and_prefixes() -> None:
    ema, plain = tiny_state_dict(seed=1), tiny_state_dict(seed=2)
    got = unwrap_state_dict({"params": plain, "params_ema": ema})
    assert _same(got, ema)
    lightning = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in plain.items()}, "global_step": 10}
    assert _same(unwrap_state_dict(lightning), plain)
    nested = {"model": {"netG.vqvae." + k: v for k, v in plain.items()}}
    assert _same(unwrap_state_dict(nested), plain)
    partial = {"vqvae." + k: v for k, v in plain.items()} | {"loss.w": torch.zeros(1)}
    # Lightning's vqvae. is stripped where present; other keys stay for the arch's prepare hook.
    assert set(unwrap_state_dict(partial)) == set(plain) | {"loss.w"}
    mixed = {"module." + k: v for k, v in plain.items()} | {"loss.w": torch.zeros(1)}
    assert set(unwrap_state_dict(mixed)) == set(mixed)  # module. is stripped only when on every key


@pytest.mark.parametrize("container", ["params_ema", "params", "state_dict", "model", "net", "g_ema"])
def test_each_container_key(tmp_path: Path, container: str) -> None:
    sd = tiny_state_dict()
    p = tmp_path / "c.pth"
    torch.save({container: sd}, p)
    assert _same(read_checkpoint(p), sd)


def test_missing_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="no such file"):
        read_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(UnsupportedModelError, match="empty"):
        read_checkpoint(tmp_path / "empty.pth")
    (tmp_path / "dir.pth").mkdir()
    with pytest.raises(UnsupportedModelError, match="directory"):
        read_checkpoint(tmp_path / "dir.pth")
    (tmp_path / "x.onnx").write_bytes(b"abc")
    with pytest.raises(UnsupportedModelError, match="unsupported file type"):
        read_checkpoint(tmp_path / "x.onnx")


def test_truncated_pickle(tmp_path: Path) -> None:
    p = tmp_path / "t.pth"
    torch.save(tiny_state_dict(channels=64), p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsupportedModelError, match=r"t\.pth is damaged or not a checkpoint: download it again"):
        read_checkpoint(p)


def test_garbage_file(tmp_path: Path) -> None:
    p = tmp_path / "g.ckpt"
    p.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(UnsupportedModelError, match=r"g\.ckpt"):
        read_checkpoint(p)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.marker, "pwned"))


def test_code_running_pickle_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"weight": _Evil(marker)}, f)
    with pytest.raises(UnsupportedModelError, match="refused to unpickle") as info:
        read_checkpoint(p)
    assert not marker.exists()
    assert "pathlib.Path.write_text" in str(info.value)  # names what the file asks to run
    assert "damaged" not in str(info.value) and "weights_only" not in str(info.value)
    p2 = tmp_path / "evil2.pt"
    torch.save({"w": torch.zeros(1), "x": _Evil(marker)}, p2)
    with pytest.raises(UnsupportedModelError, match="refused") as info:
        read_checkpoint(p2)
    assert not marker.exists()
    # protocol 2 (torch.save) spells the method as getattr(pathlib.Path, "write_text")
    assert "builtins.getattr, pathlib.Path" in str(info.value) and "weights_only" not in str(info.value)


def test_safetensors_lying_header(tmp_path: Path) -> None:
    p = tmp_path / "lie.safetensors"
    save_file({"a": torch.zeros(4, 4)}, str(p))
    data = p.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["a"]["data_offsets"] = [0, 4096]
    header["a"]["shape"] = [32, 32]
    raw = json.dumps(header).encode()
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    with pytest.raises(UnsupportedModelError, match="lies about tensor 'a'"):
        read_checkpoint(p)


def test_safetensors_truncated_and_huge_header(tmp_path: Path) -> None:
    p = tmp_path / "cut.safetensors"
    save_file({"a": torch.zeros(64, 64)}, str(p))
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(UnsupportedModelError, match="cut.safetensors"):
        read_checkpoint(p)
    q = tmp_path / "huge.safetensors"
    q.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(UnsupportedModelError, match="corrupt safetensors header"):
        read_checkpoint(q)


def test_non_tensor_content(tmp_path: Path) -> None:
    p = tmp_path / "list.pth"
    torch.save([1, 2, 3], p)
    with pytest.raises(UnsupportedModelError, match="not a state dict"):
        read_checkpoint(p)
    q = tmp_path / "notensors.pth"
    torch.save({"epoch": 1, "lr": 0.1}, q)
    with pytest.raises(UnsupportedModelError, match="no tensors"):
        read_checkpoint(q)


def test_reading_writes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "t.pth"
    torch.save(tiny_state_dict(), p)
    before = sorted(tmp_path.iterdir())
    read_checkpoint(p)
    assert sorted(tmp_path.iterdir()) == before


# --- broken files are called broken; files that ask for Python objects are called that ---------

_DAMAGED = "is damaged or not a checkpoint: download it again"


def _assert_damaged(p: Path) -> str:
    with pytest.raises(UnsupportedModelError) as info:
        read_checkpoint(p)
    msg = str(info.value)
    assert msg.startswith(f"{p} {_DAMAGED}"), msg
    assert "refused" not in msg and "Python objects" not in msg, msg
    assert "weights_only" not in msg and "\x1b" not in msg, msg
    return msg


def test_random_bytes_are_damaged_not_code(tmp_path: Path) -> None:
    p = tmp_path / "random.pth"
    gen = torch.Generator().manual_seed(1234)
    p.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).tolist()))
    assert p.read_bytes()[:2] != b"PK"
    # torch itself calls these bytes an "unsupported operand" of its weights-only unpickler and
    # advises weights_only=False; FaceMend must say what they are instead.
    with pytest.raises(Exception) as torch_error:
        torch.load(str(p), weights_only=True)
    assert "weights_only" in str(torch_error.value) or "load key" in str(torch_error.value)
    msg = _assert_damaged(p)
    assert "not a pickle" in msg


def test_truncated_zip_checkpoint_is_damaged(tmp_path: Path) -> None:
    p = tmp_path / "cut_zip.pth"
    torch.save(tiny_state_dict(channels=64), p)
    data = p.read_bytes()
    assert data[:2] == b"PK"
    p.write_bytes(data[: len(data) * 2 // 3])
    assert "zip archive" in _assert_damaged(p)


def test_truncated_legacy_pickle_is_damaged(tmp_path: Path) -> None:
    src = tmp_path / "full.pth"
    torch.save(tiny_state_dict(channels=64), src, _use_new_zipfile_serialization=False)
    data = src.read_bytes()
    in_data = tmp_path / "cut_in_data.pth"  # cut in the tensor bytes after the pickles
    in_data.write_bytes(data[: len(data) // 2])
    _assert_damaged(in_data)
    in_pickle = tmp_path / "cut_in_pickle.pth"  # cut inside the object pickle itself
    in_pickle.write_bytes(data[:300])
    assert "ends in the middle of its pickle" in _assert_damaged(in_pickle)


def test_html_error_page_saved_as_pth_is_damaged(tmp_path: Path) -> None:
    p = tmp_path / "page.pth"
    p.write_bytes(b"<!DOCTYPE html><html><body>Rate limit exceeded</body></html>")
    _assert_damaged(p)


class CustomConfig:
    """A user class pickled into a checkpoint (torch.save of a dict holding it)."""

    def __init__(self) -> None:
        self.lr = 0.1


def test_zip_pickle_of_a_custom_class_asks_for_python_objects(tmp_path: Path) -> None:
    p = tmp_path / "with_config.pth"
    torch.save({"w": torch.zeros(2), "config": CustomConfig()}, p)
    with pytest.raises(UnsupportedModelError) as info:
        read_checkpoint(p)
    msg = str(info.value)
    assert msg.startswith(f"{p}: refused to unpickle: the file asks to run or construct Python objects"), msg
    assert "CustomConfig" in msg and "damaged" not in msg and "weights_only" not in msg, msg


def test_pickle_globals_lists_references_without_running_them(tmp_path: Path) -> None:
    from facemend.model_loaders.reading import allowed_globals, pickle_globals

    p = tmp_path / "ok.pth"
    torch.save(tiny_state_dict(), p)
    refs = pickle_globals(p)
    assert "torch._utils._rebuild_tensor_v2" in refs and all(r in allowed_globals() for r in refs)
    marker = tmp_path / "marker.txt"
    q = tmp_path / "evil.pkl.pth"
    with open(q, "wb") as f:
        pickle.dump(_Evil(marker), f, protocol=4)  # STACK_GLOBAL, memoised strings
    assert "pathlib.Path.write_text" in pickle_globals(q)
    assert not marker.exists()


def test_library_text_is_cleaned_before_it_is_quoted() -> None:
    from facemend.model_loaders.errors import quote_library_text, shorten
    from facemend.model_loaders.reading import library_reason

    coloured = "\x1b[31mRuntimeError\x1b[0m: \x1b[1mPytorchStreamReader failed\x1b[0m reading zip archive"
    assert quote_library_text(coloured) == "RuntimeError: PytorchStreamReader failed reading zip archive"
    torch_like = pickle.UnpicklingError(
        "Weights only load failed. This file can still be loaded, to do so you have two options, \x1b[1mdo those "
        "steps only if you trust the source of the checkpoint\x1b[0m.\n\t(1) Re-running `torch.load` with "
        "`weights_only` set to `False` will likely succeed, but it can result in arbitrary code execution.\n"
        "Please file an issue with the following so that we can make `weights_only=True` compatible with your "
        "use case: WeightsUnpickler error: Unsupported operand 149"
    )
    assert library_reason(torch_like) == "Unsupported operand 149"
    long = "word " * 100
    short = shorten(long, 50)
    assert len(short) <= 50 and short.endswith("...") and short[:-3].split()[-1] == "word"
    assert shorten("PytorchStreamReader failed reading zip archive: failed finding central directory", 41) == (
        "PytorchStreamReader failed reading zip..."
    )
