"""GPEN (``gpen``) against the official implementation, yangxy/GPEN.

Layouts: ``tests/golden/gpen/layout_<file>.json`` are ``{key: shape}`` of the official
``FullGenerator`` (``face_model/gpen_model.py``) built with each released file's settings
(README/run.sh/demo.py/face_*.py of the official repository; 1024 from ModelScope's pipeline,
``FullGenerator(1024, 512, 8, 2, narrow=1)``; 2048 from run.sh, ``--in_size 2048
--channel_multiplier 2 --narrow 1``), dumped on the ``meta`` device.

Goldens (``golden_<case>.safetensors``) were made once by a scratch script kept outside the
repository (``/work/scratch/gpen/make_goldens.py``). It imported the official
``face_model/gpen_model.py`` of yangxy/GPEN at commit 2c736702983368847fb544d234a22ac7cff25802
through ``sys.path``, with the compiled ``op`` package replaced by a module holding the plain
definitions (``upfirdn2d`` = the official ``upfirdn2d_native``; ``fused_leaky_relu(x, b) =
sqrt(2) * leaky_relu(x + b, 0.2)``; ``FusedLeakyReLU`` = that with a ``bias`` parameter). For each
case of :data:`CASES` it built ``FullGenerator(size, style_dim, n_mlp, channel_multiplier,
narrow=narrow, isconcat=isconcat)``, loaded ``seeded_state_dict(layout, seed, gpen_override)``
(the functions of this file and ``fm_testing.weights``) with ``strict=True``, ran
``model(x)[0]`` in fp32 on the CPU under ``torch.no_grad`` with :func:`case_input` (the
astronaut crop ``tests/data/astronaut_face_512.png`` in ``[-1, 1]``: subsampled by 2/8 for the
256/64 px cases, pixel-repeated 2x/4x for 1024/2048), and stored of the raw ``(1, 3, S, S)``
output (about ``[-1, 1]``, not clamped) what :func:`golden_summary` keeps: a 64x64 average-pooled
image, two full-resolution windows and the mean.

Widths: the 256 and 512 cases have the official widths (GPEN-BFR-256; GPEN-BFR-512 =
GPEN-Seg2face-512). The 1024 and 2048 cases are reduced-width variants (``narrow`` 0.25 and
0.125) so the file runs in well under a minute on a CPU; their layouts are recorded beside the
official ones, and every official layout is checked for detection and strict loading. A 64 px
case covers ``isconcat=False``, ``n_mlp`` 4, ``style_dim`` 256 and ``channel_multiplier`` 1; its
seed (3110) was picked among 3105-3114 as the one whose ``[0, 1]`` output saturates least, since
the control tests below use it. Our outputs equal the goldens bit for bit (max abs 0) in fp32.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from facemend.archs.gpen import GPEN_FRAMING, SPECS, gpen_template
from facemend.model_loaders import Registry, RestorationModel, build_from_state_dict, default_registry, load_model
from fm_testing.weights import GOLDEN_DIR, load_layout, seeded_state_dict

TOL = 1e-4
SPEC = SPECS[0]


@dataclass(frozen=True)
class Case:
    """One golden: layout file, seed, the official constructor settings."""

    layout: str
    seed: int
    size: int
    channel_multiplier: float = 2
    narrow: float = 1
    isconcat: bool = True
    n_mlp: int = 8
    style_dim: int = 512

    @property
    def hparams(self) -> dict:
        return dict(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp,
                    channel_multiplier=self.channel_multiplier, narrow=self.narrow, isconcat=self.isconcat)


CASES: dict[str, Case] = {
    "bfr256": Case("GPEN-BFR-256", 3101, 256, channel_multiplier=1, narrow=0.5),
    "bfr512": Case("GPEN-BFR-512", 3102, 512),
    "s1024_narrow": Case("gpen_1024_narrow", 3103, 1024, narrow=0.25),
    "s2048_narrow": Case("gpen_2048_narrow", 3104, 2048, narrow=0.125),
    "s64_add": Case("gpen_64_add", 3110, 64, channel_multiplier=1, narrow=0.25, isconcat=False, n_mlp=4, style_dim=256),
}

#: The released generators and their settings (size, channel_multiplier, narrow).
OFFICIAL: dict[str, tuple[int, float, float]] = {
    "GPEN-BFR-256": (256, 1, 0.5),
    "GPEN-BFR-512": (512, 2, 1),
    "GPEN-BFR-1024": (1024, 2, 1),
    "GPEN-BFR-2048": (2048, 2, 1),
    "GPEN-Colorization-1024": (1024, 2, 1),
    "GPEN-Inpainting-1024": (1024, 2, 1),
    "GPEN-Seg2face-512": (512, 2, 1),
}


def gpen_override(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor | None:
    """GPEN-aware tensors for :func:`fm_testing.weights.seeded_state_dict` (keeps activations O(1)).

    Equalised weights N(0, 1) (the layers scale them at run time), the style MLP's N(0, 1) / 0.01
    (its learning-rate multiplier, as the official init), ToRGB weights x0.15; FIR kernels as the
    official ones (``[1, 3, 3, 1]`` outer product / 64, x4 after upsampling); feature-injection
    weights ``1 + 0.1 N(0, 1)``; modulation biases near 1; the constant input N(0, 1).
    """
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "kernel":
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = taps[:, None] * taps[None, :]
        k = k / k.sum()
        return k * 4 if key.endswith(("blur.kernel", "upsample.kernel")) else k
    if key.endswith("input.input"):
        return torch.randn(shape, generator=g)
    if key.endswith("noise.weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if key.endswith("modulation.bias"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if leaf != "weight" or len(shape) < 2:
        return None
    if re.fullmatch(r"generator\.style\.\d+\.weight", key):
        return torch.randn(shape, generator=g) / 0.01
    gain = 0.15 if re.search(r"to_rgbs?1?(\.\d+)?\.conv\.weight$", key) else 1.0
    return gain * torch.randn(shape, generator=g)


_SD: dict[str, dict[str, torch.Tensor]] = {}


def case_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The seeded official-layout state dict of golden case ``name`` (a fresh dict of shared tensors)."""
    if name not in _SD:
        case = CASES[name]
        _SD[name] = seeded_state_dict(load_layout(f"gpen/layout_{case.layout}.json"), case.seed, gpen_override)
    return dict(_SD[name])


def case_input(face_crop: torch.Tensor, size: int) -> torch.Tensor:
    """Network input at ``size`` px in ``[-1, 1]``: the 512 crop subsampled or pixel-repeated."""
    x = face_crop
    if size < 512:
        s = 512 // size
        x = x[..., ::s, ::s]
    elif size > 512:
        r = size // 512
        x = x.repeat_interleave(r, dim=-1).repeat_interleave(r, dim=-2)
    return x * 2 - 1


def windows(size: int) -> tuple[tuple[int, int, int], ...]:
    """Two full-resolution windows ``(top, left, side)`` stored in a golden of a ``size`` px output."""
    side = min(64, size // 4)
    return tuple((top * size // 512, left * size // 512, side) for top, left in ((200, 150), (330, 224)))


def golden_summary(raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a golden stores of a raw ``(1, 3, S, S)`` output (see the module docstring)."""
    size = raw.shape[-1]
    out = {"pool": F.avg_pool2d(raw, size // 64) if size > 64 else raw, "mean": raw.mean().reshape(1)}
    for i, (top, left, side) in enumerate(windows(size)):
        out[f"window{i}"] = raw[:, :, top : top + side, left : left + side]
    return {k: v.contiguous() for k, v in out.items()}


def load_golden(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(GOLDEN_DIR / "gpen" / f"golden_{name}.safetensors"))


def meta_state_dict(layout: str) -> dict[str, torch.Tensor]:
    """A shapes-only (``meta``) state dict of a recorded layout."""
    return {k: torch.empty(s, device="meta") for k, s in load_layout(f"gpen/layout_{layout}.json").items()}


_MODELS: dict[str, RestorationModel] = {}


def case_model(name: str) -> RestorationModel:
    """Our model of case ``name``, built through the registry entry (cached per session)."""
    if name not in _MODELS:
        _MODELS[name] = build_from_state_dict(SPEC, case_state_dict(name))
    return _MODELS[name]


def all_specs() -> list:
    """Every built-in FaceMend architecture plus GPEN's (registration is done elsewhere)."""
    return [s for s in default_registry().specs if s.id not in {g.id for g in SPECS}] + list(SPECS)


# --------------------------------------------------------------------------- detection & loading


@pytest.mark.parametrize("layout", list(OFFICIAL))
def test_official_layouts_hparams_from_shapes_and_strict_load(layout: str) -> None:
    size, cm, narrow = OFFICIAL[layout]
    sd = meta_state_dict(layout)
    hp = SPEC.read_hparams(sd)
    assert hp == dict(size=size, style_dim=512, n_mlp=8, channel_multiplier=cm, narrow=narrow, isconcat=True)
    assert SPEC.size_for(hp) == size
    with torch.device("meta"):
        module = SPEC.build(**hp)
    module.load_state_dict(sd, strict=True, assign=True)  # raises on any missing/unexpected key or shape


@pytest.mark.parametrize("layout", list(OFFICIAL) + [c.layout for c in CASES.values() if c.layout not in OFFICIAL])
def test_no_other_architecture_matches_a_gpen_layout(layout: str) -> None:
    sd = meta_state_dict(layout)
    assert [s.id for s in all_specs() if s.matches(sd)] == ["gpen"]
    assert Registry(all_specs()).detect(sd).id == "gpen"


def _other_layouts() -> list[str]:
    return sorted(str(p.relative_to(GOLDEN_DIR)) for p in GOLDEN_DIR.rglob("*layout*.json") if p.parent.name != "gpen")


@pytest.mark.parametrize("path", _other_layouts())
def test_gpen_fingerprint_matches_no_other_family(path: str) -> None:
    sd = {k: torch.empty(s, device="meta") for k, s in load_layout(path).items()}
    assert not SPEC.matches(sd)


def test_variant_hparams_are_read_from_shapes() -> None:
    for name, case in CASES.items():
        assert SPEC.read_hparams(meta_state_dict(case.layout)) == case.hparams, name


def test_load_model_with_a_registry_and_a_training_container(tmp_path) -> None:
    sd = case_state_dict("s64_add")
    model = load_model(sd, registry=Registry(all_specs()))
    assert model.arch == "gpen" and model.family == "gpen" and not model.module.training
    # the official training script saves {"g": ..., "d": ..., "g_ema": ...}; inference uses --key g_ema
    path = tmp_path / "ckpt.pth"
    g = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    torch.save({"g": g, "g_ema": sd, "d": {"convs.0.0.weight": torch.zeros(1)}}, path)
    loaded = load_model(path, registry=Registry(all_specs())).module.state_dict()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_super_resolution_layout_is_refused_clearly() -> None:
    from facemend.model_loaders import UnsupportedModelError

    # FullGenerator_SR: an encoder for a smaller input than the generator (no released file uses it)
    sd = {k: v for k, v in meta_state_dict("gpen_64_add").items() if not k.startswith("ecd4.")}
    with pytest.raises(ValueError, match="FullGenerator_SR"):
        SPEC.read_hparams(sd)
    assert not SPEC.matches(sd)
    with pytest.raises(UnsupportedModelError):
        Registry(all_specs()).detect(sd)


def test_shape_mismatch_is_a_clear_error() -> None:
    from facemend.model_loaders import UnsupportedModelError

    sd = case_state_dict("s64_add")
    sd["generator.convs.2.conv.weight"] = sd["generator.convs.2.conv.weight"][:, :, :-1]
    with pytest.raises(UnsupportedModelError, match="generator.convs.2.conv.weight"):
        build_from_state_dict(SPEC, sd)


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("name", list(CASES))
def test_matches_official_golden(name: str, face_crop: torch.Tensor) -> None:
    case = CASES[name]
    model = case_model(name)
    assert model.hparams == case.hparams
    with torch.inference_mode():
        raw = model.module(case_input(face_crop, case.size))
    ours, golden = golden_summary(raw), load_golden(name)
    assert set(ours) == set(golden)
    for key, ref in golden.items():
        err = (ours[key] - ref).abs().max().item()
        assert err <= TOL, f"{name} {key}: max abs {err:.2e}"
    assert raw.std() > 0.2 and raw.abs().max() > 0.8  # the comparison is not trivially small numbers
    if name not in ("s64_add",):
        _MODELS.pop(name)  # free the large ones


def test_network_never_draws_random_noise(face_crop: torch.Tensor) -> None:
    model = case_model("s64_add")
    x = case_input(face_crop, 64)
    with torch.inference_mode():
        torch.manual_seed(1)
        a = model.module(x)
        torch.manual_seed(2)
        b = model.module(x)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- public call and controls


@pytest.fixture(scope="module")
def small() -> tuple[RestorationModel, torch.Tensor]:
    from fm_testing.images import face_crop_512

    return case_model("s64_add"), face_crop_512()[..., ::8, ::8].contiguous()


def test_public_call_takes_and_returns_0_1_images(small) -> None:
    model, x01 = small
    with torch.inference_mode():
        y = model(x01)
        raw = model.module(x01 * 2 - 1)
    assert y.shape == x01.shape and y.min() >= 0 and y.max() <= 1
    assert (y - ((raw + 1) / 2).clamp(0, 1)).abs().max().item() <= 1e-6
    assert 0.05 < y.mean() < 0.95 and y.std() > 0.05 and (y - x01).abs().mean() > 0.05


def test_other_sizes_are_resized_to_the_network_and_back(small) -> None:
    model, x01 = small
    big = F.interpolate(x01, size=(128, 128), mode="bicubic", align_corners=False).clamp(0, 1)
    with torch.inference_mode():
        y = model(big)
        direct = model(F.interpolate(big, size=(64, 64), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1))
    assert y.shape == big.shape
    back = F.interpolate(y, size=(64, 64), mode="bicubic", antialias=True, align_corners=False)
    assert (back - direct).abs().mean() < 0.05


def test_strength_zero_returns_the_input_and_strength_blends_linearly(small) -> None:
    model, x01 = small
    with torch.inference_mode():
        zero = model(x01, strength=0.0)
        full = model(x01)
        half = model(x01, strength=0.5)
        quarter = model(x01, strength=0.25)
    assert torch.equal(zero, x01) and zero.data_ptr() != x01.data_ptr()
    assert (half - (0.5 * full + 0.5 * x01)).abs().max().item() <= 1e-6  # official addWeighted(ef, a, of, 1 - a)
    assert (quarter - (0.25 * full + 0.75 * x01)).abs().max().item() <= 1e-6
    assert (full - x01).abs().mean() > 0.05


def test_per_face_strength_tensor_equals_per_face_floats(small) -> None:
    model, x01 = small
    batch = torch.cat([x01, x01.flip(-1), x01.flip(-2)])
    with torch.inference_mode():
        both = model(batch, strength=torch.tensor([0.0, 0.3, 1.0]))
        each = torch.cat([model(batch[i : i + 1], strength=s) for i, s in enumerate((0.0, 0.3, 1.0))])
    assert (both - each).abs().max().item() <= 1e-5
    assert torch.equal(both[:1], batch[:1])


@pytest.mark.parametrize("bad", [-0.1, 1.5, torch.tensor([0.5, 2.0])])
def test_strength_outside_0_1_is_refused(small, bad) -> None:
    model, x01 = small
    with pytest.raises(ValueError, match="strength"):
        model(torch.cat([x01, x01]), strength=bad)


def test_normalize_false_feeds_0_1_as_official_seg2face(small) -> None:
    model, x01 = small
    with torch.inference_mode():
        y = model(x01, normalize=False)
        raw = model.module(x01)
    assert (y - raw.clamp(0, 1)).abs().max().item() <= 1e-6


def test_inputs_are_not_mutated(small) -> None:
    model, x01 = small
    before = x01.clone()
    with torch.inference_mode():
        model(x01, strength=0.5)
    assert torch.equal(x01, before)


# --------------------------------------------------------------------------- framing and entry


#: ``get_reference_facial_points((512, 512), inner_padding_factor=0.25, outer_padding=(0, 0),
#: default_square=True)`` of the official ``align_faces.py`` (commit 2c73670), computed once.
OFFICIAL_TEMPLATE_512 = (
    (202.040684, 242.883963), (309.430246, 242.289981), (256.0768, 303.95917),
    (211.959775, 366.828195), (300.891125, 366.33631),
)


def test_framing_is_the_official_gpen_template() -> None:
    assert SPEC.framing is GPEN_FRAMING
    assert GPEN_FRAMING.name == "gpen" and GPEN_FRAMING.fit == "least-squares"
    ours = torch.tensor(GPEN_FRAMING.template_512, dtype=torch.float64)
    assert (ours - torch.tensor(OFFICIAL_TEMPLATE_512, dtype=torch.float64)).abs().max() < 1e-4
    half = torch.tensor(gpen_template(256), dtype=torch.float64)
    assert (half * 2 - ours).abs().max() < 1e-4  # the template scales with the crop


def test_entry_basics() -> None:
    assert SPEC.id == "gpen" and SPEC.family == "gpen"
    assert set(SPEC.controls) == {"strength", "normalize"}
    assert "non-commercial" in SPEC.licence
    assert SPEC.size_for({"size": 1024}) == 1024


def test_catalog_lists_every_released_generator() -> None:
    from facemend.model_loaders import find_known, known_models

    rows = [m for m in known_models("facerestore_models") if m.arch == "gpen"]
    assert {m.name for m in rows} == {
        "GPEN-BFR-256.pth", "GPEN-BFR-512.pth", "GPEN-Colorization-1024.pth", "GPEN-Inpainting-1024.pth",
        "GPEN-Seg2face-512.pth",
        "pytorch_model.pt", "pytorch_model-2048.pt",  # GPEN-BFR-1024 and -2048 as ModelScope names them
    }
    for m in rows:
        assert find_known(m.name) is m and "non-commercial" in m.licence and (m.url or m.page)
        assert m.url is None or m.url.startswith("https://") and "?" not in m.url


# --------------------------------------------------------------------------- reduced precision


def _tiny(isconcat: bool) -> RestorationModel:
    """A fresh 64 px, narrow 0.25 model with seeded weights (fresh: a test may cast it)."""
    from facemend.archs.gpen import GPEN

    with torch.device("meta"):
        layout = {k: tuple(v.shape) for k, v in GPEN(size=64, channel_multiplier=1, narrow=0.25, isconcat=isconcat).state_dict().items()}
    return build_from_state_dict(SPEC, seeded_state_dict(layout, 77, gpen_override))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("isconcat", [True, False], ids=["concat", "add"])
def test_autocast_reduced_precision_is_finite_and_close(isconcat: bool, dtype: torch.dtype, face_crop: torch.Tensor) -> None:
    model = _tiny(isconcat)
    x = face_crop[..., ::8, ::8]
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cpu", dtype=dtype):
            y = model(x)
    diff = (y.float() - ref).abs()
    assert torch.isfinite(y).all() and diff.max() > 0  # it really ran in reduced precision
    assert diff.mean() < 0.01 and diff.max() < 0.15, (diff.mean(), diff.max())


def test_runs_with_bf16_weights(face_crop: torch.Tensor) -> None:
    model = _tiny(True)
    x = face_crop[..., ::8, ::8]
    with torch.inference_mode():
        ref = model(x)
        model.module.to(torch.bfloat16)  # the stored FIR kernels are buffers and follow the module
        y = model(x.to(torch.bfloat16), strength=0.5)
    assert y.dtype == torch.bfloat16 and (y.float() - (0.5 * ref + 0.5 * x)).abs().mean() < 0.02
