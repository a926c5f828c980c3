"""Checkpoint file -> flat state dict (``str -> torch.Tensor``), safely.

Pickled files are read with ``torch.load(weights_only=True, map_location="cpu")``: nothing in a
file can run code, and files saved on CUDA devices load on any machine. Safetensors headers are
checked against the file size before any tensor is read, so a lying header is refused instead of
read past the end of the file.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickletools
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import torch

from ..archs.spec import StateDict
from ..runtime.folders import MODEL_EXTENSIONS
from .errors import UnsupportedModelError, quote_library_text, shorten, strip_ansi

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


def recorded_digest(path: Path) -> str | None:
    """The SHA-256 recorded in ``<file>.sha256`` when FaceMend downloaded ``path``, else ``None``."""
    record = digest_path(path)
    if not record.is_file():
        return None
    words = record.read_text().split()
    return words[0].strip().lower() if words else None


def recorded_digest_mismatch(path: Path, actual: str | None = None) -> str | None:
    """The message for a file whose SHA-256 differs from its ``.sha256`` record, or ``None`` when
    it matches or has no record. ``actual``: the file's digest when already computed."""
    expected = recorded_digest(path)
    if not expected:
        return None
    actual = actual or sha256_of(path)
    if actual == expected:
        return None
    return (
        f"{path}: SHA-256 {actual[:16]}... differs from the {expected[:16]}... recorded when it was downloaded; "
        f"the file is corrupt or was replaced. Delete it and {digest_path(path).name} to download it again."
    )


def official_digest_mismatch(path: Path, official: str, actual: str | None = None) -> str | None:
    """The message for a file under an official name whose SHA-256 is not the official file's
    (``official``, from the catalog), or ``None`` when it is."""
    actual = actual or sha256_of(path)
    if actual == official.lower():
        return None
    return (
        f"{path}: SHA-256 {actual[:16]}... differs from the official {path.name}'s {official[:16]}...; "
        "it is not the official release file (a fine-tune, a conversion or a damaged download). "
        "If it should be the official file, delete it to download it again."
    )


def verify_recorded_digest(path: Path) -> None:
    """Check ``path`` against its ``.sha256`` record, if FaceMend downloaded it.

    Raises:
        UnsupportedModelError: the file changed since it was downloaded (corrupt or replaced).
    """
    problem = recorded_digest_mismatch(path)
    if problem:
        raise UnsupportedModelError(problem)


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
            raise UnsupportedModelError(f"{p}: corrupt safetensors header ({quote_library_text(str(e), 120)}); download it again.") from None
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
        raise UnsupportedModelError(damaged_message(p, f"safetensors could not read it: {library_reason(e)}")) from None


def _read_pickle(p: Path) -> object:
    """``torch.load(weights_only=True)``; a failure is explained from the file's own structure.

    Whether a refused file really asks for Python objects, or is simply damaged, is decided by
    reading its pickle opcodes (:func:`pickle_globals`), never by parsing torch's message (torch
    reports random bytes as an "unsupported operand" of its weights-only unpickler too).
    """
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types (UnpicklingError, RuntimeError, EOFError, BadZipFile...)
        error = e
    try:
        refs = pickle_globals(p)
    except DamagedFileError as damaged:
        raise UnsupportedModelError(damaged_message(p, str(damaged))) from None
    blocked = [r for r in refs if r not in allowed_globals()]
    if blocked:
        shown = ", ".join(dict.fromkeys(blocked))
        raise UnsupportedModelError(
            f"{p}: refused to unpickle: the file asks to run or construct Python objects that are not plain "
            f"tensors ({shorten(shown, 160)}). FaceMend only loads weights and never runs code from a model file; "
            "use the official release file, or a .safetensors conversion of it from a source you trust."
        )
    raise UnsupportedModelError(damaged_message(p, f"PyTorch could not read it: {library_reason(error)}")) from None


class DamagedFileError(ValueError):
    """A file's bytes are not a well-formed PyTorch checkpoint (the message says what is wrong)."""


def damaged_message(path: Path | str, reason: str) -> str:
    """The message for a file that is damaged (truncated, corrupt) or not a checkpoint at all."""
    return (
        f"{path} is damaged or not a checkpoint: download it again (delete this file first), or choose "
        f"another file. Details: {reason.rstrip('. ')}."
    )


def library_reason(error: BaseException) -> str:
    """A library exception as quotable text: colour codes stripped, torch's advice to retry with
    ``weights_only=False`` (which would let the file run code) left out, shortened at a word."""
    text = strip_ansi(str(error)).strip()
    if "WeightsUnpickler error:" in text:  # torch's weights-only refusal: keep only what it found
        text = text.split("WeightsUnpickler error:", 1)[1]
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    kept = [s for s in sentences if "weights_only" not in s and "add_safe_globals" not in s and "safe_globals(" not in s]
    return quote_library_text(" ".join(kept), 200) or type(error).__name__


_STRING_OPS = frozenset({
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
#: Python 2 module names that protocol 0-2 pickles use, as Python 3 (and torch's allowlist) spells them.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
#: torch's legacy (pre-zip) format is five pickles (magic number, protocol, system info, the
#: object, storage keys) followed by raw tensor bytes.
_LEGACY_PICKLES = 5
#: How much of a legacy file is scanned for its pickles (they hold names and shapes, not tensor data).
_PICKLE_SCAN_LIMIT = 64 << 20


def pickle_globals(path: Path) -> list[str]:
    """Every Python object a pickled checkpoint refers to (``module.qualname``), without unpickling.

    Zip checkpoints (``torch.save`` since 1.6): the archive's ``data.pkl``. Legacy checkpoints and
    plain pickles: each pickle in the file, up to the raw tensor data. Nothing is executed.

    Raises:
        DamagedFileError: the bytes are not a complete pickle / zip archive (truncated, random
            bytes, an HTML error page...), with a description of what is wrong.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                pkl = next((n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")), None)
                if pkl is None:
                    raise DamagedFileError("it is a zip archive without the data.pkl every PyTorch checkpoint holds")
                data = z.read(pkl)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, RuntimeError) as e:
            raise DamagedFileError(
                "it starts like a PyTorch zip archive but the archive is incomplete or corrupt, which is what a "
                f"cut-off download looks like ({quote_library_text(str(e), 120)})"
            ) from None
        return _scan_pickle(io.BytesIO(data), "its data.pkl")
    with open(path, "rb") as f:  # the pickles precede the tensor bytes; they are small
        stream = io.BytesIO(f.read(_PICKLE_SCAN_LIMIT))
    refs: list[str] = []
    for _ in range(_LEGACY_PICKLES):
        if stream.tell() >= len(stream.getbuffer()):
            break  # a plain pickle file ends after its one pickle
        refs += _scan_pickle(stream, "the file")
    return refs


def _scan_pickle(stream: io.BytesIO, where: str) -> list[str]:
    """The globals one pickle (read from ``stream`` up to its STOP) refers to."""
    refs: list[str] = []
    recent: list[object] = []  # values pushed by string / memo-get opcodes, for STACK_GLOBAL
    memo: dict[int, object] = {}
    start = stream.tell()
    try:
        for op, arg, pos in pickletools.genops(stream):
            name = op.name
            if name in _STRING_OPS:
                recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
            elif name in _GET_OPS:
                recent.append(memo.get(int(arg)))
            elif name in _PUT_OPS:
                memo[int(arg)] = recent[-1] if recent else None
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("GLOBAL", "INST"):
                module, _, qual = str(arg).partition(" ")
                refs.append(f"{_PY2_MODULES.get(module, module)}.{qual}")
                recent.append(None)
            elif name == "STACK_GLOBAL":
                module, qual = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
                refs.append(f"{module}.{qual}" if isinstance(module, str) and isinstance(qual, str) else "<unknown global>")
                recent.append(None)
            elif name in ("EXT1", "EXT2", "EXT4"):
                refs.append(f"<copyreg extension {arg}>")
                recent.append(None)
            elif name != "PROTO" and name != "FRAME":
                recent.append(None)
    except (ValueError, EOFError, struct.error, UnicodeDecodeError, MemoryError, OverflowError) as e:
        offset = stream.tell() - start
        detail = quote_library_text(str(e), 120)
        if "exhausted" in detail or "expected" in detail or isinstance(e, EOFError):
            raise DamagedFileError(
                f"{where} ends in the middle of its pickle (at byte {offset}), which is what a cut-off download "
                f"looks like ({detail})"
            ) from None
        raise DamagedFileError(
            f"{where} is not a pickle: its bytes stop making sense at byte {offset} ({detail})"
        ) from None
    return refs


@functools.lru_cache(maxsize=1)
def _torch_allowed() -> frozenset[str]:
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return frozenset(_get_allowed_globals())
    except Exception:  # noqa: BLE001 - a private torch API: fall back to what plain checkpoints use
        return frozenset({
            "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
            *(f"torch.{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")),
        })


def allowed_globals() -> frozenset[str]:
    """``module.qualname`` of every object ``torch.load(weights_only=True)`` accepts (its default
    allowlist plus what was added with ``torch.serialization.add_safe_globals``)."""
    extra: set[str] = set()
    try:
        for g in torch.serialization.get_safe_globals():
            obj, name = g if isinstance(g, tuple) else (g, None)
            extra.add(name or f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}")
    except Exception:  # noqa: BLE001 - older torch
        pass
    return _torch_allowed() | extra


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
