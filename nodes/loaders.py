"""Loader nodes: restoration models (and, from the face pipeline, detectors)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..face.models import DETECTOR_FILES, DETECTORS, PARSER_FILES, PARSERS, load_face_models
from ..model_loaders import find_known, known_models, load_model, read_checkpoint
from ..model_loaders.download import directory_under_name, ensure_known_model
from ..model_loaders.info import describe_spec
from ..runtime import PRECISIONS, ManagedModel, download_dir, find_model, folder_paths_for, list_models
from .spec import In, NodeDef, NodeResult, Out

log = logging.getLogger("facemend")

#: Models in the ``refusion`` folder are listed with this prefix in the loader's menu.
REFUSION_PREFIX = "refusion/"


def model_choices() -> list[str]:
    """Menu entries: files in ``facerestore_models``, ``refusion/<file>`` for the ``refusion``
    folder, then official restorers that are not present yet (downloaded on first use)."""
    present = list_models("facerestore_models")
    refusion = [REFUSION_PREFIX + n for n in list_models("refusion")]
    downloadable = [m.name for m in known_models("facerestore_models") if m.url and m.name not in present]
    return present + refusion + downloadable


def resolve_model_file(model_name: str) -> tuple[str, Path]:
    """Menu entry -> (folder kind, file path), downloading official files that are missing.

    Raises:
        FileNotFoundError: not present and not downloadable, with what to do.
        UnsupportedModelError: a directory sits in the folder under that name.
    """
    if model_name.startswith(REFUSION_PREFIX):
        name = model_name[len(REFUSION_PREFIX):]
        path = find_model("refusion", name)
        if path is None:
            raise FileNotFoundError(
                f"FaceMend: {name!r} is not in the refusion model folder ({_folders('refusion')}). Put the file at "
                f"{download_dir('refusion').absolute() / name}, then press R in ComfyUI, or pick another model."
            )
        return "refusion", path
    path = find_model("facerestore_models", model_name)
    if path is not None:
        return "facerestore_models", path
    folder_in_the_way = directory_under_name("facerestore_models", model_name)
    if folder_in_the_way is not None:
        read_checkpoint(folder_in_the_way)  # raises: "<path>: is a directory, not a checkpoint file. ..."
    if find_known(model_name) is not None:
        return "facerestore_models", ensure_known_model(model_name, "facerestore_models")
    raise FileNotFoundError(
        f"FaceMend: model file {model_name!r} was not found in the facerestore_models model folders "
        f"({_folders('facerestore_models')}). The workflow may come from another machine: put the file at "
        f"{download_dir('facerestore_models').absolute() / model_name}, then press R in ComfyUI, or pick another model."
    )


def _folders(kind: str) -> str:
    """The real paths searched for ``kind``, for messages."""
    return ", ".join(str(p.absolute()) for p in folder_paths_for(kind))


class FaceMendModelLoader(NodeDef):
    """Load a face restorer (GFPGAN, CodeFormer, RestoreFormer(++), VQFR) or a Refusion network."""

    NODE_ID = "FaceMendModelLoader"
    DISPLAY_NAME = "FaceMend Load Model"
    CATEGORY = "FaceMend/loaders"
    DESCRIPTION = (
        "Loads a face-restoration checkpoint from models/facerestore_models (or models/refusion). The architecture "
        "is detected from the file's tensors, not its name. Official files that are missing are downloaded on first use."
    )
    OUTPUTS = (Out("FACEMEND_MODEL", "model", "The loaded model, managed by ComfyUI's GPU memory manager."),)

    @classmethod
    def inputs(cls) -> list[In]:
        return [
            In(
                "model_name",
                "COMBO",
                "Checkpoint file. Official files not on disk yet are downloaded when first used.",
                options=model_choices,
                model_kind="facerestore_models",
            ),
            In(
                "precision",
                "COMBO",
                "Compute precision. auto: bf16/fp16 where the device does it well (fp32 retry on NaN), else fp32.",
                default="auto",
                options=list(PRECISIONS),
            ),
            In(
                "compile",
                "BOOLEAN",
                "Compile the network with torch.compile (GPU; the first run takes a minute or more, later runs "
                "are faster). Falls back to normal execution, with a log line, when compilation fails.",
                default=False,
                optional=True,
            ),
        ]

    @classmethod
    def execute(cls, model_name: str, precision: str = "auto", compile: bool = False, **_: Any) -> NodeResult:  # noqa: A002
        kind, path = resolve_model_file(model_name)
        model = load_model(path)
        log.info("FaceMend: loaded %s from %s", model.describe(), path)
        managed = ManagedModel(model, precision=precision, compile=bool(compile))
        info = describe_spec(model.spec, model.hparams)
        text = f"{model.describe()}\nuse with: {info.node_name}\ncontrols: {', '.join(info.widgets) or 'none'}\nfolder: {kind}"
        return NodeResult((managed,), ui={"text": [text]})

    @classmethod
    def fingerprint(cls, model_name: str, **_: Any) -> Any:
        kind = "refusion" if model_name.startswith(REFUSION_PREFIX) else "facerestore_models"
        try:
            path = find_model(kind, model_name.removeprefix(REFUSION_PREFIX))
        except ValueError:
            return model_name
        if path is None:
            return model_name
        st = path.stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def default_detector() -> str:
    """The detector choice a new Load Face Detector node starts with: one whose file is present.

    ``retinaface_resnet50`` when its file is in the ``facedetection`` folder, or when no detector
    file is (it is then downloaded on first use); ``retinaface_mobile0.25`` when only that one is.
    """
    present = [c for c, f in DETECTOR_FILES.items() if find_model("facedetection", f.name) is not None]
    if "retinaface_resnet50" in present or not present:
        return "retinaface_resnet50"
    return present[0]


class FaceMendDetectorLoader(NodeDef):
    """Load facexlib's RetinaFace detector and an optional face-parsing network."""

    NODE_ID = "FaceMendDetectorLoader"
    DISPLAY_NAME = "FaceMend Load Face Detector"
    CATEGORY = "FaceMend/loaders"
    DESCRIPTION = (
        "Loads facexlib's RetinaFace face detector and, optionally, a face-parsing network (for parsing masks in Paste "
        "Back) from the models/facedetection folder, downloading facexlib's official files on first use. Each choice "
        "needs one file there: " + "; ".join(f"{c}: {f.name}" for c, f in {**DETECTOR_FILES, **PARSER_FILES}.items()) + "."
    )

    @classmethod
    def inputs(cls) -> list[In]:
        files = {c: f.name for c, f in DETECTOR_FILES.items()}
        return [
            In("detector", "COMBO", "RetinaFace backbone: retinaface_resnet50 (more accurate; needs "
               f"{files['retinaface_resnet50']}) or retinaface_mobile0.25 (much faster; needs "
               f"{files['retinaface_mobile0.25']}), in models/facedetection (downloaded on first use when missing). "
               "The default is a detector whose file is already there.",
               default=default_detector(), options=DETECTORS),
            In("parser", "COMBO", "Optional face-parsing network for parsing masks: bisenet (needs "
               f"{PARSER_FILES['bisenet'].name}) or parsenet (needs {PARSER_FILES['parsenet'].name}), in "
               "models/facedetection; none skips it.", default="none", options=PARSERS),
        ]

    OUTPUTS = (Out("FACEMEND_DETECTOR", "detector", "Face detector (and parser) for Detect and Paste Back."),)

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        return NodeResult((load_face_models(kw.get("detector") or default_detector(), kw.get("parser", "none")),))

    @classmethod
    def fingerprint(cls, **kw: Any) -> Any:
        """Re-run when a model file appears, disappears or changes on disk."""
        files = [DETECTOR_FILES.get(kw.get("detector", ""))]
        if kw.get("parser", "none") in PARSER_FILES:
            files.append(PARSER_FILES[kw["parser"]])
        stamp = []
        for f in files:
            p = find_model("facedetection", f.name) if f is not None else None
            stamp.append((str(p), p.stat().st_mtime_ns, p.stat().st_size) if p is not None else None)
        return tuple(stamp)


NODES: list[type[NodeDef]] = [FaceMendModelLoader, FaceMendDetectorLoader]
