"""Benchmark: Refusion (ConditionalNAFNet, official default config) seconds per step per megapixel.

Runs the full reverse process (network + SDE update) of FaceMend's refinement on the CPU in fp32
and bf16 autocast, with seeded random weights in the official layout (speed does not depend on
the weight values), and prints a markdown table.

    python benchmarks/bench_refusion.py [--size 256] [--steps 3] [--threads N] [--sampler sde]
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import time

import torch


def _build_nafnet() -> torch.nn.Module:
    from facemend.archs.refusion import ConditionalNAFNet

    # official Refusion config: width 64, enc [1, 1, 1, 28], middle 1, dec [1, 1, 1, 1]
    torch.manual_seed(0)
    net = ConditionalNAFNet(img_channel=3, width=64, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 28], dec_blk_nums=[1, 1, 1, 1])
    with torch.no_grad():
        for p in net.parameters():  # random non-zero weights everywhere (beta/gamma start at zero)
            p.copy_(torch.randn_like(p) * 0.02)
    return net.eval().requires_grad_(False)


def _time_steps(net: torch.nn.Module, size: int, steps: int, sampler: str, dtype: torch.dtype, repeats: int) -> float:
    from facemend.archs.refusion import RefineSettings, generator_noise, refine_images
    from facemend.runtime import compute_precision

    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    device = torch.device("cpu")
    best = float("inf")
    with torch.inference_mode(), compute_precision(device, dtype):
        warm = RefineSettings(sampler=sampler, steps=100, strength=0.01)  # one step, warms kernels up
        refine_images(net, image, warm, generator_noise([torch.Generator().manual_seed(1)]))
        settings = RefineSettings(sampler=sampler, steps=100, strength=steps / 100)
        for _ in range(repeats):
            t = time.perf_counter()
            refine_images(net, image, settings, generator_noise([torch.Generator().manual_seed(1)]))
            best = min(best, time.perf_counter() - t)
    return best / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="square image side in pixels (default 256)")
    parser.add_argument("--steps", type=int, default=3, help="reverse steps timed per run (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per dtype; the fastest counts (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--sampler", default="sde", choices=["sde", "ode", "posterior"])
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from facemend.runtime import cpu_supports_bf16

    net = _build_nafnet()
    mp = args.size * args.size / 1e6
    rows = []
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        per_step = _time_steps(net, args.size, args.steps, args.sampler, dtype, args.repeats)
        rows.append((name, per_step, per_step / mp))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux

    params = sum(p.numel() for p in net.parameters()) / 1e6
    print(f"Command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"Refusion ConditionalNAFNet (width 64, enc [1,1,1,28], {params:.1f}M parameters), sampler {args.sampler}, "
        f"{args.size}x{args.size}, CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"native bf16: {cpu_supports_bf16()}, peak RSS {peak:.0f} MiB\n"
    )
    print("| precision | s / step | s / step / MP |")
    print("|---|---|---|")
    for name, per_step, per_mp in rows:
        print(f"| {name} | {per_step:.3f} | {per_mp:.2f} |")


if __name__ == "__main__":
    main()
