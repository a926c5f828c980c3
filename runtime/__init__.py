"""Services, with or without ComfyUI: device, dtype policy, ModelPatcher + load_models_gpu, progress,
interruption, model folders, memory and batching.

Inside ComfyUI each function uses ComfyUI's own device, model management, progress bar,
interruption and model folders (imported lazily, see :mod:`.comfy`); outside it (the CLI, tests)
plain PyTorch, tqdm and a configurable models directory. This room imports no other room of the
pack.
"""

from .batching import run_in_chunks
from .comfy import in_comfyui
from .device import intermediate_device, offload_device, torch_device
from .folders import FOLDERS, download_dir, find_model, folder_paths_for, list_models, register_model_folders
from .interrupt import Interrupted, check_interrupted, request_interrupt
from .memory import chunk_size_for, free_memory_bytes, is_oom
from .models import ManagedModel
from .precision import PRECISIONS, compute_precision, cpu_supports_bf16, resolve_dtype, run_with_fallback
from .progress import Progress

__all__ = [
    "FOLDERS", "PRECISIONS", "Interrupted", "ManagedModel", "Progress", "check_interrupted", "chunk_size_for",
    "compute_precision", "cpu_supports_bf16", "download_dir", "find_model", "folder_paths_for",
    "free_memory_bytes", "in_comfyui", "intermediate_device", "is_oom", "list_models", "offload_device",
    "register_model_folders", "request_interrupt", "resolve_dtype", "run_in_chunks", "run_with_fallback",
    "torch_device",
    "REDUCED_DTYPES", "WeightStore", "active_compute_dtype", "disable_compile", "enable_compile", "module_dtype",
    "to_channels_last",
]
from .compile import disable_compile, enable_compile  # noqa: E402
from .models import WeightStore, module_dtype, to_channels_last  # noqa: E402
from .precision import REDUCED_DTYPES, active_compute_dtype  # noqa: E402
