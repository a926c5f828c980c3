"""ComfyUI model management for FaceMend models (ModelPatcher + load_models_gpu).

A :class:`ManagedModel` is what loader nodes output. Before inference a node calls
:meth:`ManagedModel.load`, which inside ComfyUI goes through ``load_models_gpu`` so restorers and
SD models evict each other properly and ``--lowvram``/``--cpu`` are honoured. Outside ComfyUI it
simply moves the module to :func:`~facemend.runtime.device.torch_device`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .comfy import comfy_module
from .device import offload_device, torch_device


def module_bytes(module: nn.Module) -> int:
    """Size of parameters and buffers in bytes."""
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


class ManagedModel:
    """A model (anything with an ``nn.Module`` at ``.module``) under ComfyUI's memory manager.

    Attributes:
        model: the wrapped object (e.g. a ``RestorationModel`` or a face detector wrapper).
        patcher: ComfyUI's ``ModelPatcher`` inside ComfyUI, else ``None``.
        precision: the user's dtype policy for this model (``auto``/``fp32``/``fp16``/``bf16``),
            resolved per run by :func:`~facemend.runtime.precision.resolve_dtype`.
    """

    def __init__(
        self,
        model: Any,
        module: nn.Module | None = None,
        device: torch.device | None = None,
        precision: str = "auto",
    ) -> None:
        self.model = model
        self.precision = precision
        self.module: nn.Module = module if module is not None else model.module
        self._device = device
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

    def load(self, memory_required: int = 0) -> torch.device:
        """Put the weights on the compute device, freeing other models if needed.

        Args:
            memory_required: bytes of activations the coming inference needs.

        Returns:
            The device the module now lives on.
        """
        mm = comfy_module("comfy.model_management")
        if mm is not None and self.patcher is not None:
            mm.load_models_gpu([self.patcher], memory_required=memory_required)
            return self.patcher.load_device
        device = self.load_device
        self.module.to(device)
        return device

    def __repr__(self) -> str:
        return f"ManagedModel({self.model!r})"
