"""Benchmark the face pipeline (detect + align + mask + paste back, no restorer).

1. One face in a 1024x1024 image (the astronaut, upscaled): FaceMend vs facexlib's
   ``FaceRestoreHelper`` doing the same steps with the same RetinaFace weights in the same process
   (box mask, and parsing mask with ParseNet), plus one CodeFormer forward at 512 for scale
   (spandrel-extra-arches' CodeFormer, random weights: the cost does not depend on the values).
2. Memory of a 32-frame 1080p batch through detect + paste back, measured in a fresh subprocess
   (resident memory sampled every 2 ms: peak above the start of each stage, minus its outputs).

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

    from facemend.face.models import FaceModels, FaceNet, build_parser, load_retinaface
    from facemend.face.pipeline import detect_and_align, paste_back
    from facemend.nodes.images import rgb_view
    from facemend.runtime import ManagedModel

    rgb = test_image()
    image = torch.from_numpy(rgb).float().div(255).unsqueeze(0)
    frames = rgb_view(image)
    torch.manual_seed(0)
    parsenet = build_parser("parsenet")
    det = load_retinaface(weights, "retinaface_mobile0.25")
    models = FaceModels(
        ManagedModel(det, module=det.module, device=device),
        ManagedModel(FaceNet("parsenet", parsenet), module=parsenet, device=device),
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


def _rss() -> int:
    """Current resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set size every 2 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        import threading

        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def video_child(weights: str, frames: int, device: str) -> None:
    """Runs in a subprocess: resident memory of detect + paste back on a 1080p batch."""
    import cv2
    from skimage import data

    from facemend.face.models import load_retinaface
    from facemend.face.pipeline import detect_and_align, paste_back
    from facemend.nodes.images import rgb_view
    from facemend.runtime import ManagedModel

    dev = torch.device(device)
    det = load_retinaface(weights, "retinaface_mobile0.25")
    managed = ManagedModel(det, module=det.module, device=dev)
    face = cv2.resize(data.astronaut()[0:300, 100:360], (390, 450), interpolation=cv2.INTER_CUBIC)
    image = torch.full((frames, 1080, 1920, 3), 0.35, dtype=torch.float32)
    for t in range(frames):  # one face per frame, moving
        x = 200 + 40 * t
        image[t, 300:750, x:x + 390] = torch.from_numpy(face).float() / 255
    # warm the network up on one frame so one-time allocations are not counted
    warm = rgb_view(image[:1])
    paste_back(warm, detect_and_align(managed, warm).crops, detect_and_align(managed, warm).faces)
    view = rgb_view(image)
    base = _rss()
    t0 = time.perf_counter()
    with PeakRSS() as detect_peak:
        result = detect_and_align(managed, view)
    t1 = time.perf_counter()
    after_detect = _rss()
    with PeakRSS() as paste_peak:
        out, mask = paste_back(view, result.crops, result.faces)
    t2 = time.perf_counter()
    print(json.dumps({
        "frames": frames, "faces": len(result.faces), "input_bytes": image.numel() * 4,
        "crops_bytes": result.crops.numel() * 4, "paste_out_bytes": out.numel() * 4 + mask.numel() * 4,
        "detect_peak": detect_peak.peak - base, "after_detect": after_detect - base,
        "paste_peak": paste_peak.peak - after_detect, "detect_s": t1 - t0, "paste_s": t2 - t1,
        "frame_bytes": 1080 * 1920 * 3 * 4,
    }))


def bench_video(weights: Path, frames: int, device: torch.device) -> dict:
    """Run :func:`video_child` in a fresh interpreter so its peak RSS is the pipeline's alone."""
    # a fixed mmap threshold makes glibc hand large freed blocks back at once, so the resident size
    # follows the live tensors instead of the allocator's high-water mark
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
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
    frame = v["frame_bytes"]
    detect_work = v["detect_peak"] - v["crops_bytes"]
    paste_work = v["paste_peak"] - v["paste_out_bytes"]
    print(f"\n| {v['frames']} frames 1080p, detect + paste back (box), resident memory | MiB |")
    print("|---|---|")
    print(f"| input IMAGE (float32, not copied) | {v['input_bytes'] / mib:.0f} |")
    print(f"| detect: peak above start | {v['detect_peak'] / mib:.0f} |")
    print(f"| detect: of which output crops ({v['faces']} faces) | {v['crops_bytes'] / mib:.0f} |")
    print(f"| detect: working memory (peak - crops) | {detect_work / mib:.0f} ({detect_work / frame:.1f} full-res float frames) |")
    print(f"| paste: peak above start | {v['paste_peak'] / mib:.0f} |")
    print(f"| paste: of which output image + mask | {v['paste_out_bytes'] / mib:.0f} |")
    print(f"| paste: working memory (peak - outputs) | {paste_work / mib:.0f} ({paste_work / frame:.1f} full-res float frames) |")
    print(f"| for scale: one full-batch float copy | {v['input_bytes'] / mib:.0f} |")
    print(f"\ndetect {v['detect_s']:.1f} s, paste {v['paste_s']:.1f} s for {v['frames']} frames")

if __name__ == "__main__":
    main()
