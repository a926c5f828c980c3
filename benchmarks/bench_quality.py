"""Benchmark the per-face degradation score (``facemend.face.quality``) on real faces.

Faces: every face the real RetinaFace (mobilenet0.25, threshold 0.97) finds in
``skimage.data.astronaut()`` and the photos of ``shared/photos`` (a 6-face group photo, itself a
JPEG of quality ~70, and an old degraded 3-face photo), aligned to 512 px FFHQ crops.

Degradations are applied to the whole *source photo* (8-bit, as saved images are), then the crops
are cut again with the same alignment, as a user's degraded photo would reach the score: five
levels per family,

* ``blur``: Gaussian blur, sigma 0.8, 1.5, 2.5, 4, 6 source px;
* ``noise``: Gaussian noise, sigma 4, 8, 14, 22, 35 (of 255), seeded;
* ``jpeg``: JPEG quality 40, 30, 20, 12, 6 (OpenCV; the group photo is itself a quality ~70 JPEG, so the
  ladder starts well below it: re-encoding it at 50 hardly changes it);
* ``downscale``: down by 1.5, 2, 3, 4, 6 (area) and back up (bicubic), so the face keeps its
  size and only its detail goes;
* ``mixed``: downscale 1.25 -> 3, noise 2 -> 12, JPEG 75 -> 20 together, in that order (the
  usual blind-restoration degradation chain).

Reported per family: the Spearman rank correlation between level (0 = undegraded .. 5) and score,
worst face and mean (target >= 0.9 for every face), the separation score(mildest) - score(clean)
(worst face and mean), and the mean score per level. Then the time per face (one CPU thread).

Usage:
    PYTHONPATH=<dir holding facemend> python benchmarks/bench_quality.py [--repeats 20]
        [--weights .../detection_mobilenet0.25_Final.pth] [--photos .../shared/photos] [--tune]
        [--device cpu|cuda]

``--tune`` also runs the coarse grid search over the cue anchors and weights that chose
``QualitySettings``' defaults, and prints the best settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from facemend.face.quality import QualitySettings

HERE = Path(__file__).resolve().parent

FAMILIES: dict[str, list] = {
    "blur": [0.8, 1.5, 2.5, 4.0, 6.0],
    "noise": [4.0, 8.0, 14.0, 22.0, 35.0],
    "jpeg": [40, 30, 20, 12, 6],
    "downscale": [1.5, 2.0, 3.0, 4.0, 6.0],
    "mixed": [(1.25, 2.0, 75), (1.5, 4.0, 60), (2.0, 6.0, 45), (2.5, 9.0, 30), (3.0, 12.0, 20)],
}


def _find_shared(name: str) -> Path:
    for base in HERE.parents:
        cand = base / "shared" / name
        if cand.exists():
            return cand
    return HERE.parent.parent / "shared" / name


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigma)


def _noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _downscale(img: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    small = cv2.resize(img, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def degrade(img: np.ndarray, family: str, level: int, seed: int = 0) -> np.ndarray:
    """``img`` (uint8 RGB ``(H, W, 3)``) at ``level`` (0 = untouched, 1..5) of ``family``."""
    if level == 0:
        return img
    p = FAMILIES[family][level - 1]
    if family == "blur":
        return _blur(img, p)
    if family == "noise":
        return _noise(img, p, seed)
    if family == "jpeg":
        return _jpeg(img, p)
    if family == "downscale":
        return _downscale(img, p)
    factor, sigma, quality = p
    return _jpeg(_noise(_downscale(img, factor), sigma, seed), quality)


def load_photos(photos: Path) -> dict[str, np.ndarray]:
    import cv2
    from skimage import data

    out = {"astronaut": data.astronaut()}
    for name in ("insightface_t1.jpg", "gfpgan_whole_10045.png"):
        path = photos / name
        if path.is_file():
            out[path.stem] = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        else:
            print(f"(missing {path}; skipped)", file=sys.stderr)
    return out


def detect(weights: Path, images: dict[str, np.ndarray], device: torch.device) -> dict:
    from facemend.face.models import load_retinaface
    from facemend.face.pipeline import detect_and_align, rgb_view
    from facemend.runtime import ManagedModel

    det = load_retinaface(weights, "retinaface_mobile0.25")
    managed = ManagedModel(det, module=det.module, device=device)
    found = {}
    for name, img in images.items():
        frames = rgb_view(torch.from_numpy(img).float().div(255).unsqueeze(0))
        found[name] = detect_and_align(managed, frames, threshold=0.97).faces
    return found


def measure_all(images: dict[str, np.ndarray], faces: dict, device: torch.device) -> dict:
    """``{(photo, family, level): Measures}`` for every face of every photo."""
    from facemend.face.quality import measure_faces
    from facemend.face.warp import extract_crops

    out = {}
    for p, (name, img) in enumerate(images.items()):
        fs = faces[name]
        for f, family in enumerate(FAMILIES):
            for level in range(6):
                d = degrade(img, family, level, seed=1000 * p + 10 * f + level)
                frames = torch.from_numpy(d).float().div(255).permute(2, 0, 1).unsqueeze(0)
                crops = extract_crops(frames, fs.frame_index, fs.affines, fs.crop_size, fs.border, device=device,
                                      out_device=device)
                m = measure_faces(crops, affines=fs.affines, padding=fs.padding)
                out[(name, family, level)] = dataclasses.replace(
                    m, **{k.name: getattr(m, k.name).cpu() for k in dataclasses.fields(m)})
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def evaluate(measures: dict, names: list[str], settings: QualitySettings) -> dict:
    """Per family: ``rho`` and ``sep`` arrays over faces, ``levels`` mean score per level."""
    from facemend.face.quality import combine_cues, cues_from_measures

    res = {}
    for family in FAMILIES:
        rhos, seps, per_level = [], [], np.zeros(6)
        count = 0
        for name in names:
            s = np.stack([combine_cues(cues_from_measures(measures[(name, family, lv)], settings), settings).numpy()
                          for lv in range(6)])  # (6, faces)
            for i in range(s.shape[1]):
                rhos.append(_spearman(np.arange(6), s[:, i]))
                seps.append(s[1, i] - s[0, i])
            per_level += s.sum(1)
            count += s.shape[1]
        res[family] = {"rho": np.array(rhos), "sep": np.array(seps), "levels": per_level / count}
    return res


def table(res: dict) -> str:
    lines = [
        "| family | Spearman min | Spearman mean | separation min | separation mean | mean score, level 0 .. 5 |",
        "|---|---|---|---|---|---|",
    ]
    for family, r in res.items():
        lv = " / ".join(f"{v:.2f}" for v in r["levels"])
        lines.append(f"| {family} | {r['rho'].min():.2f} | {r['rho'].mean():.2f} | {r['sep'].min():+.3f} | "
                     f"{r['sep'].mean():+.3f} | {lv} |")
    return "\n".join(lines)


def tune(measures: dict, names: list[str]) -> list[tuple[float, float, float, dict]]:
    """Coarse random grid search (400 of 3^9 settings): among settings whose worst Spearman is >= 0.9,
    the largest mean separation (mildest level minus undegraded); ties broken by the worst rho."""
    from facemend.face.quality import QualitySettings

    base = QualitySettings()
    grid = {
        "blur_clean_px": [1.3, 1.4, 1.5],
        "blur_ruined_px": [4.0, 5.0, 6.0],
        "noise_clean": [0.007, 0.01, 0.013],
        "noise_ruined": [0.04, 0.05, 0.06],
        "block_clean": [0.5, 0.6, 0.7],
        "block_ruined": [2.5, 3.0, 3.5],
        "w_blur": [0.7, 0.85, 0.95],
        "w_noise": [0.6, 0.8, 0.95],
        "w_blocking": [0.4, 0.6, 0.8],
    }
    best = []
    keys = list(grid)
    rng = np.random.default_rng(0)
    combos = list(itertools.product(*grid.values()))
    picks = rng.choice(len(combos), size=min(400, len(combos)), replace=False)
    for k in picks:
        s = dataclasses.replace(base, **dict(zip(keys, combos[k])))
        r = evaluate(measures, names, s)
        worst_rho = min(v["rho"].min() for v in r.values())
        worst_sep = min(v["sep"].min() for v in r.values())
        mean_sep = statistics.mean(float(v["sep"].mean()) for v in r.values())
        best.append((round(worst_rho, 3), round(worst_sep, 3), mean_sep, dict(zip(keys, combos[k]))))
    best.sort(key=lambda t: (t[0] >= 0.9, t[2], t[0]), reverse=True)
    return best[:8]


def time_per_face(device: torch.device, repeats: int) -> list[tuple[str, float, float]]:
    """Median wall and process-CPU ms per face (the CPU figure is steadier on a shared machine) of
    :func:`degradation_score` for batches of 1 and 8 image-like 512 px crops of a 160 px face."""
    from facemend.face.quality import degradation_score

    torch.manual_seed(0)
    rows = []
    for n in (1, 8):
        crops = torch.nn.functional.avg_pool2d(torch.rand(n, 3, 512, 512), 5, 1, 2).to(device)
        a = torch.zeros(n, 2, 3, dtype=torch.float64)
        a[:, 0, 0] = a[:, 1, 1] = 1 / 0.31  # source -> crop: a 160 px face enlarged 3.2x
        a[:, 0, 2] = a[:, 1, 2] = -100.0
        degradation_score(crops, affines=a)
        wall, cpu = [], []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t, c = time.perf_counter(), time.process_time()
            degradation_score(crops, affines=a)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        rows.append((f"batch of {n}", 1000 * statistics.median(wall) / n, 1000 * statistics.median(cpu) / n))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=_find_shared("weights") / "detection_mobilenet0.25_Final.pth")
    ap.add_argument("--photos", type=Path, default=_find_shared("photos"))
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--time-only", action="store_true", help="only the timing table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from facemend.face.quality import DEFAULT_SETTINGS, combine_cues, cues_from_measures

    if args.time_only:
        for label, ms, cpu_ms in time_per_face(device, args.repeats):
            print(f"{label}: {ms:.2f} ms wall, {cpu_ms:.2f} ms CPU per face")
        return
    images = load_photos(args.photos)
    faces = detect(args.weights, images, device)
    names = list(images)
    measures = measure_all(images, faces, device)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"`python benchmarks/bench_quality.py` ({date.today()}, torch {torch.__version__}, {cpu}, "
          f"{torch.get_num_threads()} thread(s), device {device}; "
          f"{sum(len(faces[n]) for n in names)} faces: " + ", ".join(f"{n} {len(faces[n])}" for n in names) + ")\n")
    print(table(evaluate(measures, names, DEFAULT_SETTINGS)))
    print("\nUndegraded faces (score; resolution / blur / noise / blocking cues; face px, blur px, noise x255, blockiness):\n")
    print("| face | score | cues | measures |\n|---|---|---|---|")
    for name in names:
        m = measures[(name, "blur", 0)]
        c = cues_from_measures(m, DEFAULT_SETTINGS)
        s = combine_cues(c, DEFAULT_SETTINGS)
        for i in range(len(s)):
            print(f"| {name} #{i} | {float(s[i]):.2f} | " + " / ".join(f"{float(v):.2f}" for v in c.stack()[i]) +
                  f" | {float(m.face_px[i]):.0f} px, {float(m.blur_px[i]):.2f}, {255 * float(m.noise[i]):.1f}, "
                  f"{float(m.blockiness[i]):.2f} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n| timing (score only, 512 px crops; load average {load:.1f}) | wall ms / face | CPU ms / face |\n|---|---|---|")
    for label, ms, cpu_ms in time_per_face(device, args.repeats):
        print(f"| {label} | {ms:.2f} | {cpu_ms:.2f} |")
    if args.tune:
        print("\nBest settings of the grid search (worst rho, worst separation, mean separation):")
        for row in tune(measures, names):
            print(row)


if __name__ == "__main__":
    main()
