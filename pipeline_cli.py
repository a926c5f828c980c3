"""``facemend restore``: detect, restore and paste back the faces in image files (no ComfyUI).

The same library calls, control mapping and defaults as the Restore Faces node:
``face.pipeline.detect_and_align`` (the model's framing) -> ``model_loaders.restore_batch`` with
``model_loaders.restore_faces_plan`` -> ``face.pipeline.paste_back``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("facemend")



def read_rgb(path: Path) -> torch.Tensor:
    """Image file -> ``(1, 3, H, W)`` RGB float32 in ``[0, 1]`` (8- or 16-bit, grey or RGB(A))."""
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError(f"{path}: not a readable image")
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    if data.ndim == 2:
        data = cv2.cvtColor(data, cv2.COLOR_GRAY2RGB)
    elif data.shape[2] == 4:
        data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    else:
        data = cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(data.astype(np.float32) / scale).permute(2, 0, 1).unsqueeze(0).contiguous()


def write_rgb(path: Path, image: torch.Tensor) -> None:
    """``(1, 3, H, W)`` or ``(3, H, W)`` RGB in ``[0, 1]`` -> 8-bit image file."""
    import cv2

    arr = image.reshape(-1, *image.shape[-2:]).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"{path}: could not write the image (unsupported extension?)")


def load_restorer(name_or_path: str, precision: str):  # noqa: ANN201 - returns runtime.ManagedModel
    """A checkpoint path, or an official file name found in / downloaded into its model folder."""
    from .model_loaders import ensure_known_model, load_model
    from .runtime import ManagedModel

    path = Path(name_or_path)
    if not path.is_file():
        path = ensure_known_model(name_or_path)
    return ManagedModel(load_model(path), precision=precision)


def ensure_restore_files(model: str, detector: str) -> None:
    """Make sure the restorer and the detector file are on disk before anything is loaded.

    ``model`` is a checkpoint path or a file name in its model folder; ``detector`` one of
    :data:`facemend.face.models.DETECTORS`. Both are checked first, missing official files are
    downloaded (all of them tried), and every file still missing is reported in one error.

    Raises:
        MissingModelsError: lists each missing file with its folder and what to do.
    """
    from .face.models import DETECTOR_FILES
    from .model_loaders.download import ensure_models

    needed: list[tuple[str, str | None]] = []
    if not Path(model).is_file():
        needed.append((model, None))
    needed.append((DETECTOR_FILES[detector].name, "facedetection"))
    ensure_models(needed)


def restore_files(args: argparse.Namespace) -> int:
    """Run the restore command; returns the exit status (1 if any input failed).

    One pass per image through :func:`facemend.face.restore.restore_faces`, the code the Restore
    Faces node runs, with the same defaults and options (``--auto-fidelity``, ``--skip-below``).
    """
    from .face.models import load_face_models
    from .face.restore import RestoreOptions, restore_faces
    from .model_loaders import DownloadError, UnsupportedModelError
    from .model_loaders.controls import check_restore_faces_model

    try:
        ensure_restore_files(args.model, args.detector)  # every missing file is listed at once
        managed = load_restorer(args.model, args.precision)
        model = managed.model
        check_restore_faces_model(model)  # a refusion model is refused with advice
        faces_models = load_face_models(args.detector)
    except (UnsupportedModelError, DownloadError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    options = RestoreOptions(fidelity=args.fidelity, strength=args.strength, threshold=args.threshold,
                             auto=args.auto_fidelity, leave_alone_below=args.skip_below)
    print(f"model: {managed.model.describe()}")
    status = 0
    for src in args.inputs:
        try:
            frames = read_rgb(src)
            result = restore_faces(faces_models, managed, frames, options)
            if len(result.faces) == 0:
                log.warning("FaceMend: no face found in %s; writing it unchanged", src)
            out = args.output / (src.stem + ".png")
            write_rgb(out, result.image)
            print(f"{src} -> {out} ({len(result.faces)} face(s)): {result.summary(model)}")
        except (ValueError, OSError) as e:
            print(f"error: {src}: {e}", file=sys.stderr)
            status = 1
    return status
