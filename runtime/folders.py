"""Model folders: registered with ComfyUI's ``folder_paths`` inside ComfyUI, plain directories outside.

Folder kinds (stable names, users' files live there):

- ``facerestore_models``: restorers (also ``models/GFPGAN`` and ``models/Codeformer`` from A1111);
- ``facedetection``: facexlib detectors and parsers, under facexlib's file names;
- ``refusion``: diffusion refiners.

Outside ComfyUI the base directory is ``$FACEMEND_MODELS_DIR`` if set, else
``~/.cache/facemend/models``; each kind is a sub-folder of it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .comfy import comfy_module

MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")

#: kind -> sub-folders of the models directory, the first being where downloads go.
FOLDERS: dict[str, tuple[str, ...]] = {
    "facerestore_models": ("facerestore_models", "GFPGAN", "Codeformer"),
    "facedetection": ("facedetection",),
    "refusion": ("refusion",),
}


def standalone_models_dir() -> Path:
    """Base models directory outside ComfyUI (``$FACEMEND_MODELS_DIR`` or ``~/.cache/facemend/models``)."""
    env = os.environ.get("FACEMEND_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "facemend" / "models"


def register_model_folders() -> None:
    """Merge FaceMend's folder kinds into ComfyUI's ``folder_paths`` (inside ComfyUI only).

    Paths that ComfyUI, another pack or ``extra_model_paths.yaml`` registered are kept, in their
    order; ours are appended when missing, and our file extensions are added.
    """
    fp = comfy_module("folder_paths")
    if fp is None:
        return
    for kind, subdirs in FOLDERS.items():
        for sub in subdirs:
            fp.add_model_folder_path(kind, os.path.join(fp.models_dir, sub))
        paths, exts = fp.folder_names_and_paths[kind]
        if isinstance(exts, set) and exts:
            exts.update(MODEL_EXTENSIONS)
        elif not exts:
            fp.folder_names_and_paths[kind] = (paths, set(MODEL_EXTENSIONS))


def folder_paths_for(kind: str) -> list[Path]:
    """All directories searched for ``kind``, in priority order."""
    if kind not in FOLDERS:
        raise KeyError(f"unknown model folder kind {kind!r}; known: {', '.join(FOLDERS)}")
    fp = comfy_module("folder_paths")
    if fp is not None:
        register_model_folders()
        return [Path(p) for p in fp.get_folder_paths(kind)]
    base = standalone_models_dir()
    return [base / sub for sub in FOLDERS[kind]]


def download_dir(kind: str) -> Path:
    """Where a missing model of ``kind`` is downloaded to (the first folder of the kind)."""
    return folder_paths_for(kind)[0]


def list_models(kind: str) -> list[str]:
    """Model file names (relative to their folder) available for ``kind``, sorted."""
    fp = comfy_module("folder_paths")
    if fp is not None:
        register_model_folders()
        return list(fp.get_filename_list(kind))
    names: set[str] = set()
    for d in folder_paths_for(kind):
        if d.is_dir():
            for p in d.rglob("*"):
                if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS:
                    names.add(p.relative_to(d).as_posix())
    return sorted(names)


def find_model(kind: str, name: str) -> Path | None:
    """Full path of model file ``name`` of ``kind``, or ``None`` when it is in no folder.

    ``name`` must be a relative path inside a model folder; absolute paths and ``..`` components
    are refused (``ValueError``) so a request can never reach outside the model folders.
    """
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or name.strip() == "":
        raise ValueError(f"invalid model name {name!r}: must be a file name inside the {kind} folder")
    fp = comfy_module("folder_paths")
    if fp is not None:
        register_model_folders()
        full = fp.get_full_path(kind, name)
        return Path(full) if full else None
    for d in folder_paths_for(kind):
        p = d / rel
        if p.is_file():
            return p
    return None
