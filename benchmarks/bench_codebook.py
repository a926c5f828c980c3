"""Per-face CPU time of FaceMend's codebook restorers vs spandrel, and bf16 quality.

For CodeFormer and RestoreFormer the same random weights go into spandrel's module and ours (through
``facemend.model_loaders.load_model``); RestoreFormer++ is ours only (spandrel lacks it). Each
network restores the real aligned face crop of ``tests/data`` (batch of ``--batch`` copies):

- spandrel fp32: spandrel's module called directly (CodeFormer with w = 0.5); with
  ``--spandrel-bf16`` also under CPU bf16 autocast (shows what bf16 costs this CPU for any code);
- ours fp32 / ours bf16: ``model(x, ...)`` under :func:`facemend.runtime.run_with_fallback`, i.e.
  exactly the node's path (bf16 = CPU autocast, fp32 retry on NaN/Inf);

and PSNR of ours bf16 against ours fp32 on the ``[0, 1]`` output. Prints a markdown table.

The header also times one 2048x2048 matmul in fp32 and in bf16: on a CPU without native bf16
(AVX512-BF16 / AMX) oneDNN emulates bf16 and it is several times slower than fp32.

Usage: python benchmarks/bench_codebook.py [--repeat 3] [--batch 1] [--threads N] [--spandrel-bf16]
       [--models codeformer,restoreformer,restoreformer_pp]
(run from the repository root with the package importable as ``facemend``).
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from facemend import runtime
from facemend.model_loaders import load_model

ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "tests" / "data" / "astronaut_face_512.png"


def face_batch(n: int) -> torch.Tensor:
    """The aligned astronaut face, ``(n, 3, 512, 512)`` RGB in ``[0, 1]``."""
    import cv2

    bgr = cv2.imread(str(FACE), cv2.IMREAD_COLOR)
    rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div(255)
    return rgb.unsqueeze(0).expand(n, -1, -1, -1).contiguous()


def timed(fns: dict[str, Callable[[], torch.Tensor]], repeat: int) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:
    """Warm each ``fn`` up once, then time them in interleaved rounds (fair under changing load).

    Returns seconds per run and the last output of each.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for k, fn in fns.items():
            outs[k] = fn()
        for _ in range(repeat):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                outs[k] = fn()
                times[k].append(time.perf_counter() - t0)
    return times, outs


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float().clamp(0, 1) - b.float().clamp(0, 1)).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def spandrel_codeformer() -> tuple[torch.nn.Module, Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]]:
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    torch.manual_seed(0)
    net = CodeFormer(connect_list=["32", "64", "128", "256"]).eval()
    return net, lambda m, x: (m(x * 2 - 1, weight=0.5)[0] + 1) / 2


def spandrel_restoreformer() -> tuple[torch.nn.Module, Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]]:
    from spandrel.architectures.RestoreFormer import RestoreFormer

    torch.manual_seed(0)
    net = RestoreFormer(head_size=8).eval()
    return net, lambda m, x: (m(x * 2 - 1)[0] + 1) / 2


def restoreformer_pp_state_dict() -> dict[str, torch.Tensor]:
    from facemend.archs.restoreformer import RestoreFormer

    torch.manual_seed(0)
    return RestoreFormer(dec_attn_levels=(4, 5), heads=4).state_dict()


def matmul_seconds(dtype: torch.dtype, size: int = 2048, repeat: int = 5) -> float:
    """Median seconds of one ``size x size`` matmul in ``dtype`` (after a warm-up)."""
    a, b = (torch.randn(size, size).to(dtype) for _ in range(2))
    a @ b
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--models", default="codeformer,restoreformer,restoreformer_pp")
    ap.add_argument("--spandrel-bf16", action="store_true", help="also time spandrel under CPU bf16 autocast")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    x = face_batch(args.batch)
    n = args.batch
    rows: list[str] = []

    def per_face(times: list[float]) -> str:
        return f"{statistics.median(times) / n:.2f} (min {min(times) / n:.2f})"

    for name in args.models.split(","):
        controls = {"fidelity": 0.5} if name == "codeformer" else {}
        fns: dict[str, Callable[[], torch.Tensor]] = {}
        if name == "restoreformer_pp":
            sd = restoreformer_pp_state_dict()
        else:
            net, call = spandrel_codeformer() if name == "codeformer" else spandrel_restoreformer()
            sd = net.state_dict()
            fns["spandrel fp32"] = lambda net=net, call=call: call(net, x)
            if args.spandrel_bf16:

                def spandrel_bf16(net: torch.nn.Module = net, call: Callable = call) -> torch.Tensor:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return call(net, x).float()

                fns["spandrel bf16 (autocast)"] = spandrel_bf16
        model = load_model(sd)
        fns["ours fp32"] = lambda: runtime.run_with_fallback(lambda: model(x, **controls), device, torch.float32)
        fns["ours bf16 (autocast)"] = lambda: runtime.run_with_fallback(lambda: model(x, **controls), device, torch.bfloat16)
        times, outs = timed(fns, args.repeat)
        ref = statistics.median(times["spandrel fp32"]) if "spandrel fp32" in times else None
        for label, t in times.items():
            ratio = f"{statistics.median(t) / ref:.2f}x" if ref else "n/a"
            fp32_ref = outs["spandrel fp32" if label.startswith("spandrel") else "ours fp32"]
            quality = f"{psnr(outs[label], fp32_ref):.1f}" if "bf16" in label else ""
            rows.append(f"| {name} | {label} | {per_face(t)} | {ratio} | {quality} |")
        del fns, model

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {n}, repeat {args.repeat}; "
          f"CPU native bf16 (AVX512-BF16/AMX): {runtime.cpu_supports_bf16()}; runtime.resolve_dtype('auto'): "
          f"{runtime.resolve_dtype('auto', device)}; 2048x2048 matmul bf16 / fp32 time: "
          f"{matmul_seconds(torch.bfloat16) / matmul_seconds(torch.float32):.1f}x")
    print()
    print("| model | path | s / face, median (min) | vs spandrel fp32 | PSNR bf16 vs the same code's fp32 (dB) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("command: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    main()
