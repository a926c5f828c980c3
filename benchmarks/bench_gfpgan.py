"""Per-face CPU time of FaceMend's GFPGANv1Clean vs spandrel's GFPGAN on the same weights, and bf16 quality.

Both networks get the same state dict (the official v1.3/v1.4 layout; seeded random weights
unless ``--model`` names a real checkpoint), the same aligned face (``tests/data``, ``--batch``
copies) and the stored noise (``randomize_noise=False``). Rows, timed in interleaved rounds in
one process (fair when the load changes; the ratios are what counts on a shared machine):

- spandrel fp32 / spandrel bf16: spandrel's module called directly, bf16 = CPU autocast;
- ours fp32 / ours bf16: the node's path, ``runtime.ManagedModel`` + ``model_loaders.restore_batch``
  (bf16 = weights stored in bf16, channels-last, autocast, fp32 retry on NaN/Inf);

with each time relative to spandrel fp32 and the PSNR of each output against ours fp32 (on the
``[0, 1]`` image). The header says whether this CPU has native bf16 (AVX512-BF16/AMX) and the load.

    python benchmarks/bench_gfpgan.py [--batch 1] [--repeats 3] [--threads N] [--model GFPGANv1.4.pth] [--all]

``--all`` adds fp32/bf16 rows for FaceMend's original GFPGANv1 and GFPGANBilinear (no spandrel
counterpart).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "tests" / "data" / "astronaut_face_512.png"


@contextlib.contextmanager
def precision(dtype: torch.dtype) -> Iterator[None]:
    if dtype == torch.float32:
        yield
    else:
        with torch.autocast("cpu", dtype=dtype):
            yield


def face_batch(n: int) -> torch.Tensor:
    """The aligned astronaut face, ``(n, 3, 512, 512)`` RGB in ``[0, 1]``."""
    import cv2

    bgr = cv2.imread(str(FACE), cv2.IMREAD_COLOR)
    rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div(255)
    return rgb.unsqueeze(0).expand(n, -1, -1, -1).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float().clamp(0, 1) - b.float().clamp(0, 1)).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def timed(fns: dict[str, Callable[[], torch.Tensor]], repeats: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Warm each up once, then ``repeats`` interleaved rounds; median seconds per call and last outputs."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, torch.Tensor] = {}
    for k, fn in fns.items():
        outs[k] = fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1, help="faces per call")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--model", default=None, help="a real GFPGANv1Clean checkpoint (v1.2/v1.3/v1.4) instead of random weights")
    ap.add_argument("--all", action="store_true", help="also time FaceMend's gfpgan_v1 and gfpgan_bilinear")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from facemend.archs.gfpgan import GFPGANv1, GFPGANv1Clean
    from facemend.model_loaders import load_model
    from facemend.model_loaders import restore_batch
    from facemend.runtime import ManagedModel, cpu_supports_bf16

    torch.manual_seed(0)
    sd = load_model(args.model).module.state_dict() if args.model else GFPGANv1Clean().state_dict()
    x = face_batch(args.batch)
    bf16 = torch.bfloat16

    ours32 = ManagedModel(load_model(sd), precision="fp32")
    ours16 = ManagedModel(load_model(sd), precision="bf16")
    assert ours32.model.arch == "gfpgan_clean", ours32.model.arch
    fns: dict[str, Callable[[], torch.Tensor]] = {}
    try:
        import spandrel

        net = spandrel.ModelLoader().load_from_state_dict(sd).model.eval()

        def spandrel_run(dtype: torch.dtype) -> Callable[[], torch.Tensor]:
            def run() -> torch.Tensor:
                with torch.inference_mode(), precision(dtype):
                    return ((net(x * 2 - 1, return_rgb=False, randomize_noise=False)[0].float() + 1) / 2).clamp(0, 1)

            return run

        fns[f"spandrel {spandrel.__version__} fp32"] = spandrel_run(torch.float32)
        fns[f"spandrel {spandrel.__version__} bf16 (autocast)"] = spandrel_run(bf16)
    except ImportError:
        print("(spandrel not installed: no spandrel rows)")
    fns["FaceMend fp32"] = lambda: restore_batch(ours32, x)
    fns["FaceMend bf16 (bf16 weights, channels-last)"] = lambda: restore_batch(ours16, x)
    times, outs = timed(fns, args.repeats)
    base_key = next((k for k in fns if k.startswith("spandrel") and k.endswith("fp32")), "FaceMend fp32")
    ref = outs["FaceMend fp32"]

    rows: list[tuple[str, str, str, str]] = []
    for k, t in times.items():
        p = psnr(outs[k], ref)
        rows.append((k, f"{t / args.batch:.3f}", f"{t / times[base_key]:.2f}x", "(reference)" if k == "FaceMend fp32" else f"{p:.1f} dB"))
    if args.all:
        for name, module in (
            ("FaceMend gfpgan_v1", GFPGANv1(channel_multiplier=1)),
            ("FaceMend gfpgan_bilinear", GFPGANv1(channel_multiplier=2, resample="bilinear")),
        ):
            module.eval().requires_grad_(False)
            xn = x * 2 - 1

            def run(dtype: torch.dtype, module: torch.nn.Module = module, xn: torch.Tensor = xn) -> Callable[[], torch.Tensor]:
                def f() -> torch.Tensor:
                    with torch.inference_mode(), precision(dtype):
                        return ((module(xn).float() + 1) / 2).clamp(0, 1)

                return f

            t2, o2 = timed({"fp32": run(torch.float32), "bf16": run(bf16)}, args.repeats)
            rows.append((f"{name} fp32 (random weights)", f"{t2['fp32'] / args.batch:.3f}", f"{t2['fp32'] / times[base_key]:.2f}x", ""))
            rows.append((f"{name} bf16 autocast (random weights)", f"{t2['bf16'] / args.batch:.3f}", f"{t2['bf16'] / times[base_key]:.2f}x",
                         f"{psnr(o2['bf16'], o2['fp32']):.1f} dB vs its fp32"))

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"GFP-GAN per-face CPU time, 512x512 aligned face, batch {args.batch}, median of {args.repeats} interleaved rounds, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"native bf16 (AVX512-BF16/AMX): {cpu_supports_bf16()}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n")
    print(f"| network | s / face | vs {base_key} | PSNR vs FaceMend fp32 |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {' | '.join(r)} |")
    print(f"\ncommand: {shlex.join([sys.executable, *sys.argv])}")


if __name__ == "__main__":
    main()
