"""Face detector and face-parsing models: files, downloads, construction (socket ``FACEMEND_DETECTOR``).

Networks are facexlib's classes, built directly (never through facexlib's ``init_*_model``
helpers, which download into facexlib's package folder and move the module to a fixed device).
Weights are looked up in the ``facedetection`` model folder under facexlib's file names; a file
that is present is read from disk and nothing touches the network. A missing file is downloaded
from facexlib's official release URL in the catalog (:mod:`facemend.model_loaders.catalog`), digest checked.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..model_loaders import UnsupportedModelError, read_checkpoint, unwrap_state_dict
from ..model_loaders.catalog import KnownModel, known_models
from ..model_loaders.download import download_model
from ..model_loaders.errors import quote_library_text, strip_ansi
from ..runtime import ManagedModel, find_model, folder_paths_for

log = logging.getLogger("facemend")

FOLDER = "facedetection"

#: Detector choice -> its official facexlib file (name, URL and digest live in the catalog).
DETECTOR_FILES: dict[str, KnownModel] = {m.arch: m for m in known_models(FOLDER) if m.arch.startswith("retinaface_")}
#: Parser choice -> its official facexlib file.
PARSER_FILES: dict[str, KnownModel] = {
    m.arch.removeprefix("parsing_"): m for m in known_models(FOLDER) if m.arch.startswith("parsing_")
}

DETECTORS = tuple(DETECTOR_FILES)
PARSERS = ("none", *PARSER_FILES)


@dataclass
class FaceNet:
    """A loaded facexlib network: ``name`` (a detector or parser choice, e.g. ``retinaface_resnet50``,
    ``bisenet``) and its module."""

    name: str
    module: nn.Module
    source: str = "<state dict>"

    def __repr__(self) -> str:
        return f"FaceNet({self.name}, {self.source})"


@dataclass
class FaceModels:
    """What ``FaceMend Load Face Detector`` outputs: a managed detector and an optional managed parser."""

    detector: ManagedModel
    parser: ManagedModel | None = None

    @property
    def detector_name(self) -> str:
        return self.detector.model.name

    @property
    def parser_name(self) -> str:
        return self.parser.model.name if self.parser is not None else "none"

    def __repr__(self) -> str:
        return f"FaceModels(detector={self.detector_name}, parser={self.parser_name})"


def build_retinaface(name: str) -> nn.Module:
    """An untrained facexlib RetinaFace for ``name``, on the CPU, in eval mode."""
    from facexlib.detection.retinaface import RetinaFace

    network = {"retinaface_resnet50": "resnet50", "retinaface_mobile0.25": "mobile0.25"}[name]
    with warnings.catch_warnings():  # torchvision warns about facexlib's `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        net = RetinaFace(network_name=network, half=False, phase="test", device=torch.device("cpu"))
    return net.eval()


def build_parser(name: str) -> nn.Module:
    """An untrained facexlib parsing network (19 CelebAMask-HQ classes), on the CPU, in eval mode."""
    if name == "bisenet":
        from facexlib.parsing.bisenet import BiSeNet

        return BiSeNet(num_class=19).eval()
    if name == "parsenet":
        from facexlib.parsing.parsenet import ParseNet

        return ParseNet(in_size=512, out_size=512, parsing_ch=19).eval()
    raise ValueError(f"unknown face parser {name!r}; choose one of {', '.join(PARSER_FILES)}")


def _load_strict(module: nn.Module, sd: dict[str, torch.Tensor], what: str, source: str) -> nn.Module:
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        own = module.state_dict()
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        raise UnsupportedModelError(
            f"{source}: is not a {what} checkpoint ({len(missing)} missing keys {missing[:4]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:4]}; {quote_library_text(strip_ansi(str(e)).strip().splitlines()[-1], 200)}). "
            "Use facexlib's release file of that name."
        ) from None
    return module.float().eval().requires_grad_(False)


def load_retinaface(source: str | Path | dict[str, torch.Tensor], name: str) -> FaceNet:
    """Load RetinaFace ``name`` from a file (or state dict) with ``strict=True``.

    ``module.`` prefixes (DataParallel saves) are stripped; legacy CUDA pickles load on the CPU.
    """
    if name not in DETECTOR_FILES:
        raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_FILES)}")
    label = str(source) if not isinstance(source, dict) else "<state dict>"
    sd = read_checkpoint(source) if not isinstance(source, dict) else dict(source)
    if isinstance(source, dict):
        sd = unwrap_state_dict(sd, label)
    module = _load_strict(build_retinaface(name), sd, name, label)
    return FaceNet(name=name, module=module, source=label)


def load_parsing(source: str | Path | dict[str, torch.Tensor], name: str) -> FaceNet:
    """Load face parser ``name`` (``bisenet`` / ``parsenet``) from a file or state dict, ``strict=True``."""
    label = str(source) if not isinstance(source, dict) else "<state dict>"
    if isinstance(source, dict):
        sd = unwrap_state_dict(dict(source), label)
    else:
        sd = read_checkpoint(source)
    module = _load_strict(build_parser(name), sd, name, label)
    return FaceNet(name=name, module=module, source=label)


#: Display names of the facexlib networks, by detector / parser choice.
FACE_NET_NAMES: dict[str, str] = {
    "retinaface_resnet50": "RetinaFace ResNet-50 face detector",
    "retinaface_mobile0.25": "RetinaFace MobileNet-0.25 face detector",
    "bisenet": "BiSeNet face parser",
    "parsenet": "ParseNet face parser",
}


@dataclass(frozen=True)
class FaceNetFile:
    """What :func:`identify_face_net` found: a facexlib detector or parser checkpoint.

    Attributes:
        choice: the value to pick in *FaceMend Load Face Detector* (a :data:`DETECTORS` or
            :data:`PARSERS` entry).
        widget: that node's input taking it (``detector`` or ``parser``).
        display_name: e.g. ``RetinaFace MobileNet-0.25 face detector``.
        file: the official facexlib file (its name is what FaceMend looks for in ``facedetection``).
        parameters: number of network parameters.
    """

    choice: str
    widget: str
    display_name: str
    file: KnownModel
    parameters: int

    def describe(self) -> str:
        """One line: what it is, which node takes it and under which name."""
        return (
            f"{self.display_name} (facexlib, {self.parameters:,} parameters, licence {self.file.licence}). "
            f"It is not a restorer: load it with 'FaceMend Load Face Detector' ({self.widget}: {self.choice}), "
            f"which reads it from the {FOLDER} model folder as {self.file.name}."
        )


def _candidates() -> list[tuple[str, str, KnownModel, Callable[[], nn.Module]]]:
    """(choice, widget, official file, builder) for every facexlib network, smallest first."""
    return [
        ("retinaface_mobile0.25", "detector", DETECTOR_FILES["retinaface_mobile0.25"], lambda: build_retinaface("retinaface_mobile0.25")),
        ("bisenet", "parser", PARSER_FILES["bisenet"], lambda: build_parser("bisenet")),
        ("parsenet", "parser", PARSER_FILES["parsenet"], lambda: build_parser("parsenet")),
        ("retinaface_resnet50", "detector", DETECTOR_FILES["retinaface_resnet50"], lambda: build_retinaface("retinaface_resnet50")),
    ]


def identify_face_net(source: str | Path | dict[str, torch.Tensor]) -> FaceNetFile | None:
    """Which facexlib detector or parser a checkpoint holds, judged by its tensors (never its name).

    A network matches when the file's keys and shapes are exactly its state dict and it loads with
    ``strict=True`` (the same load :func:`load_retinaface` / :func:`load_parsing` do).

    Args:
        source: a checkpoint file or a state dict (``module.`` prefixes are stripped).

    Returns:
        A :class:`FaceNetFile`, or ``None`` when the tensors are none of facexlib's networks.

    Raises:
        UnsupportedModelError: the file cannot be read (damaged, not a checkpoint).
    """
    sd = unwrap_state_dict(dict(source), "<state dict>") if isinstance(source, dict) else read_checkpoint(source)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for choice, widget, file, build in _candidates():
        module = build()
        own = module.state_dict()
        if shapes != {k: tuple(v.shape) for k, v in own.items()}:
            continue
        try:
            module.load_state_dict(sd, strict=True)
        except RuntimeError:
            continue
        return FaceNetFile(choice, widget, FACE_NET_NAMES[choice], file, int(sum(p.numel() for p in module.parameters())))
    return None


def model_path(file: KnownModel, allow_download: bool = True) -> Path:
    """Path of ``file`` in the ``facedetection`` folder; downloaded only when it is not there.

    Raises:
        FileNotFoundError: missing and ``allow_download`` is false (the message says where to put it).
    """
    found = find_model(FOLDER, file.name)
    if found is not None:
        return found
    if not allow_download:
        folders = folder_paths_for(FOLDER)
        where = ", ".join(str(p) for p in folders)
        raise FileNotFoundError(
            f"FaceMend: {file.name} is not in the facedetection model folder ({where}). "
            f"Download {file.url} by hand into {folders[0].absolute() / file.name}."
        )
    log.info("FaceMend: %s not found; downloading it from %s", file.name, file.url)
    return download_model(file.name, FOLDER, file.url, sha256=file.sha256)


def load_face_models(
    detector: str = "retinaface_resnet50",
    parser: str = "none",
    allow_download: bool = True,
    device: torch.device | None = None,
) -> FaceModels:
    """Load a detector (and optionally a parser) by name from the ``facedetection`` folder.

    Args:
        detector: one of :data:`DETECTORS`.
        parser: one of :data:`PARSERS` (``"none"`` for no parsing net).
        allow_download: fetch missing files from facexlib's official URLs.
        device: compute device override (default: ComfyUI's / the best available).

    Returns:
        :class:`FaceModels` whose networks are wrapped in ``runtime.ManagedModel`` (ComfyUI's
        ModelPatcher inside ComfyUI).
    """
    if detector not in DETECTOR_FILES:
        raise ValueError(f"unknown face detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if parser not in PARSERS:
        raise ValueError(f"unknown face parser {parser!r}; choose one of {', '.join(PARSERS)}")
    det = load_retinaface(model_path(DETECTOR_FILES[detector], allow_download), detector)
    managed_parser = None
    if parser != "none":
        par = load_parsing(model_path(PARSER_FILES[parser], allow_download), parser)
        managed_parser = ManagedModel(par, module=par.module, device=device, precision="fp32")
    return FaceModels(ManagedModel(det, module=det.module, device=device, precision="fp32"), managed_parser)
