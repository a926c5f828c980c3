"""Command line: ``facemend`` / ``python -m facemend``.

- ``facemend models``: known official models and whether each is present or downloadable.
- ``facemend inspect FILE``: the detected architecture, parameter count and licence (or why not).
- ``facemend download NAME``: fetch an official model into its folder.
- ``facemend restore IN... -o OUT --model NAME_OR_PATH``: detect, restore and paste back faces.

Outside ComfyUI, models live under ``$FACEMEND_MODELS_DIR`` (default ``~/.cache/facemend/models``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .face.models import DETECTORS
from .face.restore import RESTORE_FACES
from .face.settings import DETECT
from .model_loaders.controls import RESTORE
from .runtime.precision import PRECISIONS


def _cmd_models(args: argparse.Namespace) -> int:
    from .model_loaders import known_models
    from .runtime import find_model, folder_paths_for

    for kind in ("facerestore_models", "facedetection", "refusion"):
        print(f"[{kind}] {', '.join(str(p) for p in folder_paths_for(kind))}")
        for m in known_models(kind):
            path = find_model(kind, m.name) if m.url else None
            status = f"present: {path}" if path else ("downloadable" if m.url else f"manual download: {m.page}")
            print(f"  {m.name:<36} {m.arch:<22} {status}  [{m.licence}]")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .face.models import identify_face_net
    from .model_loaders import UnsupportedModelError, load_model

    status = 0
    for f in args.files:
        try:
            model = load_model(f)
        except UnsupportedModelError as e:
            try:  # facexlib's detector and parser files are recognised by their tensors too
                face_net = identify_face_net(f)
            except UnsupportedModelError:
                face_net = None
            if face_net is not None:
                print(f"{f}: {face_net.describe()}")
                continue
            print(f"{f}: not loadable: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{f}: arch={model.arch} ({model.spec.display_name}) parameters={model.parameter_count:,} "
              f"licence={model.licence} controls={','.join(model.spec.controls) or '-'} hparams={model.hparams}")
    return status


def _cmd_download(args: argparse.Namespace) -> int:
    from .model_loaders import DownloadError, ensure_known_model

    try:
        print(ensure_known_model(args.name))
    except (DownloadError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from .pipeline_cli import restore_files

    return restore_files(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and ``--help``)."""
    p = argparse.ArgumentParser(prog="facemend", description="FaceMend: blind face restoration (GFPGAN, CodeFormer, RestoreFormer, VQFR, GPEN, Refusion).")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and decisions")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("models", help="list known official models and their status (present / downloadable)")
    s.set_defaults(func=_cmd_models)

    s = sub.add_parser("inspect", help="print the architecture, parameter count and licence of checkpoint files")
    s.add_argument("files", nargs="+", help="checkpoint files (.pth, .pt, .ckpt, .bin, .safetensors)")
    s.set_defaults(func=_cmd_inspect)

    s = sub.add_parser("download", help="download an official model into its model folder")
    s.add_argument("name", help="official file name, e.g. GFPGANv1.4.pth (see `facemend models`)")
    s.set_defaults(func=_cmd_download)

    s = sub.add_parser("restore", help="restore the faces in images")
    s.add_argument("inputs", nargs="+", type=Path, help="input images (png/jpg/webp)")
    s.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    s.add_argument("--model", required=True, help="official model name (downloaded if missing) or a checkpoint path")
    s.add_argument("--detector", default=DETECTORS[0], choices=list(DETECTORS),
                   help="face detector (facexlib RetinaFace; its file is downloaded into the facedetection folder if missing)")
    s.add_argument("--fidelity", type=float, default=RESTORE.fidelity, help="codebook models: 0 = quality, 1 = fidelity")
    s.add_argument("--strength", type=float, default=RESTORE.strength,
                   help="GFPGAN: CS-SFT modulation strength; GPEN: blend with the input (0-1)")
    s.add_argument("--precision", default="auto", choices=list(PRECISIONS), help="compute precision")
    s.add_argument("--threshold", type=float, default=DETECT.threshold, help="face detection confidence threshold")
    s.add_argument("--auto-fidelity", action="store_true",
                   help="restore each face only as much as it needs: its fidelity (codebook) or strength (GFPGAN, "
                        "GPEN) follows its degradation score; --fidelity/--strength is what a ruined face gets")
    s.add_argument("--skip-below", type=float, default=RESTORE_FACES.leave_alone_below, metavar="SCORE",
                   help="leave faces whose degradation score (0 = clean, 1 = ruined) is below SCORE untouched")
    s.set_defaults(func=_cmd_restore)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
