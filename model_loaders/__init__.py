"""Checkpoint file -> ready model: safe reading, unwrapping, the registry, the catalog, downloads;
and running a loaded restorer over face crops (:func:`restore_batch`, :func:`plan_controls`).

Public API (stable): :func:`load_model`, :class:`RestorationModel`, :class:`UnsupportedModelError`.
"""

from ..archs.spec import ArchSpec
from .catalog import CATALOG, KnownModel, find_known, known_models
from .controls import RESTORE, ControlPlan, RestoreSettings, plan_controls, restore_faces_plan
from .download import DownloadError, download_model, ensure_known_model
from .errors import UnsupportedModelError
from .inference import restore_batch
from .model import RestorationModel, build_from_state_dict, default_registry, load_model
from .reading import read_checkpoint, unwrap_state_dict
from .registry import Registry

__all__ = [
    "RESTORE", "ControlPlan", "RestoreSettings", "plan_controls", "restore_batch", "restore_faces_plan",
    "CATALOG", "DownloadError", "KnownModel", "download_model", "ensure_known_model", "find_known", "known_models",
    "ArchSpec", "Registry", "RestorationModel", "UnsupportedModelError",
    "build_from_state_dict", "default_registry", "load_model", "read_checkpoint", "unwrap_state_dict",
]
