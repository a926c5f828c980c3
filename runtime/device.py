"""Which torch device runs models, and where they rest when idle."""

from __future__ import annotations

import torch

from .comfy import comfy_module


def torch_device() -> torch.device:
    """The compute device: ComfyUI's choice inside ComfyUI (honours ``--cpu``), else CUDA/MPS/CPU."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def offload_device() -> torch.device:
    """Where idle model weights live: ComfyUI's offload device, else the CPU."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return mm.unet_offload_device()
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs (IMAGE/MASK tensors) are kept between nodes: ComfyUI's, else the CPU."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return mm.intermediate_device()
    return torch.device("cpu")
