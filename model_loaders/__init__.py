"""Checkpoint file -> ready model: safe reading, unwrapping, fingerprint detection, downloads.

Public API (stable): :func:`load_model`, :class:`RestorationModel`, :class:`UnsupportedModelError`.
"""

from .catalog import CATALOG, KnownModel, find_known, known_models
from .download import DownloadError, download_model, ensure_known_model
from .errors import UnsupportedModelError
from .model import RestorationModel, build_from_state_dict, default_registry, load_model
from .reading import SUPPORTED_EXTENSIONS, read_checkpoint, unwrap_state_dict
from .registry import ArchSpec, Registry

__all__ = [
    "CATALOG", "DownloadError", "KnownModel", "download_model", "ensure_known_model", "find_known", "known_models",
    "SUPPORTED_EXTENSIONS", "ArchSpec", "Registry", "RestorationModel", "UnsupportedModelError",
    "build_from_state_dict", "default_registry", "load_model", "read_checkpoint", "unwrap_state_dict",
]
