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
    with pytest.raises(UnsupportedModelError, match=r"t\.pth.*(truncated|corrupt)"):
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
    with pytest.raises(UnsupportedModelError, match="refused to unpickle"):
        read_checkpoint(p)
    assert not marker.exists()
    p2 = tmp_path / "evil2.pt"
    torch.save({"w": torch.zeros(1), "x": _Evil(marker)}, p2)
    with pytest.raises(UnsupportedModelError, match="refused"):
        read_checkpoint(p2)
    assert not marker.exists()


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
