"""Checkpoint file -> flat state dict (``str -> torch.Tensor``), safely.

Pickled files are read with ``torch.load(weights_only=True, map_location="cpu")``: nothing in a
file can run code, and files saved on CUDA devices load on any machine. Safetensors headers are
checked against the file size before any tensor is read, so a lying header is refused instead of
read past the end of the file.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

from ..archs.spec import StateDict
from ..runtime.folders import MODEL_EXTENSIONS
from .errors import UnsupportedModelError

#: Container keys that wrap the real state dict, most preferred first (``params_ema`` is the
#: EMA generator that official GFPGAN/CodeFormer/VQFR inference uses).
CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "g_ema")

#: Prefixes stripped when *every* key carries them (DataParallel, Lightning, RestoreFormer).
STRIP_PREFIXES = ("module.", "netG.", "vqvae.")

#: Lightning sub-module prefixes stripped from the keys that carry them even when other keys do not:
#: RestoreFormer's Lightning checkpoints keep the network under ``vqvae.`` beside training-only
#: modules (``loss.*``). The remaining keys are left for the architecture's ``prepare`` hook, which
#: drops the ones it knows to be training-only and refuses anything else.
PARTIAL_STRIP_PREFIXES = ("vqvae.",)

# Safetensors dtype names -> bytes per element, to validate header offsets.
_SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}


def read_checkpoint(path: str | os.PathLike[str], fmt: str | None = None, verify: bool = True) -> StateDict:
    """Read a checkpoint file and return its unwrapped, prefix-stripped state dict.

    Args:
        path: a ``.safetensors``, ``.pth``, ``.pt``, ``.ckpt`` or ``.bin`` file.
        fmt: the extension to read it as (e.g. for a download's ``.part`` file); default: its own.
        verify: when a ``<file>.sha256`` record exists (written by FaceMend's downloader), check
            the file still has that digest.

    Returns:
        Flat ``{key: tensor}`` on the CPU, dtypes as stored.

    Raises:
        UnsupportedModelError: missing, empty, truncated, corrupt, code-running or non-tensor
            files; the message names the file and the problem. Nothing is executed or written.
    """
    p = Path(path)
    if not p.exists():
        raise UnsupportedModelError(f"{p}: no such file. Check the name, or put the model in the models folder.")
    if p.is_dir():
        raise UnsupportedModelError(f"{p}: is a directory, not a checkpoint file. Choose the .pth/.safetensors file inside it.")
    size = p.stat().st_size
    if size == 0:
        raise UnsupportedModelError(f"{p}: the file is empty (0 bytes). Download it again.")
    suffix = (fmt or p.suffix).lower()
    if suffix not in MODEL_EXTENSIONS:
        raise UnsupportedModelError(
            f"{p}: unsupported file type {suffix!r}; expected one of {', '.join(MODEL_EXTENSIONS)}."
        )
    if verify:
        verify_recorded_digest(p)
    if suffix == ".safetensors":
        raw: object = _read_safetensors(p, size)
    else:
        raw = _read_pickle(p)
    return unwrap_state_dict(raw, source=str(p))


def digest_path(path: Path) -> Path:
    """Where the downloader records a file's SHA-256: ``<file>.sha256`` beside it."""
    return path.with_name(path.name + ".sha256")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_recorded_digest(path: Path) -> None:
    """Check ``path`` against its ``.sha256`` record, if FaceMend downloaded it.

    Raises:
        UnsupportedModelError: the file changed since it was downloaded (corrupt or replaced).
    """
    record = digest_path(path)
    if not record.is_file():
        return
    expected = record.read_text().split()[0].strip().lower() if record.read_text().strip() else ""
    actual = sha256_of(path)
    if expected and actual != expected:
        raise UnsupportedModelError(
            f"{path}: SHA-256 {actual[:16]}... differs from the {expected[:16]}... recorded when it was downloaded; "
            f"the file is corrupt or was replaced. Delete it and {record.name} to download it again."
        )


def _read_safetensors(p: Path, size: int) -> StateDict:
    from safetensors.torch import load_file

    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UnsupportedModelError(f"{p}: truncated safetensors file (shorter than its 8-byte header length).")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100 * 1024 * 1024:
            raise UnsupportedModelError(
                f"{p}: corrupt safetensors header (it claims {n} header bytes in a {size}-byte file). "
                "The file is truncated or not a safetensors file; download it again."
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UnsupportedModelError(f"{p}: corrupt safetensors header ({e}).") from None
    if not isinstance(header, dict):
        raise UnsupportedModelError(f"{p}: corrupt safetensors header (not a JSON object).")
    data_len = size - 8 - n
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            count = 1
            for d in info["shape"]:
                count *= int(d)
            itemsize = _SAFETENSORS_ITEMSIZE.get(info["dtype"], 1)
        except (KeyError, TypeError, ValueError):
            raise UnsupportedModelError(f"{p}: corrupt safetensors header entry for {key!r}.") from None
        if not (0 <= start <= end <= data_len) or end - start != count * itemsize:
            raise UnsupportedModelError(
                f"{p}: safetensors header lies about tensor {key!r} (bytes {start}..{end} of {data_len}, "
                f"shape {info['shape']} {info['dtype']}). The file is truncated or corrupt; download it again."
            )
    try:
        return load_file(str(p), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError
        raise UnsupportedModelError(f"{p}: could not read safetensors file ({e}).") from None


def _read_pickle(p: Path) -> object:
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
            first = msg.strip().splitlines()[0][:300]
            raise UnsupportedModelError(
                f"{p}: refused to unpickle: the file asks to run or construct Python objects that are not "
                f"plain tensors ({first}). FaceMend only loads weights; convert the file to .safetensors "
                "or use the official release."
            ) from None
        raise UnsupportedModelError(f"{p}: not a readable PyTorch checkpoint ({msg.splitlines()[0][:300]}).") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types (RuntimeError, EOFError, IndexError, BadZipFile...) for damaged files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UnsupportedModelError(
            f"{p}: the file is truncated or corrupt and could not be read ({first}). Download it again."
        ) from None


def unwrap_state_dict(raw: object, source: str = "<state dict>") -> StateDict:
    """Unwrap training containers and strip shared prefixes.

    Args:
        raw: whatever a checkpoint holds: a flat state dict, or a dict wrapping one under
            ``params_ema`` (preferred), ``params``, ``state_dict``, ``model``, ``net`` or ``g_ema``.
        source: file name used in error messages.

    Returns:
        Flat ``{key: tensor}``. Non-tensor entries (Lightning bookkeeping) are dropped only when
        the state dict sits in a container; a flat dict must hold tensors only.
    """
    obj = raw
    for _ in range(3):  # containers nest at most a couple of levels (e.g. {"model": {"params_ema": ...}})
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise UnsupportedModelError(f"{source}: holds a {type(raw).__name__}, not a state dict of tensors.")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise UnsupportedModelError(f"{source}: contains no tensors; it is not a model checkpoint.")
    return strip_partial_prefixes(strip_common_prefixes(sd))


def strip_partial_prefixes(sd: StateDict) -> StateDict:
    """Strip :data:`PARTIAL_STRIP_PREFIXES` from the keys that carry them (other keys kept as they are).

    Nothing is renamed when a stripped name would collide with an existing key.
    """
    for prefix in PARTIAL_STRIP_PREFIXES:
        if not any(k.startswith(prefix) for k in sd):
            continue
        renamed = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
        if len(renamed) == len(sd):
            sd = renamed
    return sd


def strip_common_prefixes(sd: StateDict) -> StateDict:
    """Remove ``module.``/``netG.``/``vqvae.`` when every key carries the same one (repeatedly)."""
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd
