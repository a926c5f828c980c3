"""One-shot GPU check: reduced-precision quality, fp32 retry, VRAM hygiene and speed, in one run.

Meant for a lent CUDA machine (one call, under 8 minutes on an H200; see benchmarks/README.md),
and runnable on the CPU as a smoke test (``--device cpu --quick``: tiny models, small sizes, one
batch size, well under a minute). Every number comes from this process, on this device, with
seeded random weights in the official checkpoint layouts (``tests/golden``): speed does not
depend on the values, and the quality checks compare each network with itself in fp32.

Sections (each row says what was measured, the target where the issue sets one, and pass/fail):

1. precision: every architecture with an official layout in ``tests/golden`` (and GPEN when the
   registry has it), fp16 and bf16 through the node path (``ManagedModel`` + ``restore_batch``:
   weights stored in the compute dtype, channels-last, autocast) against fp32 on the same device:
   PSNR on the real aligned face, NaN/Inf, and whether the weights really were reduced.
2. fp32 retry: a forced overflow (an injected Inf in reduced precision) must trigger the fp32
   recomputation, on reloaded fp32 weights, and give the exact fp32 result.
3. VRAM: load and unload GFP-GAN through ComfyUI's model management when importable, else the
   standalone runtime: memory before / peak / after (nothing may be left behind).
4. throughput: faces/s at batch 1, 8, 32 for GFPGAN, CodeFormer, RestoreFormer++, VQFR v2 and
   GPEN, fp32/fp16/bf16, ours (node path) and spandrel where it has the network (same weights).
5. detection: RetinaFace (mobilenet0.25) frames/s on 1080p frames (needs its weights file).
6. Refusion: seconds per reverse step per megapixel (official NAFNet config).
7. end to end: 32 1080p frames, detect + restore (GFPGAN) + paste back, against facexlib's
   ``FaceRestoreHelper`` per-frame loop with the same detector and restorer networks.

Usage (from the repository root):

    python benchmarks/gpu_check.py [--device cuda] [--out gpu_check.md] [--detector PATH]
                                   [--budget 420] [--quick]

Prints one markdown table and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
FACE = ROOT / "tests" / "data" / "astronaut_face_512.png"

#: Targets the issue sets (printed next to the measured values).
TARGET_PSNR = 35.0
TARGET_FACES_PER_S = {"codeformer": 200.0, "gfpgan_clean": 300.0}
TARGET_E2E_SPEEDUP = 10.0

#: Throughput architectures (registry ids), in the issue's order.
SPEED_ARCHS = ("gfpgan_clean", "codeformer", "restoreformer_pp", "vqfr_v2", "gpen")

DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

Row = tuple[str, str, str, str, str, str]  # section, item, setting, measured, target, status


def _import_facemend() -> None:
    """Make ``import facemend`` work from a bare checkout (the checkout is the package)."""
    try:
        import facemend
        return
    except ImportError:
        pass
    link_dir = Path(tempfile.mkdtemp(prefix="facemend_pkg_"))
    (link_dir / "facemend").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(link_dir))
    import facemend  # noqa: F401


class Report:
    """Rows of the one markdown table, with a wall-clock budget for the optional sections.

    The table is rewritten to ``out`` after every section, so a run stopped by a timeout still
    leaves what it measured.
    """

    def __init__(self, budget_s: float, out: Path | None = None, header: str = "# FaceMend GPU check") -> None:
        self.rows: list[Row] = []
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.out = out
        self.header = header

    def save(self, final: bool = False) -> str:
        text = self.markdown(self.header + ("" if final else " (partial: the run did not finish)"))
        if self.out is not None:
            self.out.write_text(text)
        return text

    def add(self, section: str, item: str, setting: str, measured: str, target: str = "", status: str = "") -> None:
        self.rows.append((section, item, setting, measured, target, status))
        print(f"  {section} | {item} | {setting} | {measured} | {target} | {status}", flush=True)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def markdown(self, header: str) -> str:
        lines = [header, "", "| section | item | setting | measured | target | status |", "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def section(report: Report, name: str, min_left: float = 0.0) -> Iterator[bool]:
    """Run a section; an exception becomes an ``error`` row instead of ending the run."""
    if report.left() < min_left:
        report.add(name, "-", "-", "skipped: time budget spent", "", "skip")
        yield False
        return
    print(f"[{name}] ({report.left():.0f} s of budget left)", flush=True)
    try:
        yield True
    except Exception as e:  # noqa: BLE001 - one broken section must not hide the others
        traceback.print_exc()
        report.add(name, "-", "-", f"error: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}", "", "FAIL")
    finally:
        report.save()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` (synchronised), after ``warmup`` calls; a warm-up call that
    took over 5 s is the measurement itself (keeps slow rows inside the budget)."""
    for _ in range(warmup):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        if time.perf_counter() - t > 5.0:
            return time.perf_counter() - t
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float().clamp(0, 1) - b.float().clamp(0, 1)).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def face(size: int, n: int = 1) -> torch.Tensor:
    """The aligned astronaut face resized to ``size``, ``(n, 3, size, size)`` RGB in ``[0, 1]`` (CPU)."""
    import cv2

    bgr = cv2.imread(str(FACE), cv2.IMREAD_COLOR)
    rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    if size != rgb.shape[-1]:
        rgb = torch.nn.functional.interpolate(rgb, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return rgb.expand(n, -1, -1, -1).contiguous()


# --------------------------------------------------------------------------- models


def _gfpgan_override() -> Callable[..., Any] | None:
    """The parity tests' arch-aware weight scales for GFP-GAN layouts (sane activations), if importable."""
    try:
        sys.path.insert(0, str(ROOT / "tests" / "unit"))
        from test_gfpgan_parity import gfpgan_override  # type: ignore[import-not-found]

        return gfpgan_override
    except Exception:  # noqa: BLE001 - pytest missing: default scales
        return None


def official_models(quick: bool) -> dict[str, tuple[Any, str]]:
    """``{arch id: (RestorationModel, layout file)}``: one seeded model per architecture with a layout.

    ``quick`` builds small GFP-GAN variants instead (CPU smoke test).
    """
    from facemend.model_loaders import load_model
    from fm_testing.weights import load_layout, seeded_state_dict

    override = _gfpgan_override()
    if quick:
        from facemend.archs.gfpgan import GFPGANv1, GFPGANv1Clean

        out = {}
        for arch, module in (
            ("gfpgan_clean", GFPGANv1Clean(out_size=64, channel_multiplier=1, narrow=0.25)),
            ("gfpgan_v1", GFPGANv1(out_size=64, channel_multiplier=1, narrow=0.25, resample="fir")),
        ):
            layout = {k: tuple(v.shape) for k, v in module.state_dict().items()}
            ov = override(arch != "gfpgan_clean") if override else None
            out[arch] = (load_model(seeded_state_dict(layout, 77, ov)), "tiny 64 px variant")
        return out
    from facemend.model_loaders import default_registry

    registry = default_registry()
    models: dict[str, tuple[Any, str]] = {}
    variants = ("colorization", "inpainting", "small", "latent")  # the plain release layouts first
    for path in sorted(GOLDEN.glob("*/*.json"), key=lambda q: (any(v in q.name for v in variants), str(q))):
        if "layout" not in path.name:
            continue
        rel = str(path.relative_to(GOLDEN))
        try:
            layout = load_layout(rel)
            # the fingerprint needs shapes only: skip a second layout of an arch already built
            if registry.detect({k: torch.empty(v, device="meta") for k, v in layout.items()}).id in models:
                continue
            ov = override(not path.name.endswith("gfpgan_clean.json")) if override and "gfpgan" in rel else None
            model = load_model(seeded_state_dict(layout, 1234, ov))
        except Exception as e:  # noqa: BLE001 - e.g. an autoencoder-only layout that is no restorer
            print(f"  (layout {rel} not loadable as a restorer: {e})")
            continue
        if model.arch not in models:
            models[model.arch] = (model, rel)
    return models


def spandrel_counterpart(arch: str, model: Any) -> tuple[torch.nn.Module, Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]] | None:
    """spandrel's module for the same weights and its ``[0, 1] -> [0, 1]`` call, or ``None``."""
    try:
        import spandrel
    except ImportError:
        return None
    try:
        import spandrel_extra_arches

        spandrel_extra_arches.install()
    except Exception as e:  # noqa: BLE001 - extra arches optional (CodeFormer lives there)
        print(f"  (spandrel_extra_arches not installed: {e})")
    calls: dict[str, Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]] = {
        "gfpgan_clean": lambda m, x: (m(x * 2 - 1, return_rgb=False, randomize_noise=False)[0].float() + 1) / 2,
        "codeformer": lambda m, x: (m(x * 2 - 1, weight=0.5)[0].float() + 1) / 2,
        "restoreformer": lambda m, x: (m(x * 2 - 1)[0].float() + 1) / 2,
    }
    if arch not in calls:
        return None
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(model.module.state_dict())
    except Exception:  # noqa: BLE001 - spandrel does not know this layout
        return None
    return desc.model.eval().requires_grad_(False), calls[arch]


def controls_for(model: Any, models: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    """Controls for one deterministic, cheap call of ``model`` (few diffusion steps, fidelity 0.5)."""
    if model.family == "refusion" and model.arch != "latent_refusion":
        kw: dict[str, Any] = {"strength": 0.03, "seed": 0}
        if getattr(model.module, "img_channel", 3) != 3:
            ae = models.get("latent_refusion")
            if ae is None:
                raise RuntimeError("latent network without an autoencoder layout")
            kw["autoencoder"] = ae[0]
        return kw
    return {"fidelity": 0.5} if "fidelity" in model.spec.controls else {}


def net_size(model: Any, default: int) -> int:
    """The face size the network itself runs at (``out_size`` of GFP-GAN variants), else its spec's."""
    return int(getattr(model.module, "out_size", None) or model.spec.input_size or default)


def managed(model: Any, precision: str, device: torch.device) -> Any:
    from facemend.runtime import ManagedModel

    return ManagedModel(model, device=device, precision=precision)


def run_node_path(mm: Any, x: torch.Tensor, controls: dict[str, Any], max_chunk: int | None = None) -> torch.Tensor:
    """``restore_batch`` (the node's path) with one chunk of up to ``max_chunk`` faces."""
    from facemend.model_loaders import ControlPlan, restore_batch
    from facemend.runtime import batching

    if max_chunk is None:
        return restore_batch(mm, x, ControlPlan(controls=dict(controls or {})))
    original = batching.default_max_chunk
    batching.default_max_chunk = lambda device: max_chunk  # type: ignore[assignment]
    try:
        return restore_batch(mm, x, ControlPlan(controls=dict(controls or {})))
    finally:
        batching.default_max_chunk = original  # type: ignore[assignment]


def reduced_dtypes(device: torch.device, quick: bool) -> list[str]:
    if device.type == "cpu":
        return ["bf16"]
    return ["fp16", "bf16"]


# --------------------------------------------------------------------------- sections


def check_precision(report: Report, device: torch.device, models: dict[str, tuple[Any, str]], quick: bool) -> None:
    from facemend.model_loaders import default_registry
    from facemend.runtime import module_dtype

    if "gpen" not in {s.id for s in default_registry().specs} and not any(a.startswith("gpen") for a in models):
        report.add("precision", "gpen", "fp16/bf16", "not available (no gpen arch in the registry)", f">= {TARGET_PSNR:.0f} dB", "n/a")
    for arch, (model, layout) in models.items():
        if report.left() < 30:
            report.add("precision", arch, "-", "skipped: time budget spent", "", "skip")
            continue
        try:
            controls = controls_for(model, models)
        except RuntimeError as e:
            report.add("precision", arch, layout, f"not run: {e}", "", "n/a")
            continue
        size = net_size(model, 64 if quick else 256)
        x = face(size)
        twin = dataclasses.replace(model, module=copy.deepcopy(model.module))
        try:
            ref = run_node_path(managed(twin, "fp32", device), x, controls)
        except Exception as e:  # noqa: BLE001
            report.add("precision", arch, layout, f"error in fp32: {type(e).__name__}: {str(e)[:120]}", "", "FAIL")
            continue
        for p in reduced_dtypes(device, quick):
            mm = managed(dataclasses.replace(model, module=copy.deepcopy(model.module)), p, device)
            try:
                y = run_node_path(mm, x, controls)
            except Exception as e:  # noqa: BLE001
                report.add("precision", arch, p, f"error: {type(e).__name__}: {str(e)[:120]}", "", "FAIL")
                continue
            finite = bool(torch.isfinite(y).all())
            stored = str(module_dtype(mm.module)).replace("torch.", "")
            value = psnr(y, ref)
            ok = finite and value >= TARGET_PSNR
            report.add("precision", arch, f"{p} vs fp32 ({size} px, weights {stored})",
                       f"{value:.1f} dB, finite: {finite}, retries: {mm.weights.reloads}", f">= {TARGET_PSNR:.0f} dB", "pass" if ok else "FAIL")
            mm.unload()
            del mm
        if device.type == "cuda":
            torch.cuda.empty_cache()


def check_fp32_retry(report: Report, device: torch.device, models: dict[str, tuple[Any, str]], quick: bool) -> None:
    base = models.get("gfpgan_clean")
    if base is None:
        report.add("fp32 retry", "gfpgan_clean", "-", "no GFP-GAN model", "", "n/a")
        return
    model = base[0]
    size = net_size(model, 64)
    x = face(size)
    ref = run_node_path(managed(dataclasses.replace(model, module=copy.deepcopy(model.module)), "fp32", device), x, {})
    for p in reduced_dtypes(device, quick):
        twin = dataclasses.replace(model, module=copy.deepcopy(model.module))
        seen: list[torch.dtype] = []

        def overflow(mod: torch.nn.Module, args: Any, out: torch.Tensor, seen: list[torch.dtype] = seen) -> torch.Tensor:
            seen.append(mod.weight.dtype)
            return out * math.inf if out.dtype != torch.float32 else out

        handle = twin.module.final_conv.register_forward_hook(overflow)
        mm = managed(twin, p, device)
        y = run_node_path(mm, x, {})
        handle.remove()
        names = [str(d).replace("torch.", "") for d in seen]
        exact = psnr(y, ref)
        ok = len(seen) == 2 and seen[1] == torch.float32 and mm.weights.reloads == 1 and math.isinf(exact)
        report.add("fp32 retry", "gfpgan_clean, forced Inf", p, f"calls on {names} weights, fp32 reloads {mm.weights.reloads}, "
                   f"PSNR vs fp32 {exact:.1f} dB", "retry on fp32 weights, exact", "pass" if ok else "FAIL")
        mm.unload()


def _memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return 0


def check_vram(report: Report, device: torch.device, models: dict[str, tuple[Any, str]]) -> None:
    if device.type != "cuda":
        report.add("VRAM", "-", "-", "n/a on the CPU", "", "n/a")
        return
    argv = sys.argv
    try:
        sys.argv = argv[:1]  # ComfyUI parses the command line when imported
        import comfy.model_management  # noqa: F401
        import folder_paths  # noqa: F401  (both loaded = the runtime uses ComfyUI's model management)

        how = "ComfyUI model management"
    except Exception:  # noqa: BLE001 - ComfyUI absent or not importable here
        how = "standalone runtime (ComfyUI not importable)"
    finally:
        sys.argv = argv
    for arch in ("gfpgan_clean", "codeformer"):
        if arch not in models:
            continue
        model = dataclasses.replace(models[arch][0], module=copy.deepcopy(models[arch][0].module))
        for p in ("fp32", "fp16"):
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            before = _memory(device)
            torch.cuda.reset_peak_memory_stats(device)
            mm = managed(model, p, device)
            loaded_dev = mm.load()
            weights = _memory(device) - before
            run_node_path(mm, face(512, 4), controls_for(model, models))
            peak = torch.cuda.max_memory_allocated(device) - before
            mm.unload()
            mm.weights.set_dtype(torch.float32)
            del mm
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            after = _memory(device) - before
            ok = abs(after) <= 1 << 20 and loaded_dev.type == "cuda"
            report.add("VRAM", arch, f"{p}, {how}", f"weights {weights / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB (4 faces), "
                       f"left after unload {after / 2**20:.1f} MiB", "nothing left behind", "pass" if ok else "FAIL")


def check_throughput(report: Report, device: torch.device, models: dict[str, tuple[Any, str]], quick: bool,
                     batches: list[int] | None = None) -> None:
    batches = batches or ([2] if quick else [1, 8, 32])
    precisions = ["fp32", "bf16"] if device.type == "cpu" else ["fp32", "fp16", "bf16"]
    for arch in SPEED_ARCHS:
        if arch == "gpen":  # whichever GPEN id the registry gives it (gpen, gpen_bfr_512, ...)
            arch = next((a for a in models if a.startswith("gpen")), arch)
        if arch not in models:
            if not quick:
                report.add("faces/s", arch, "-", "not available (no official layout under tests/golden)", "", "n/a")
            continue
        model = models[arch][0]
        size = net_size(model, 512)
        controls = controls_for(model, models)
        target = TARGET_FACES_PER_S.get(arch)
        theirs = spandrel_counterpart(arch, model)
        if theirs is not None:  # same weights, same maths: fp32 outputs must agree
            net, call = theirs
            xs = face(size)
            with torch.inference_mode():
                y_theirs = call(net.to(device), xs.to(device)).cpu()
            net.to("cpu")
            y_ours = run_node_path(managed(dataclasses.replace(model, module=copy.deepcopy(model.module)), "fp32", device), xs, controls)
            agree = psnr(y_ours, y_theirs)
            report.add("faces/s", arch, "ours vs spandrel, fp32, same weights", f"{agree:.1f} dB", ">= 60 dB (same network)",
                       "pass" if agree >= 60 else "FAIL")
        for p in precisions:
            mm = managed(dataclasses.replace(model, module=copy.deepcopy(model.module)), p, device)
            slow = False
            for b in batches:
                if slow or report.left() < 20:
                    report.add("faces/s", arch, f"ours {p} batch {b}", "skipped (time budget / slow)", "", "skip")
                    continue
                x = face(size, b)
                t = timed(lambda mm=mm, x=x, b=b, c=controls: run_node_path(mm, x, c, max_chunk=b), device, repeats=1 if quick else 3)
                slow = t > 20
                rate = b / t
                tgt = f">= {target:.0f} (batched, fp16/bf16)" if target and p != "fp32" and b > 1 else ""
                status = ("pass" if rate >= target else "FAIL") if tgt and device.type == "cuda" else ("GPU target" if tgt else "")
                report.add("faces/s", arch, f"ours {p} batch {b}", f"{rate:.1f}", tgt, status)
            mm.unload()
            del mm
            if theirs is not None:
                net, call = theirs
                net.to(device)
                dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[p]
                mode = "" if dtype == torch.float32 else " (autocast)"
                slow = False
                for b in batches:
                    if slow or report.left() < 20:
                        report.add("faces/s", arch, f"spandrel {p}{mode} batch {b}", "skipped (time budget / slow)", "", "skip")
                        continue
                    xd = face(size, b).to(device)

                    def run_theirs(xd: torch.Tensor = xd, dtype: torch.dtype = dtype, net: torch.nn.Module = net,
                                   call: Callable[..., torch.Tensor] = call) -> torch.Tensor:
                        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                            return call(net, xd).cpu()

                    t = timed(run_theirs, device, repeats=1 if quick else 3)
                    slow = t > 20
                    report.add("faces/s", arch, f"spandrel {p}{mode} batch {b}", f"{b / t:.1f}", "", "")
                net.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def detector_path(given: str | None) -> Path | None:
    if given:
        return Path(given)
    for base in (ROOT, *ROOT.parents):
        for cand in (base / ".gpu_assets" / "detection_mobilenet0.25_Final.pth", base / "shared" / "weights" / "detection_mobilenet0.25_Final.pth"):
            if cand.is_file():
                return cand
    return None


def synthetic_frames(n: int, h: int, w: int) -> torch.Tensor:
    """``(n, h, w, 3)`` IMAGE batch in ``[0, 1]``: grey frames with the astronaut's face moving."""
    import cv2
    from skimage import data

    fh, fw = int(h * 0.42), int(h * 0.36)
    crop = cv2.resize(data.astronaut()[0:300, 100:360], (fw, fh), interpolation=cv2.INTER_CUBIC)
    frames = torch.full((n, h, w, 3), 0.35)
    patch = torch.from_numpy(crop).float() / 255
    for t in range(n):
        x0 = int((w - fw) * (0.1 + 0.8 * t / max(n - 1, 1)))
        y0 = int(h * 0.25)
        frames[t, y0:y0 + fh, x0:x0 + fw] = patch
    return frames


def check_detection(report: Report, device: torch.device, weights: Path | None, quick: bool) -> None:
    if weights is None:
        report.add("detection", "retinaface_mobile0.25", "-", "not run: no detector weights (--detector)", "", "n/a")
        return
    from facemend.face.models import load_retinaface
    from facemend.face.pipeline import detect_and_align
    from facemend.nodes.images import rgb_view
    from facemend.runtime import ManagedModel

    det = load_retinaface(weights, "retinaface_mobile0.25")
    mm = ManagedModel(det, module=det.module, device=device, precision="fp32")
    n, (h, w) = (2, (360, 640)) if quick else (32, (1080, 1920))
    frames = rgb_view(synthetic_frames(n, h, w))
    result = detect_and_align(mm, frames)
    t = timed(lambda: detect_and_align(mm, frames), device, repeats=1 if quick else 3)
    report.add("detection", "retinaface_mobile0.25 + align", f"{n} frames {w}x{h}", f"{n / t:.1f} frames/s ({len(result.faces)} faces)", "", "")
    mm.module.to("cpu")


def check_refusion(report: Report, device: torch.device, quick: bool) -> None:
    from facemend.archs.refusion import (
        ConditionalNAFNet,
        RefineSettings,
        generator_noise,
        refine_images,
    )
    from facemend.runtime import compute_precision

    torch.manual_seed(0)
    if quick:
        net = ConditionalNAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1])
    else:
        net = ConditionalNAFNet(img_channel=3, width=64, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 28], dec_blk_nums=[1, 1, 1, 1])
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.02)
    net = net.eval().requires_grad_(False).to(device)
    size, steps = (64, 1) if quick else (1024, 3)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    mp = size * size / 1e6
    for p, dtype in (("fp32", torch.float32), *((("bf16", torch.bfloat16),) if device.type == "cpu" else (("fp16", torch.float16), ("bf16", torch.bfloat16)))):
        settings = RefineSettings(sampler="sde", steps=100, strength=steps / 100)

        def run(dtype: torch.dtype = dtype, settings: RefineSettings = settings) -> torch.Tensor:
            with torch.inference_mode(), compute_precision(device, dtype):
                return refine_images(net, image, settings, generator_noise([torch.Generator().manual_seed(1)]))

        t = timed(run, device, repeats=1 if quick else 2)
        report.add("Refusion", "NAFNet " + ("tiny" if quick else "official config"), f"{p}, {size}x{size}, {steps} steps",
                   f"{t / steps / mp:.3f} s/step/MP", "", "")
    net.to("cpu")


def check_end_to_end(report: Report, device: torch.device, models: dict[str, tuple[Any, str]], weights: Path | None, quick: bool) -> None:
    if weights is None or "gfpgan_clean" not in models:
        report.add("end to end", "-", "-", "not run: no detector weights or no GFP-GAN", "", "n/a")
        return
    import cv2
    import numpy as np
    from facemend.face.models import load_retinaface
    from facemend.face.pipeline import detect_and_align, paste_back
    from facemend.nodes.images import rgb_view
    from facemend.model_loaders import restore_batch
    from facemend.runtime import ManagedModel, resolve_dtype

    model = models["gfpgan_clean"][0]
    det = load_retinaface(weights, "retinaface_mobile0.25")
    det_mm = ManagedModel(det, module=det.module, device=device, precision="fp32")
    n, (h, w) = (2, (360, 640)) if quick else (32, (1080, 1920))
    image = synthetic_frames(n, h, w)
    auto = DTYPE_NAMES[resolve_dtype("auto", device)]

    results: dict[str, float] = {}
    for p in ("fp32", "auto"):
        restorer = managed(dataclasses.replace(model, module=copy.deepcopy(model.module)), p, device)

        def ours(restorer: Any = restorer) -> None:
            frames = rgb_view(image)
            found = detect_and_align(det_mm, frames)
            restored = restore_batch(restorer, found.crops)
            paste_back(frames, restored, found.faces)

        results[p] = timed(ours, device, repeats=1 if quick else 2)
        restorer.unload()

    # facexlib's per-frame loop, same detector weights, the same restorer network (fp32, as facexlib users run it)
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    net = copy.deepcopy(model.module).to(device)
    size = net_size(model, 512)
    with tempfile.TemporaryDirectory() as root:
        import shutil
        import warnings

        shutil.copy(weights, Path(root) / "detection_mobilenet0.25_Final.pth")
        # the helper loads a parsing net even with use_parse=False; a seeded one saves a download
        from facemend.face.models import build_parser

        torch.save(build_parser("parsenet").state_dict(), Path(root) / "parsing_parsenet.pth")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            helper = FaceRestoreHelper(1, face_size=512, det_model="retinaface_mobile0.25", use_parse=False, device=device, model_rootpath=root)
    bgr_frames = [cv2.cvtColor((image[t].numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR) for t in range(n)]

    def theirs() -> None:
        for bgr in bgr_frames:
            helper.clean_all()
            helper.read_image(bgr)
            helper.get_face_landmarks_5(only_center_face=False, resize=640, eye_dist_threshold=5)
            helper.align_warp_face()
            for crop in helper.cropped_faces:
                t = torch.from_numpy(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
                if size != 512:
                    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
                with torch.inference_mode():
                    out = ((net(t * 2 - 1) + 1) / 2).clamp(0, 1)
                if size != 512:
                    out = torch.nn.functional.interpolate(out, size=(512, 512), mode="bilinear", align_corners=False)
                arr = (out[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
                helper.add_restored_face(cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
            helper.get_inverse_affine(None)
            helper.paste_faces_to_input_image()

    t_theirs = timed(theirs, device, repeats=1 if quick else 2)
    for p, t in results.items():
        label = f"ours {p if p == 'fp32' else 'auto = ' + auto}"
        speedup = t_theirs / t
        report.add("end to end", f"{n} frames {w}x{h}, GFPGAN", label,
                   f"{t:.2f} s ({n / t:.1f} frames/s), facexlib loop {t_theirs:.2f} s: {speedup:.1f}x",
                   f">= {TARGET_E2E_SPEEDUP:.0f}x facexlib",
                   ("pass" if speedup >= TARGET_E2E_SPEEDUP else "FAIL") if device.type == "cuda" else "GPU target")
    net.to("cpu")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny subset (small models and sizes, one batch size)")
    ap.add_argument("--out", default="gpu_check.md", help="where the markdown table is written")
    ap.add_argument("--detector", default=None, help="detection_mobilenet0.25_Final.pth (default: .gpu_assets/ or shared/weights/)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which optional rows are skipped")
    ap.add_argument("--batches", default=None, help="faces/s batch sizes (default 1,8,32; quick: 2)")
    ap.add_argument("--sections", default="precision,retry,vram,speed,detection,refusion,e2e", help="comma-separated subset")
    args = ap.parse_args(argv)

    _import_facemend()
    sys.path.insert(0, str(ROOT / "tests"))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --device cpu --quick for the CPU smoke test", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    elif args.quick:
        torch.set_num_threads(1)  # tiny ops: threads only cost synchronisation (and a shared CPU suffers)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    header = (f"# FaceMend GPU check\n\n{name}, torch {torch.__version__}, device {device}, "
              f"{'quick subset, ' if args.quick else ''}seeded random weights in official layouts")
    report = Report(args.budget, Path(args.out), header)
    wanted = set(args.sections.split(","))
    with section(report, "models"):
        models = official_models(args.quick)
    weights = detector_path(args.detector)

    if "precision" in wanted:
        with section(report, "precision") as go:
            if go:
                check_precision(report, device, models, args.quick)
    if "retry" in wanted:
        with section(report, "fp32 retry") as go:
            if go:
                check_fp32_retry(report, device, models, args.quick)
    if "vram" in wanted:
        with section(report, "VRAM") as go:
            if go:
                check_vram(report, device, models)
    if "speed" in wanted:
        with section(report, "faces/s", min_left=30) as go:
            if go:
                check_throughput(report, device, models, args.quick,
                                 [int(b) for b in args.batches.split(",")] if args.batches else None)
    if "detection" in wanted:
        with section(report, "detection", min_left=15) as go:
            if go:
                check_detection(report, device, weights, args.quick)
    if "refusion" in wanted:
        with section(report, "Refusion", min_left=15) as go:
            if go:
                check_refusion(report, device, args.quick)
    if "e2e" in wanted:
        with section(report, "end to end", min_left=30) as go:
            if go:
                check_end_to_end(report, device, models, weights, args.quick)

    report.header += f", {time.perf_counter() - report.start:.0f} s"
    text = report.save(final=True)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
