"""Per-face CPU time of VQFR v1 / v2 in fp32 and bf16 autocast, and bf16-vs-fp32 PSNR.

Runs on the astronaut's aligned 512 face crop (tests/data). Without ``--v1``/``--v2`` checkpoints
it uses seeded random weights in the official layouts (tests/golden/vqfr/*_layout.json): timings
are the same as for the real weights, PSNR is only indicative (real weights give smoother maps).

    python benchmarks/bench_vqfr.py [--v1 VQFR_v1-33a1fac5.pth] [--v2 VQFR_v2.pth]
        [--repeats 2] [--threads N] [--fidelity 0 0.5] [--dcn auto|torch] [--channels-last] [--fast-codes]

Prints a markdown table and the command line.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _import_facemend():
    try:
        import facemend  # noqa: F401
    except ImportError:  # running from a checkout without an install: the checkout is the package
        sys.path.insert(0, str(ROOT.parent))
        if ROOT.name != "facemend":
            raise SystemExit("install the package (pip install -e .) or put a 'facemend' link to the checkout on PYTHONPATH")


def face_crop() -> torch.Tensor:
    """``(1, 3, 512, 512)`` RGB in [0, 1]: the stored aligned astronaut face."""
    import cv2

    bgr = cv2.imread(str(ROOT / "tests" / "data" / "astronaut_face_512.png"), cv2.IMREAD_COLOR)
    return torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def load(arch: str, path: str | None):
    from facemend.model_loaders import load_model

    if path:
        return load_model(path)
    sys.path.insert(0, str(ROOT / "tests"))
    from fm_testing.weights import load_layout, seeded_state_dict

    return load_model(seeded_state_dict(load_layout(f"vqfr/{arch}_layout.json"), {"vqfr_v1": 1001, "vqfr_v2": 2002}[arch]))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        out = fn()  # warm-up (oneDNN primitive creation)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
    return best * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--v1", help="VQFR_v1-33a1fac5.pth (default: seeded random weights)")
    ap.add_argument("--v2", help="VQFR_v2.pth (default: seeded random weights)")
    ap.add_argument("--arch", nargs="+", default=["vqfr_v1", "vqfr_v2"], choices=["vqfr_v1", "vqfr_v2"])
    ap.add_argument("--fidelity", nargs="+", type=float, default=[0.0, 0.5], help="v2 fidelity values")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = PyTorch default)")
    ap.add_argument("--dcn", choices=["auto", "torch"], default="auto", help="torch = pure-PyTorch deformable conv")
    ap.add_argument("--channels-last", action="store_true", help="run in channels_last memory format")
    ap.add_argument("--fast-codes", action="store_true", help="bf16: run the encoder in bf16 too (precise_codes=False)")
    args = ap.parse_args()
    _import_facemend()
    from facemend.archs.vqfr.layers import ModulatedDeformConv
    from facemend.runtime.precision import cpu_supports_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    x = face_crop()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    rows = []
    for arch in args.arch:
        model = load(arch, args.v1 if arch == "vqfr_v1" else args.v2)
        model.module.to(memory_format=fmt)
        model.module.precise_codes = not args.fast_codes
        for m in model.module.modules():
            if isinstance(m, ModulatedDeformConv):
                m.use_torchvision = False if args.dcn == "torch" else None
        for fid in args.fidelity if arch == "vqfr_v2" else [None]:
            kw = {} if fid is None else {"fidelity": fid}
            t32, y32 = timed(lambda: model(x, **kw), args.repeats)

            def bf16():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(x, **kw)

            t16, y16 = timed(bf16, args.repeats)
            rows.append((arch, "-" if fid is None else f"{fid:g}", t32, t16, t32 / t16, psnr(y16, y32)))
        del model

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU bf16 native: {cpu_supports_bf16()}, "
          f"dcn: {args.dcn}, memory format: {'channels_last' if args.channels_last else 'contiguous'}, "
          f"bf16 encoder/code choice: {'bf16' if args.fast_codes else 'fp32'}, "
          f"weights: {'checkpoint' if (args.v1 or args.v2) else 'seeded random (official layouts)'}\n")
    print("| arch | fidelity | fp32 ms/face | bf16 ms/face | fp32/bf16 | PSNR bf16 vs fp32 (dB) |")
    print("|---|---|---|---|---|---|")
    for arch, fid, t32, t16, ratio, p in rows:
        print(f"| {arch} | {fid} | {t32:.0f} | {t16:.0f} | {ratio:.2f}x | {p:.2f} |")
    print("\ncommand: " + " ".join([Path(sys.executable).name, *sys.argv]))


if __name__ == "__main__":
    main()
