"""Benchmark the face pipeline (detect + align + mask + paste back, no restorer).

1. One face in a 1024x1024 image (the astronaut, upscaled): FaceMend vs facexlib's
   ``FaceRestoreHelper`` doing the same steps with the same RetinaFace weights in the same process
   (box mask, and parsing mask with ParseNet), plus one CodeFormer forward at 512 for scale
   (spandrel-extra-arches' CodeFormer, random weights: the cost does not depend on the values).
2. Memory of a 32-frame 1080p batch through detect + paste back, measured in a fresh subprocess
   (peak RSS above the input, and what the outputs account for).

Usage:
    PYTHONPATH=<dir holding facemend> python benchmarks/bench_face.py [--repeats 5] [--frames 32]
        [--weights ../shared/weights/detection_mobilenet0.25_Final.pth] [--device cpu|cuda]

Prints markdown tables. ParseNet has no released weights on this machine, so both pipelines get
the same randomly initialised ParseNet (timing only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _default_weights() -> Path:
    """``shared/weights`` beside the checkout (``../shared`` in CI), searched upwards."""
    for base in HERE.parents:
        cand = base / "shared" / "weights" / "detection_mobilenet0.25_Final.pth"
        if cand.is_file():
            return cand
    return HERE.parent.parent / "shared" / "weights" / "detection_mobilenet0.25_Final.pth"


DEFAULT_WEIGHTS = _default_weights()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median wall-clock seconds and median process CPU seconds (steadier on a shared machine)."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def test_image() -> np.ndarray:
    """The astronaut upscaled to 1024x1024, uint8 RGB."""
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)


def bench_single(weights: Path, repeats: int, device: torch.device) -> list[tuple[str, tuple[float, float]]]:
    import cv2

    from facemend.face.models import FaceModels, ParsingNet, build_parser, load_retinaface
    from facemend.face.pipeline import detect_and_align, paste_back, rgb_view
    from facemend.runtime import ManagedModel

    rgb = test_image()
    image = torch.from_numpy(rgb).float().div(255).unsqueeze(0)
    frames = rgb_view(image)
    torch.manual_seed(0)
    parsenet = build_parser("parsenet")
    det = load_retinaface(weights, "retinaface_mobile0.25")
    models = FaceModels(
        ManagedModel(det, module=det.module, device=device),
        ManagedModel(ParsingNet("parsenet", parsenet), module=parsenet, device=device),
    )

    def ours(mask: str) -> None:
        result = detect_and_align(models, frames)
        assert len(result.faces) == 1
        paste_back(frames, result.crops, result.faces, mask=mask, models=models)

    rows = [
        ("FaceMend: detect + align + box mask + paste", _median_time(lambda: ours("box"), repeats, device)),
        ("FaceMend: detect + align + parsing mask (ParseNet) + paste", _median_time(lambda: ours("parsing"), repeats, device)),
    ]

    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    with tempfile.TemporaryDirectory() as root:  # facexlib loads from here instead of downloading
        shutil.copy(weights, Path(root) / "detection_mobilenet0.25_Final.pth")
        torch.save(parsenet.state_dict(), Path(root) / "parsing_parsenet.pth")
        helpers = {}
        for use_parse in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                helpers[use_parse] = FaceRestoreHelper(
                    1, face_size=512, det_model="retinaface_mobile0.25", use_parse=use_parse, device=device,
                    model_rootpath=root,
                )
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def theirs(use_parse: bool) -> None:
        h = helpers[use_parse]
        h.clean_all()
        h.read_image(bgr)
        assert h.get_face_landmarks_5() == 1
        h.align_warp_face()
        h.get_inverse_affine()
        for face in h.cropped_faces:
            h.add_restored_face(face)
        h.paste_faces_to_input_image()

    rows += [
        ("facexlib FaceRestoreHelper: same steps, box mask", _median_time(lambda: theirs(False), repeats, device)),
        ("facexlib FaceRestoreHelper: same steps, ParseNet mask", _median_time(lambda: theirs(True), repeats, device)),
    ]
    try:
        from spandrel_extra_arches.architectures.CodeFormer.__arch.codeformer import CodeFormer

        net = CodeFormer().eval().to(device)
        x = torch.rand(1, 3, 512, 512, device=device) * 2 - 1

        def codeformer() -> None:
            with torch.inference_mode():
                net(x, weight=0.5)

        rows.append(("one CodeFormer forward (512 px, for scale)", _median_time(codeformer, max(1, repeats // 2), device)))
    except Exception as e:  # noqa: BLE001 - optional reference
        print(f"(CodeFormer reference skipped: {e})", file=sys.stderr)
    return rows


def video_child(weights: str, frames: int, device: str) -> None:
    """Runs in a subprocess: peak RSS of detect + paste back on a 1080p batch."""
    import cv2
    from skimage import data

    from facemend.face.models import load_retinaface
    from facemend.face.pipeline import detect_and_align, paste_back, rgb_view
    from facemend.runtime import ManagedModel

    dev = torch.device(device)
    det = load_retinaface(weights, "retinaface_mobile0.25")
    managed = ManagedModel(det, module=det.module, device=dev)
    face = cv2.resize(data.astronaut()[0:300, 100:360], (390, 450), interpolation=cv2.INTER_CUBIC)
    image = torch.full((frames, 1080, 1920, 3), 0.35, dtype=torch.float32)
    for t in range(frames):  # one face per frame, moving
        x = 200 + 40 * t
        image[t, 300:750, x:x + 390] = torch.from_numpy(face).float() / 255
    # warm the network on one small frame so one-time allocations are not counted
    detect_and_align(managed, rgb_view(image[:1, :540, :960]))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    view = rgb_view(image)
    result = detect_and_align(managed, view)
    t1 = time.perf_counter()
    out, mask = paste_back(view, result.crops, result.faces)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    outputs = out.numel() * 4 + mask.numel() * 4 + result.crops.numel() * 4
    print(json.dumps({
        "frames": frames, "faces": len(result.faces), "input_bytes": image.numel() * 4, "output_bytes": outputs,
        "baseline_rss": base, "peak_rss": peak, "detect_s": t1 - t0, "paste_s": t2 - t1,
        "frame_bytes": 1080 * 1920 * 3 * 4,
    }))


def bench_video(weights: Path, frames: int, device: torch.device) -> dict:
    """Run :func:`video_child` in a fresh interpreter so its peak RSS is the pipeline's alone."""
    env = dict(os.environ)
    cmd = [sys.executable, __file__, "--video-child", "--weights", str(weights), "--frames", str(frames), "--device", str(device),
           "--threads", str(torch.get_num_threads())]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--video-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.video_child:
        video_child(str(args.weights), args.frames, args.device)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    rows = bench_single(args.weights, args.repeats, device)
    print("| one face, 1024x1024, RetinaFace mobile0.25 (median) | wall s | process CPU s |")
    print("|---|---|---|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:.4f} | {cpu:.4f} |")
    times = dict(rows)
    ours = times["FaceMend: detect + align + box mask + paste"]
    theirs = times["facexlib FaceRestoreHelper: same steps, box mask"]
    print(f"\nFaceMend / facexlib (box mask): {ours[0] / theirs[0]:.2f}x the wall time, {ours[1] / theirs[1]:.2f}x the CPU time")
    cf = times.get("one CodeFormer forward (512 px, for scale)")
    if cf:
        print(f"FaceMend pipeline / one CodeFormer forward: {100 * ours[0] / cf[0]:.1f}% (wall), {100 * ours[1] / cf[1]:.1f}% (CPU)")
    if args.skip_video:
        return
    v = bench_video(args.weights, args.frames, device)
    mib = 1024 * 1024
    extra = v["peak_rss"] - v["baseline_rss"] - v["output_bytes"]
    print(f"\n| {v['frames']} frames 1080p, detect + paste back (box) | value |")
    print("|---|---|")
    print(f"| faces found | {v['faces']} |")
    print(f"| input IMAGE (float32) | {v['input_bytes'] / mib:.0f} MiB |")
    print(f"| outputs (image + mask + crops) | {v['output_bytes'] / mib:.0f} MiB |")
    print(f"| peak RSS above the loaded input | {(v['peak_rss'] - v['baseline_rss']) / mib:.0f} MiB |")
    print(f"| working memory beyond the outputs | {extra / mib:.0f} MiB ({extra / v['frame_bytes']:.1f} full-res float frames) |")
    print(f"| a full-batch float copy would be | {v['input_bytes'] / mib:.0f} MiB |")
    print(f"| detect / paste time | {v['detect_s']:.1f} s / {v['paste_s']:.1f} s |")


if __name__ == "__main__":
    main()
