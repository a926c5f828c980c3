"""What a checkpoint file is, without loading its weights: architecture, licence, parameter count.

Used by the frontend's model-info route (the loader node shows the architecture as soon as a file
is chosen), so it must be cheap:

- ``.safetensors``: only the JSON header is read; tensors become ``meta`` tensors (shape and
  dtype, no data), which is all the fingerprints and hyper-parameter readers look at.
- zip-format ``.pth``/``.pt``/``.ckpt``/``.bin`` (``torch.save`` since PyTorch 1.6): loaded with
  ``mmap=True`` and ``weights_only=True``, so tensor data stays on disk until touched.
- legacy (pre-zip) pickles, or anything the cheap path cannot handle: the normal
  :func:`~facemend.model_loaders.reading.read_checkpoint`, which also produces the user-facing
  error message for unreadable files.

The network is then built on the ``meta`` device to count its parameters exactly, without
allocating memory.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..archs.families import control_widgets, family
from ..archs.spec import ArchSpec, StateDict
from .errors import UnsupportedModelError
from .model import prepare_and_read
from .reading import read_checkpoint, unwrap_state_dict
from .registry import Registry

#: Safetensors dtype names -> torch dtypes (for meta tensors; the bytes are never read).
_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}

@dataclass(frozen=True)
class CheckpointInfo:
    """What FaceMend knows about a checkpoint file (JSON-friendly via :meth:`as_dict`).

    Attributes:
        arch: architecture id (e.g. ``"codeformer"``).
        display_name: human name of the architecture.
        family: ``"gfpgan"``, ``"codebook"`` or ``"refusion"``.
        node: id of the FaceMend node that takes this model.
        licence: licence text of the architecture's official weights.
        parameters: number of network parameters (exact when the network could be built on the
            ``meta`` device, else the number of floating-point values in the state dict).
        controls: the ``forward`` controls this checkpoint honours (e.g. ``("fidelity",)``), less
            those it pins (``fixed``).
        input_size: square input size the network expects, or ``None`` for any size.
        hparams: hyper-parameters read from the tensor shapes (JSON-friendly values only).
        node_name: display name of the node that takes this model.
        fixed: controls the checkpoint pins to its official value (``{"fidelity": 0.0}``).
        widgets: the widgets of ``node`` that steer this model (what the UI lists as controls).
        control_widgets: node id -> {control widget: applies}, for every node that takes a model
            (the frontend greys out the ``False`` ones and flags a node of another family).
        restore_faces: whether 'FaceMend Restore Faces' takes this model.
    """

    arch: str
    display_name: str
    family: str
    node: str
    licence: str
    parameters: int
    controls: tuple[str, ...]
    input_size: int | None
    hparams: dict[str, Any] = field(default_factory=dict)
    node_name: str = ""
    fixed: dict[str, float] = field(default_factory=dict)
    widgets: tuple[str, ...] = ()
    control_widgets: dict[str, dict[str, bool]] = field(default_factory=dict)
    restore_faces: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON answers."""
        return {
            "arch": self.arch,
            "display_name": self.display_name,
            "family": self.family,
            "node": self.node,
            "node_name": self.node_name,
            "licence": self.licence,
            "parameters": self.parameters,
            "controls": list(self.controls),
            "fixed": dict(self.fixed),
            "widgets": list(self.widgets),
            "control_widgets": {k: dict(v) for k, v in self.control_widgets.items()},
            "restore_faces": self.restore_faces,
            "input_size": self.input_size,
            "hparams": dict(self.hparams),
        }


def inspect_checkpoint(path: str | os.PathLike[str], registry: Registry | None = None) -> CheckpointInfo:
    """Describe the checkpoint at ``path`` without loading its weights into memory.

    Args:
        path: a checkpoint file (``.safetensors``/``.pth``/``.pt``/``.ckpt``/``.bin``).
        registry: architectures to recognise; defaults to every built-in one.

    Returns:
        A :class:`CheckpointInfo`.

    Raises:
        UnsupportedModelError: unreadable or corrupt file, unknown or ambiguous architecture
            (same messages as :func:`~facemend.model_loaders.load_model`).
    """
    if registry is None:
        from .model import default_registry  # looked up at call time (tests swap it)

        registry = default_registry()
    p = Path(path)
    sd = _cheap_state_dict(p)
    if sd is not None:
        try:
            return _describe(registry, sd, str(p))
        except UnsupportedModelError:
            raise
        except Exception:  # noqa: BLE001 - a fingerprint that needs tensor data: use the full read
            pass
    return _describe(registry, read_checkpoint(p), str(p))


def _describe(registry: Registry, sd: StateDict, source: str) -> CheckpointInfo:
    spec = registry.detect(sd, source=source)
    sd, hparams = prepare_and_read(spec, sd, source)
    return describe_spec(spec, hparams, _parameter_count(spec, hparams, sd))


def describe_spec(spec: ArchSpec, hparams: dict[str, Any], parameters: int = 0) -> CheckpointInfo:
    """What the UI says about a checkpoint of ``spec`` with these hyper-parameters: its node, the
    widgets that steer it, the controls it pins. Also used before a catalog file is downloaded,
    with the hyper-parameters the catalog records for it."""
    row = family(spec.family)
    fixed = spec.fixed_for(hparams)
    controls = tuple(c for c in spec.controls if c not in fixed)
    table = control_widgets(spec.family, set(controls))
    return CheckpointInfo(
        arch=spec.id,
        display_name=spec.display_name,
        family=spec.family,
        node=row.node_id,
        licence=spec.licence,
        parameters=parameters,
        controls=controls,
        input_size=spec.size_for(hparams) if not callable(spec.input_size) or hparams else None,
        hparams={k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str, type(None), list, tuple))},
        node_name=row.node_name,
        fixed=fixed,
        widgets=tuple(w for w, applies in table[row.node_id].items() if applies),
        control_widgets=table,
        restore_faces=row.restore_faces_widget is not None,
    )


def _parameter_count(spec: ArchSpec, hparams: dict[str, Any], sd: StateDict) -> int:
    """Exact parameter count from a network built on the meta device (no memory), else a
    count of the state dict's floating-point values (which also includes buffers)."""
    try:
        with torch.device("meta"):
            module = spec.build(**hparams)
        return int(sum(p.numel() for p in module.parameters()))
    except Exception:  # noqa: BLE001 - a builder that cannot run on meta: fall back to the file
        return int(sum(t.numel() for t in sd.values() if t.is_floating_point()))


def _cheap_state_dict(p: Path) -> StateDict | None:
    """The state dict with its data left on disk, or ``None`` when only a full read will do
    (legacy pickles, odd files: :func:`read_checkpoint` then reads them or explains why not)."""
    try:
        if not p.is_file() or p.stat().st_size == 0:
            return None
        suffix = p.suffix.lower()
        if suffix == ".safetensors":
            raw: object = _safetensors_meta(p)
        elif zipfile.is_zipfile(p):
            raw = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
        else:
            return None
        if raw is None:
            return None
        return unwrap_state_dict(raw, source=str(p))
    except Exception:  # noqa: BLE001 - the full read reports the problem properly
        return None


def _safetensors_meta(p: Path) -> dict[str, torch.Tensor] | None:
    """Safetensors header -> ``{key: meta tensor}``; ``None`` when the header is not plain."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100 * 1024 * 1024:
            return None
        header = json.loads(f.read(n))
    if not isinstance(header, dict):
        return None
    data_len = size - 8 - n
    out: dict[str, torch.Tensor] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
        if dtype is None:
            return None
        shape = [int(d) for d in entry["shape"]]
        start, end = (int(v) for v in entry["data_offsets"])
        nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        if not (0 <= start <= end <= data_len) or end - start != nbytes:
            return None  # truncated or lying header: the full read explains it
        out[key] = torch.empty(shape, dtype=dtype, device="meta")
    return out
