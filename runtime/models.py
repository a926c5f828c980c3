"""ComfyUI model management for FaceMend models (ModelPatcher + load_models_gpu), and the weights'
dtype and layout on the compute device.

A :class:`ManagedModel` is what loader nodes output. Before inference a node calls
:meth:`ManagedModel.load`, which inside ComfyUI goes through ``load_models_gpu`` so restorers and
SD models evict each other properly and ``--lowvram``/``--cpu`` are honoured. Outside ComfyUI it
simply moves the module to :func:`~facemend.runtime.device.torch_device`.

Reduced precision (the user asked for fp16/bf16, or ``auto`` chose it): the weights are stored in
that dtype on the compute device (half the VRAM, no per-op casts under autocast) and 4-D weights
go channels-last; the fp32 values stay on the offload side (the CPU) as the master copy. Whenever
the module is then called without autocast -- the fp32 recomputation of a chunk that came out
NaN/Inf (:func:`~facemend.runtime.precision.run_with_fallback`) -- a forward pre-hook first
reloads the fp32 master, so the retry really runs in fp32. The rest of that run keeps the fp32
weights (under autocast, as before this storage existed: an overflow tends to recur); the next
:meth:`ManagedModel.load` stores them in the reduced dtype again. Modules whose code picks codebook entries in the weights' dtype (a ``precise_codes``
attribute somewhere) keep fp32 storage unless the root module names, in ``fp32_submodules``, the
submodules that must stay fp32.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .comfy import comfy_module
from .device import offload_device, torch_device
from .precision import REDUCED_DTYPES, active_compute_dtype, resolve_dtype

log = logging.getLogger("facemend")


def module_bytes(module: nn.Module) -> int:
    """Size of parameters and buffers in bytes."""
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype most of ``module``'s floating-point parameter bytes are stored in (fp32 if none)."""
    count: dict[torch.dtype, int] = {}
    for p in module.parameters():
        if p.is_floating_point():
            count[p.dtype] = count.get(p.dtype, 0) + p.numel()
    return max(count, key=count.__getitem__) if count else torch.float32


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store every 4-D floating parameter and buffer of ``module`` channels-last, in place.

    ``nn.Module.to(memory_format=...)`` cannot be used for networks with 5-D parameters (it raises);
    here a 5-D ``(1, C_out, C_in, k, k)`` tensor (StyleGAN2's modulated conv weight, a 4-D conv
    weight with a leading batch axis) is laid out so that dropping that axis gives a channels-last
    4-D view; other tensors are left alone. Values, shapes and state-dict keys are unchanged.

    Returns:
        ``module``.
    """
    cl = torch.channels_last
    for t in _tensors(module):
        if not t.is_floating_point():
            continue
        if t.dim() == 4 and not t.is_contiguous(memory_format=cl):
            t.data = t.data.contiguous(memory_format=cl)
        elif t.dim() == 5 and t.shape[0] == 1 and not t.data[0].is_contiguous(memory_format=cl):
            t.data = t.data[0].contiguous(memory_format=cl).unsqueeze(0)
    return module


def reduced_storage_allowed(module: nn.Module) -> bool:
    """Whether ``module``'s weights may be stored in fp16/bf16 (see the module docstring)."""
    if getattr(module, "fp32_submodules", None) is not None:
        return True
    return not any(getattr(m, "precise_codes", False) for m in module.modules())


def _tensors(module: nn.Module) -> Iterable[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def _named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        out.setdefault(name, p)
    for name, b in module.named_buffers(remove_duplicate=False):
        out.setdefault(name, b)
    return out


class WeightStore:
    """The dtype and layout of one module's weights, with the fp32 master kept on the offload device.

    Attributes:
        module: the network; its tensors are re-pointed (``.data``) in place, never copied into.
        dtype: the dtype its (non-fp32-pinned) floating tensors are stored in now.
        master: ``{name: fp32 tensor on the offload device}`` while ``dtype`` is reduced, else ``None``.
    """

    def __init__(self, module: nn.Module, master_device: torch.device | None = None) -> None:
        self.module = module
        self.master_device = master_device or offload_device()
        self.dtype: torch.dtype = module_dtype(module)
        self.master: dict[str, torch.Tensor] | None = None
        self.channels_last = False
        self.reloads = 0  # fp32 reloads caused by fp32 calls (the NaN/Inf retry); read by tests and gpu_check

    @classmethod
    def of(cls, module: nn.Module) -> WeightStore:
        """The one store of ``module`` (created, with its forward pre-hook, on first use), so two
        :class:`ManagedModel` wrappers of the same network never disagree about its weights."""
        store = module.__dict__.get("_facemend_weight_store")
        if store is None:
            store = cls(module)
            module.__dict__["_facemend_weight_store"] = store
            module.register_forward_pre_hook(store.pre_forward)
        return store

    def _pinned_fp32(self) -> set[str]:
        names = getattr(self.module, "fp32_submodules", None) or ()
        return {f"{n}." for n in names}

    def set_dtype(self, dtype: torch.dtype, channels_last: bool = False) -> bool:
        """Store the weights in ``dtype`` (fp32 restores the master, in its original layout);
        ``channels_last`` lays 4-D tensors out channels-last (reduced dtypes only).

        Returns:
            True when anything changed.
        """
        changed = False
        if dtype != self.dtype:
            self._restore_fp32()
            if dtype != torch.float32:
                self._cast(dtype)
            changed = True
        if dtype != torch.float32 and channels_last and not self.channels_last:
            to_channels_last(self.module)
            self.channels_last = changed = True
        return changed

    def _cast(self, dtype: torch.dtype) -> None:
        if self.master is None:
            if self.dtype != torch.float32:
                raise RuntimeError(f"FaceMend: cannot keep an fp32 master of weights stored in {self.dtype}")
            # on the CPU this shares storage with the module (no copy); a GPU module is copied back
            self.master = {n: t.detach().to(self.master_device) for n, t in _named_tensors(self.module).items()}
        pinned = self._pinned_fp32()
        for name, t in _named_tensors(self.module).items():
            if t.is_floating_point() and not any(name.startswith(p) for p in pinned):
                t.data = t.data.to(dtype)
        self.dtype = dtype

    def _restore_fp32(self) -> None:
        if self.master is None:
            return
        for name, t in _named_tensors(self.module).items():
            src = self.master[name]
            t.data = src.to(t.device, non_blocking=True) if src.device != t.device else src
        self.master = None
        self.dtype = torch.float32
        self.channels_last = False

    def pre_forward(self, module: nn.Module, args: Any) -> None:
        """Forward pre-hook: make the stored dtype fit the call's compute dtype (see the module docstring)."""
        if self.dtype == torch.float32:
            return
        device = next((t.device for t in _tensors(module)), torch.device("cpu"))
        want = active_compute_dtype(device)
        if want == torch.float32:
            log.warning("FaceMend: fp32 call of a model stored in %s; reloading its fp32 weights", str(self.dtype).replace("torch.", ""))
            self.reloads += 1
            self._restore_fp32()
        elif want != self.dtype:
            self._cast_between(want)

    def _cast_between(self, dtype: torch.dtype) -> None:
        self.set_dtype(dtype, channels_last=self.channels_last)


class ManagedModel:
    """A model (anything with an ``nn.Module`` at ``.module``) under ComfyUI's memory manager.

    Attributes:
        model: the wrapped object (e.g. a ``RestorationModel`` or a face detector wrapper).
        patcher: ComfyUI's ``ModelPatcher`` inside ComfyUI, else ``None``.
        precision: the user's dtype policy for this model (``auto``/``fp32``/``fp16``/``bf16``),
            resolved per run by :func:`~facemend.runtime.precision.resolve_dtype`.
        compile: run the module through ``torch.compile`` (opt-in; see :mod:`facemend.runtime.compile`).
        store_reduced: store weights in the compute dtype when it is fp16/bf16 (default True).
        channels_last: ``None`` = channels-last weights whenever they are stored in fp16/bf16;
            False keeps the checkpoint's layout (fp32 storage always keeps it).
    """

    def __init__(
        self,
        model: Any,
        module: nn.Module | None = None,
        device: torch.device | None = None,
        precision: str = "auto",
        *,
        compile: bool = False,
        compile_backend: Any = "inductor",
        store_reduced: bool = True,
        channels_last: bool | None = None,
    ) -> None:
        self.model = model
        self.precision = precision
        self.module: nn.Module = module if module is not None else model.module
        self._device = device
        self.compile = compile
        self.store_reduced = store_reduced
        self.channels_last = channels_last
        self.weights = WeightStore.of(self.module)
        if compile:
            from .compile import enable_compile

            enable_compile(self.module, backend=compile_backend)
        self.patcher: Any = None
        mp = comfy_module("comfy.model_patcher")
        if mp is not None:
            load = device or torch_device()
            self.patcher = mp.ModelPatcher(self.module, load_device=load, offload_device=offload_device(), size=module_bytes(self.module))

    @property
    def load_device(self) -> torch.device:
        if self.patcher is not None:
            return self.patcher.load_device
        return self._device or torch_device()

    def storage_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype the weights are stored in for compute dtype ``dtype``."""
        if dtype in REDUCED_DTYPES and self.store_reduced and reduced_storage_allowed(self.module):
            return dtype
        return torch.float32

    def prepare(self, dtype: torch.dtype) -> None:
        """Cast/lay out the weights for compute dtype ``dtype`` where they are now (no device move)."""
        store = self.storage_dtype(dtype)
        cl = dtype in REDUCED_DTYPES and self.channels_last is not False
        if store == torch.float32 and self.weights.dtype == torch.float32:
            # fp32 storage (fp32 policy, or a precise-codes network) keeps the checkpoint's layout:
            # channels-last fp32 weights would change which CPU kernels its fp32 parts run
            return
        if self.weights.set_dtype(store, channels_last=cl) and self.patcher is not None:
            self.patcher.size = module_bytes(self.module)  # what ComfyUI will count on the GPU

    def load(self, memory_required: int = 0, dtype: torch.dtype | None = None) -> torch.device:
        """Put the weights on the compute device in the compute dtype, freeing other models if needed.

        Args:
            memory_required: bytes of activations the coming inference needs.
            dtype: the compute dtype; default :func:`~facemend.runtime.precision.resolve_dtype` of
                :attr:`precision` for the load device (what ``restore_batch`` will then use).

        Returns:
            The device the module now lives on.
        """
        device = self.load_device
        self.prepare(dtype if dtype is not None else resolve_dtype(self.precision, device))
        mm = comfy_module("comfy.model_management")
        if mm is not None and self.patcher is not None:
            mm.load_models_gpu([self.patcher], memory_required=memory_required)
            return self.patcher.load_device
        if any(t.device != device for t in _tensors(self.module)):
            self.module.to(device, non_blocking=True)
        return device

    def unload(self) -> None:
        """Weights back to the offload device in fp32 (ComfyUI: unpatch through its model management)."""
        mm = comfy_module("comfy.model_management")
        if mm is not None and self.patcher is not None and hasattr(mm, "unload_model_clones"):
            mm.unload_model_clones(self.patcher)
        self.module.to(offload_device())  # first: the fp32 master is already there, nothing is uploaded
        self.weights.set_dtype(torch.float32)
        if self.patcher is not None:
            self.patcher.size = module_bytes(self.module)

    def __repr__(self) -> str:
        return f"ManagedModel({self.model!r})"
