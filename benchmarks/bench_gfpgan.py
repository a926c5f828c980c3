"""Per-face CPU time of FaceMend's GFPGANv1Clean vs spandrel's GFPGAN on the same weights.

Both networks get the same state dict (the official v1.3/v1.4 layout; seeded random weights
unless ``--model`` names a real checkpoint), the same 512x512 input and the stored noise
(``randomize_noise=False``), and run one after the other in this process, in fp32 and under
CPU bf16 autocast. Prints a markdown table and the command line.

    python benchmarks/bench_gfpgan.py [--batch 1] [--repeats 3] [--threads N] [--model GFPGANv1.4.pth] [--all]

``--all`` adds rows for FaceMend's original GFPGANv1 and GFPGANBilinear (no spandrel counterpart).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch


@contextlib.contextmanager
def precision(dtype: torch.dtype) -> Iterator[None]:
    if dtype == torch.float32:
        yield
    else:
        with torch.autocast("cpu", dtype=dtype):
            yield


def time_per_face(fn: Callable[[], torch.Tensor], dtype: torch.dtype, batch: int, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds per face over ``repeats`` calls after one warm-up, and the last output."""
    with torch.inference_mode(), precision(dtype):
        out = fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times) / batch, out.float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1, help="faces per call")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per row (median reported)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--model", default=None, help="a real GFPGANv1Clean checkpoint (v1.2/v1.3/v1.4) instead of random weights")
    ap.add_argument("--all", action="store_true", help="also time FaceMend's gfpgan_v1 and gfpgan_bilinear")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from facemend.archs.gfpgan import GFPGANv1, GFPGANv1Clean
    from facemend.model_loaders import load_model

    try:
        import spandrel
    except ImportError:
        spandrel = None

    torch.manual_seed(0)
    sd = load_model(args.model).module.state_dict() if args.model else GFPGANv1Clean().state_dict()
    ours = load_model(sd)
    assert ours.arch == "gfpgan_clean", ours.arch
    x = torch.rand(args.batch, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    xn = x * 2 - 1

    rows: list[tuple[str, str, float, str]] = []
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    ref_out: dict[str, torch.Tensor] = {}
    for pname, dtype in dtypes.items():
        t, y = time_per_face(lambda: ours.module(xn), dtype, args.batch, args.repeats)
        ref_out[f"ours-{pname}"] = y
        note = "" if pname == "fp32" else f"max abs diff vs fp32 {(y - ref_out['ours-fp32']).abs().max().item():.1e} (output range ~[-1, 1])"
        rows.append(("FaceMend gfpgan_clean", pname, t, note))
        if spandrel is not None:
            desc = spandrel.ModelLoader().load_from_state_dict(sd)
            net = desc.model.eval()
            t, y2 = time_per_face(lambda: net(xn, return_rgb=False, randomize_noise=False)[0], dtype, args.batch, args.repeats)
            diff = (y2 - ref_out[f"ours-{pname}"]).abs().max().item()
            rows.append((f"spandrel {spandrel.__version__} GFPGAN", pname, t, f"max abs diff vs FaceMend {diff:.1e}"))
            del net, desc
    if args.all:
        for name, module in (
            ("FaceMend gfpgan_v1", GFPGANv1(channel_multiplier=1)),
            ("FaceMend gfpgan_bilinear", GFPGANv1(channel_multiplier=2, resample="bilinear")),
        ):
            module.eval()
            for pname, dtype in dtypes.items():
                t, _ = time_per_face(lambda: module(xn), dtype, args.batch, args.repeats)
                rows.append((name, pname, t, "random weights"))

    from facemend.runtime import cpu_supports_bf16  # AVX512-BF16/AMX, not oneDNN's emulation

    print(f"GFP-GAN per-face CPU time, 512x512, batch {args.batch}, median of {args.repeats}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"native bf16: {cpu_supports_bf16()}\n")
    print("| network | precision | s / face | note |")
    print("|---|---|---:|---|")
    for name, pname, t, note in rows:
        print(f"| {name} | {pname} | {t:.3f} | {note} |")
    print(f"\ncommand: {shlex.join([sys.executable, *sys.argv])}")


if __name__ == "__main__":
    main()
