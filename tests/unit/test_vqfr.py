"""VQFR v1 / v2: fingerprints, hyper-parameters from shapes, official containers, fidelity
handling, and numerical parity with the official implementation.

Goldens: ``tests/golden/vqfr/vqfr_goldens.safetensors`` and the layouts
``vqfr_v1_layout.json`` / ``vqfr_v2_layout.json`` (official ``state_dict()`` key -> shape) were
made ONCE by a scratch script kept outside the repository. It imported the official modules of
TencentARC/VQFR at commit 239c77a78152473eca83270c40be083bb0ae0f4a via ``sys.path`` (stub
packages for ``vqfr``/``vqfr.utils``/``vqfr.archs``, ``timm.models.layers.trunc_normal_`` (init only)
and ``sklearn.cluster`` (training-time k-means only)) and built them with the official test
configurations (``options/test/VQFR/test_vqfr_v1.yml``: ``VQFRv1`` with an
``L2VectorQuantizerKmeans`` at Level_32; ``test_vqfr_v2.yml`` / ``vqfr/demo_util.py``: ``VQFRv2``
with "Predict" code selection). Deformable convolution: the official ``DCNv2Pack.forward`` calls
``torchvision.ops.deform_conv2d`` itself whenever torchvision >= 0.9, so the mmcv/basicsr CUDA
kernel was never involved (torchvision 0.28 was used; no substitution was needed).

Weights: :func:`fm_testing.weights.seeded_state_dict` over each layout, seed 1001 (v1) and 2002 (v2),
loaded into the official modules with ``strict=True``. Input: the ``face_crop`` fixture (the
astronaut's FFHQ-aligned 512 crop, RGB), normalised like the official demo (``(x - 0.5) / 0.5``).
Outputs: ``res["main_dec"]`` of ``VQFRv1(x)`` and of ``VQFRv2(x, fidelity_ratio=f)`` for
f = 0, 0.5, 1. The official modules ran in float64 (``.double()``) so that the goldens carry no
fp32 rounding of their own: the official fp32 runs differ from their float64 runs by 5.9e-6 (v1)
and up to 1.04e-4 (v2, whose decoder input is a channels-last view that sends the CPU kernels
down a less accurate path); ours in fp32 differ from the float64 goldens by ~3e-5 (v1) and
~6e-6 (v2). Stored in float32: the full-image mean, the 8x8 average-pooled image (3x64x64) and
three 64x64 windows at (y, x) = (224, 224), (160, 128), (0, 448), plus the nearest-code (v1) /
predicted-code (v2) indices (smallest top-2 margins: 4.3e-3 in squared distance, 1.3e-3 in logit).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from facemend.archs.vqfr import VQFRv1, VQFRv2
from facemend.model_loaders import UnsupportedModelError, load_model
from facemend.model_loaders.model import default_registry
from fm_testing.weights import GOLDEN_DIR, load_layout, seeded_state_dict

GOLDENS = GOLDEN_DIR / "vqfr" / "vqfr_goldens.safetensors"
SEEDS = {"vqfr_v1": 1001, "vqfr_v2": 2002}
LAYOUTS = {"vqfr_v1": "vqfr/vqfr_v1_layout.json", "vqfr_v2": "vqfr/vqfr_v2_layout.json"}
TOL = 1e-4

# The official test configurations (options/test/VQFR/*.yml), as our constructor arguments.
RELEASE_HPARAMS = {
    "vqfr_v1": {
        "channels": [128, 128, 256, 256, 256, 512],
        "enc_down": [1, 2, 2, 2, 2, 2],
        "dec_up": [2, 2, 2, 2, 2, 1],
        "main_up": [2, 2, 2, 2, 2],
        "enc_blocks": 2,
        "dec_blocks": 3,
        "code_dim": 256,
        "num_code": 1024,
        "inpfeat_dim": 32,
        "deformable_groups": 4,
    },
    "vqfr_v2": {
        "channels": [64, 128, 128, 256, 256, 512],
        "enc_blocks": 2,
        "enc_attention": True,
        "dec_blocks": 2,
        "dec_attention": True,
        "code_dim": 256,
        "num_code": 1024,
        "inpfeat_dim": 32,
        "deformable_groups": 4,
    },
}


def _goldens() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(GOLDENS), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _assert_matches(y: torch.Tensor, prefix: str, gold: dict[str, torch.Tensor], windows: list[list[int]]) -> float:
    """Compare a raw output ``(1, 3, 512, 512)`` with its stored summaries; return the max-abs error."""
    y = y.float()
    errs = {
        "mean": (y.mean() - gold[f"{prefix}.mean"]).abs().max().item(),
        "pooled8": (F.avg_pool2d(y, 8)[0] - gold[f"{prefix}.pooled8"]).abs().max().item(),
        "windows": (torch.stack([y[0, :, r : r + 64, c : c + 64] for r, c in windows]) - gold[f"{prefix}.windows"]).abs().max().item(),
    }
    assert max(errs.values()) < TOL, f"{prefix}: max-abs errors {errs} exceed {TOL}"
    return max(errs.values())


def _meta_sd(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Shape-only tensors (no memory) for fingerprint tests."""
    return {k: torch.empty(v, device="meta") for k, v in layout.items()}


@pytest.fixture(scope="module")
def official_sd():
    cache: dict[str, dict[str, torch.Tensor]] = {}

    def get(arch: str) -> dict[str, torch.Tensor]:
        if arch not in cache:
            cache[arch] = seeded_state_dict(load_layout(LAYOUTS[arch]), SEEDS[arch])
        return cache[arch]

    return get


# --------------------------------------------------------------------------- detection / loading


@pytest.mark.parametrize("arch", ["vqfr_v1", "vqfr_v2"])
def test_official_layout_detects_as_exactly_this_arch(arch):
    sd = _meta_sd(load_layout(LAYOUTS[arch]))
    registry = default_registry()
    assert [s.id for s in registry.specs if s.matches(sd)] == [arch]
    assert registry.detect(sd).id == arch


def test_fingerprints_exclusive_with_every_other_stored_layout():
    """Every official layout stored under tests/golden (all families) matches at most one spec,
    and a VQFR spec only ever matches a VQFR layout."""
    registry = default_registry()
    vqfr_ids = {"vqfr_v1", "vqfr_v2"}
    layouts = sorted(p for p in GOLDEN_DIR.rglob("*.json") if "layout" in p.name)
    assert len(layouts) >= 2
    for path in layouts:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
            continue
        sd = _meta_sd({k: tuple(v) for k, v in raw.items()})
        hits = [s.id for s in registry.specs if s.matches(sd)]
        assert len(hits) <= 1, f"{path.name} matches several architectures: {hits}"
        if path.parent.name != "vqfr":
            assert not vqfr_ids & set(hits), f"{path.name} (another family) matches {hits}"


def test_v1_and_v2_fingerprints_do_not_cross():
    v1 = _meta_sd(load_layout(LAYOUTS["vqfr_v1"]))
    v2 = _meta_sd(load_layout(LAYOUTS["vqfr_v2"]))
    specs = {s.id: s for s in default_registry().specs}
    assert not specs["vqfr_v1"].matches(v2)
    assert not specs["vqfr_v2"].matches(v1)
    # A union of both key sets must not silently load as either one.
    both = {**v1, **v2}
    hits = [s.id for s in default_registry().specs if s.matches(both)]
    assert len(hits) == 2  # ... so detect() refuses it as ambiguous
    with pytest.raises(UnsupportedModelError, match="several architectures"):
        default_registry().detect(both)


@pytest.mark.parametrize("arch", ["vqfr_v1", "vqfr_v2"])
def test_release_hparams_read_from_shapes(arch, official_sd):
    model = load_model(official_sd(arch))
    assert model.arch == arch and model.family == "codebook"
    assert model.hparams == RELEASE_HPARAMS[arch]
    assert model.licence == "Apache-2.0"
    assert model.spec.controls == (("fidelity",) if arch == "vqfr_v2" else ())


@pytest.mark.parametrize("arch", ["vqfr_v1", "vqfr_v2"])
@pytest.mark.parametrize("container", ["params_ema", "params"])
def test_official_container_file_loads_strictly(arch, container, official_sd, tmp_path: Path):
    sd = official_sd(arch)
    path = tmp_path / ("VQFR_v1-33a1fac5.pth" if arch == "vqfr_v1" else "VQFR_v2.pth")
    torch.save({container: sd}, path)
    model = load_model(path)
    path.unlink()
    assert model.arch == arch
    loaded = model.module.state_dict()
    assert loaded.keys() == sd.keys()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


@pytest.mark.parametrize("arch", ["vqfr_v1", "vqfr_v2"])
def test_missing_or_extra_keys_are_refused(arch, official_sd):
    sd = dict(official_sd(arch))
    branch = "main_decoder" if arch == "vqfr_v1" else "main_branch"
    extra = {**sd, f"{branch}.unknown.weight": torch.zeros(1)}
    with pytest.raises(UnsupportedModelError, match="unexpected"):
        load_model(extra)
    dropped = {k: v for k, v in sd.items() if ".offset_conv2.0.bias" not in k}
    with pytest.raises(UnsupportedModelError, match="missing"):
        load_model(dropped)


def test_codebook_at_an_unsupported_level_is_refused(official_sd):
    sd = {k.replace("quantize_dict.Level_32", "quantize_dict.Level_16"): v for k, v in official_sd("vqfr_v1").items()}
    with pytest.raises(UnsupportedModelError, match="coarsest level"):
        load_model(sd)


# --------------------------------------------------------------------------- parity (official goldens)


def test_v1_matches_official(official_sd, face_crop):
    gold, meta = _goldens()
    windows = json.loads(meta["windows"])
    assert json.loads(meta["seeds"])["v1"] == SEEDS["vqfr_v1"]
    model = load_model(official_sd("vqfr_v1"))
    x = face_crop * 2 - 1
    codes: list[torch.Tensor] = []
    hook = model.module.codebook.register_forward_hook(lambda _m, _a, out: codes.append(out[1]))
    with torch.inference_mode():
        y = model.module(x)
    hook.remove()
    assert torch.equal(codes[0], gold["v1.indices"]), "nearest-code indices differ from the official ones"
    _assert_matches(y, "v1.main", gold, windows)


def test_v2_matches_official_at_several_fidelities(official_sd, face_crop):
    gold, meta = _goldens()
    windows = json.loads(meta["windows"])
    assert json.loads(meta["seeds"])["v2"] == SEEDS["vqfr_v2"]
    model = load_model(official_sd("vqfr_v2"))
    x = face_crop * 2 - 1
    logits: list[torch.Tensor] = []
    hook = model.module.feat2index.register_forward_hook(lambda _m, _a, out: logits.append(out))
    with torch.inference_mode():
        for f in (0.0, 0.5, 1.0):
            y = model.module(x, fidelity=f)
            assert torch.equal(logits[-1].argmax(-1), gold["v2.indices"]), "predicted codes differ from the official ones"
            _assert_matches(y, f"v2.f{f:g}.main", gold, windows)
    hook.remove()


# --------------------------------------------------------------------------- small configs (fast)


def _small_v1() -> VQFRv1:
    return VQFRv1(
        channels=[32, 32, 64], enc_down=[1, 2, 2], dec_up=[2, 2, 1], main_up=[2, 2], enc_blocks=1, dec_blocks=2,
        code_dim=16, num_code=48, inpfeat_dim=8, deformable_groups=2,
    )


def _small_v2() -> VQFRv2:
    return VQFRv2(
        channels=[32, 64, 64], enc_blocks=1, enc_attention=True, dec_blocks=2, dec_attention=False,
        code_dim=16, num_code=40, inpfeat_dim=8, deformable_groups=2,
    )


def _randomised(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    layout = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    return seeded_state_dict(layout, seed)


@pytest.mark.parametrize("make,arch", [(_small_v1, "vqfr_v1"), (_small_v2, "vqfr_v2")])
def test_other_configurations_round_trip_through_shapes(make, arch):
    module = make()
    sd = _randomised(module, 3)
    model = load_model(sd)
    assert model.arch == arch
    assert type(model.module) is type(module)
    assert {k: tuple(v.shape) for k, v in model.module.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and 0 <= y.min() and y.max() <= 1


@pytest.fixture(scope="module")
def small_v2_model():
    return load_model(_randomised(_small_v2(), 4))


def test_per_face_fidelity_equals_separate_calls(small_v2_model):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    fid = torch.tensor([0.0, 0.3, 1.0])
    with torch.inference_mode():
        batched = small_v2_model(x, fidelity=fid)
        single = torch.cat([small_v2_model(x[i : i + 1], fidelity=float(fid[i])) for i in range(3)])
    assert (batched - single).abs().max().item() < 1e-5
    # Each face gets its own value: swapping the ends changes faces 0 and 2 only.
    with torch.inference_mode():
        other = small_v2_model(x, fidelity=torch.tensor([1.0, 0.3, 0.0]))
    assert (other[0] - batched[0]).abs().max().item() > 1e-3
    assert (other[1] - batched[1]).abs().max().item() < 1e-5


def test_scalar_and_uniform_tensor_fidelity_agree(small_v2_model):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        a = small_v2_model(x, fidelity=0.7)
        b = small_v2_model(x, fidelity=torch.tensor([0.7, 0.7]))
        c = small_v2_model(x, fidelity=torch.tensor(0.7))
        zero = small_v2_model(x, fidelity=0.0)
        default = small_v2_model(x)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert torch.equal(zero, default), "the default fidelity is the official demo's 0"
    assert (a - zero).abs().max().item() > 1e-3


def test_zero_fidelity_skips_nothing_that_matters(small_v2_model):
    """Fidelity 0 skips the main branch; the result equals texture + 0 * main computed in full."""
    m = small_v2_model.module
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        fast = m(x, fidelity=0.0)
        enc = m.encoder(x)
        feats = m.decoder(m.quantizer.embedding(m.indices(enc)).transpose(1, 2).reshape(enc.shape))
        explicit = m.decoder.conv_out(feats[0] + 0.0 * m.main_branch(feats, m.inpfeat_extraction(x)))
    assert torch.equal(fast, explicit)


@pytest.mark.parametrize("make", [_small_v1, _small_v2])
def test_spec_maps_official_range_like_tensor2img(make):
    """``model(x01)`` = clamp((net(2 * x01 - 1) + 1) / 2, 0, 1), the official tensor2img mapping,
    and the input is left untouched."""
    model = load_model(_randomised(make(), 7))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    before = x.clone()
    with torch.inference_mode():
        out = model(x)
        raw = model.module(x * 2 - 1)
    assert torch.equal(x, before)
    assert torch.equal(out, ((raw + 1) / 2).clamp(0, 1))


@pytest.mark.parametrize("make", [_small_v1, _small_v2])
def test_batched_features_stay_contiguous(make):
    """Every conv / norm sees a contiguous NCHW map for batches > 1: channels-last views (from the
    code lookup or the attention) send CPU fp32 kernels down a path ~10x less accurate, which broke
    1e-4 parity with the official code for batched faces."""
    model = load_model(_randomised(make(), 9))
    seen: list[str] = []

    def check(mod, args, _out):
        if args[0].dim() == 4 and not args[0].is_contiguous():
            seen.append(type(mod).__name__)

    hooks = [m.register_forward_hook(check) for m in model.module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.GroupNorm))]
    with torch.inference_mode():
        model(torch.rand(3, 3, 32, 32), **({"fidelity": 0.5} if isinstance(model.module, VQFRv2) else {}))
    for h in hooks:
        h.remove()
    assert not seen, f"non-contiguous inputs reached {seen}"


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), torch.tensor([0.2, 2.0]), torch.tensor([0.1, 0.2, 0.3])])
def test_bad_fidelity_is_refused(small_v2_model, bad):
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="fidelity"):
        small_v2_model(x, fidelity=bad)


def test_v1_takes_no_fidelity_and_sizes_must_fit():
    model = load_model(_randomised(_small_v1(), 5))
    with pytest.raises(TypeError, match="fidelity"):
        model(torch.rand(1, 3, 32, 32), fidelity=0.5)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 3, 66, 64))


@pytest.mark.parametrize("make", [_small_v1, _small_v2])
def test_bf16_autocast_keeps_fp32_code_choice(make):
    """Under bf16 autocast the encoder and code search run in fp32: the same codes as in fp32."""
    model = load_model(_randomised(make(), 10))
    searcher = model.module.codebook if isinstance(model.module, VQFRv1) else model.module.feat2index
    seen: list[torch.Tensor] = []
    hook = searcher.register_forward_hook(lambda _m, _a, out: seen.append(out[1] if isinstance(out, tuple) else out.argmax(-1)))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    with torch.inference_mode():
        model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
    hook.remove()
    assert torch.equal(seen[0], seen[1])


@pytest.mark.parametrize("make", [_small_v1, _small_v2])
def test_bf16_autocast_on_cpu(make):
    model = load_model(_randomised(make(), 6))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    # A smoke bound only (random tiny nets amplify bf16 rounding and can flip codes); the
    # 512 px bf16-vs-fp32 PSNR of the release-sized nets is measured by benchmarks/bench_vqfr.py.
    mse = (y - ref).pow(2).mean().item()
    assert 10 * math.log10(1 / max(mse, 1e-12)) > 15
