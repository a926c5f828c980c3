"""GFP-GAN numerics against the official implementation (TencentARC/GFPGAN).

Reference outputs:

- ``gfpgan_clean`` (GFPGANv1Clean): compared in CI with ``spandrel`` (a test dependency), which
  ships the official GFPGANv1Clean code, called with ``randomize_noise=False``. A golden made
  with the official code is checked too.
- ``gfpgan_v1`` (GFPGANv1) and ``gfpgan_bilinear`` (GFPGANBilinear): spandrel cannot run them
  (its copy of the fused-activation op needs the compiled CUDA extension), so they are checked
  against goldens in ``tests/golden/gfpgan/golden_<name>.safetensors``.

How the goldens were made (once, by a scratch script kept outside the repository,
``/work/scratch/gfpgan/make_goldens.py``): it imported the official modules of
TencentARC/GFPGAN at commit 7552a7791caad982045a7bbe5634bbf1cd5c8679 (``gfpgan/archs/
gfpganv1_clean_arch.py``, ``gfpganv1_arch.py``, ``gfpgan_bilinear_arch.py`` and their
``stylegan2_*`` modules) and BasicSR 8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a
(``basicsr/archs/stylegan2_arch.py``; ``basicsr/ops/upfirdn2d`` on the CPU, i.e. its
pure-PyTorch ``upfirdn2d_native``) through ``sys.path``/importlib, with three stubs: BasicSR's
registry (a no-op decorator), ``default_init_weights`` (init only; every weight is then
overwritten) and the compiled ``fused_act`` op replaced by its definition
``sqrt(2) * leaky_relu(x + bias, 0.2)``. For each case it built the official model with
GFPGANer's settings (``input_is_latent=True``; ``different_w``/``sft_half``/``narrow``/
``channel_multiplier``/``out_size`` as in :data:`CASES`), loaded ``seeded_state_dict(layout,
seed, gfpgan_override(...))`` (the functions in this file and ``fm_testing.weights``) with
``strict=True``, ran ``model(x, return_rgb=False, randomize_noise=False)[0]`` in fp32 on the
CPU with ``x = face_crop * 2 - 1`` (``face_crop[..., ::s, ::s]`` for the smaller cases) and
stored, of the raw ``(1, 3, S, S)`` output (range about [-1, 1], not clamped): the 8x8
average-pooled image, two 64x64 full-resolution windows (:data:`WINDOWS`) and the mean.
The ``layout_*.json`` files are ``{key: shape}`` of the same official models' ``state_dict()``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from facemend.model_loaders import RestorationModel, load_model
from fm_testing.weights import GOLDEN_DIR, load_layout, seeded_state_dict

TOL = 1e-4

#: Full-resolution windows stored in the goldens, as (top, left) of 64x64 patches, per size.
WINDOWS = {512: ((200, 150), (330, 224)), 256: ((100, 75), (165, 112)), 128: ((50, 37), (64, 48))}


@dataclass(frozen=True)
class Case:
    """One official configuration: arch id, seed, input stride and constructor settings."""

    arch: str
    seed: int
    stride: int = 1
    hparams: dict[str, Any] = field(default_factory=dict)

    @property
    def out_size(self) -> int:
        return 512 // self.stride


#: Goldens: the three released layouts (GFPGANer settings), plus smaller variants whose
#: hyper-parameters differ in every shape-read setting.
CASES: dict[str, Case] = {
    "gfpgan_clean": Case("gfpgan_clean", 2101, 1, dict(channel_multiplier=2)),
    "gfpgan_v1": Case("gfpgan_v1", 2102, 1, dict(channel_multiplier=1)),
    "gfpgan_bilinear": Case("gfpgan_bilinear", 2103, 1, dict(channel_multiplier=2)),
    "gfpgan_v1_small": Case(
        "gfpgan_v1", 2104, 2, dict(channel_multiplier=1, narrow=0.5, sft_half=False, different_w=False)
    ),
    "gfpgan_bilinear_small": Case(
        "gfpgan_bilinear", 2105, 4, dict(channel_multiplier=2, narrow=0.5, sft_half=False, different_w=True)
    ),
}


def gfpgan_override(equalised: bool):
    """Arch-aware scales for :func:`fm_testing.weights.seeded_state_dict` (keeps activations O(1)).

    ``equalised`` (GFPGANv1/Bilinear): weights are N(0, 1) as the layers scale them at run time.
    Clean: fan-in-scaled weights. Both: the condition heads' last conv and the generator's ToRGB
    convs x0.3, noise buffers and the
    constant input N(0, 1), noise strengths 0.1 * N(0, 1), modulation and SFT-scale biases near 1.
    """

    def override(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor | None:
        leaf = key.rsplit(".", 1)[-1]
        if ".noises.noise" in key or key.endswith("constant_input.weight"):
            return torch.randn(shape, generator=g)
        if leaf == "weight" and shape == (1,):
            return 0.1 * torch.randn(shape, generator=g)
        if key.endswith("modulation.bias") or re.fullmatch(r"condition_scale\.\d+\.2\.bias", key):
            return 1.0 + 0.1 * torch.randn(shape, generator=g)
        if leaf != "weight" or len(shape) < 2:
            return None
        small = re.fullmatch(r"condition_(scale|shift)\.\d+\.2\.weight|.*to_rgbs?1?(\.\d+)?\.modulated_conv\.weight", key)
        gain = 0.3 if small else 1.0
        if equalised:
            return gain * torch.randn(shape, generator=g)
        fan_in = math.prod(shape[2:]) if len(shape) == 5 else math.prod(shape[1:])
        return torch.randn(shape, generator=g) * (gain / math.sqrt(fan_in))

    return override


def case_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The seeded official-layout state dict of golden case ``name`` (a fresh dict of shared tensors)."""
    if name not in _SD:
        case = CASES[name]
        layout = load_layout(f"gfpgan/layout_{name}.json")
        _SD[name] = seeded_state_dict(layout, case.seed, gfpgan_override(case.arch != "gfpgan_clean"))
    return dict(_SD[name])


_SD: dict[str, dict[str, torch.Tensor]] = {}


def golden_summary(raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a golden stores of a raw ``(1, 3, S, S)`` output (see the module docstring)."""
    size = raw.shape[-1]
    out = {"pool8": F.avg_pool2d(raw, 8), "mean": raw.mean().reshape(1)}
    for i, (top, left) in enumerate(WINDOWS[size]):
        out[f"window{i}"] = raw[:, :, top : top + 64, left : left + 64]
    return {k: v.contiguous() for k, v in out.items()}


def load_golden(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(GOLDEN_DIR / "gfpgan" / f"golden_{name}.safetensors"))


def case_input(face_crop: torch.Tensor, name: str) -> torch.Tensor:
    """The network input of case ``name``: the aligned face (subsampled), in ``[-1, 1]``."""
    s = CASES[name].stride
    return face_crop[..., ::s, ::s] * 2 - 1


_RAW: dict[str, torch.Tensor] = {}


def our_raw(name: str, face_crop: torch.Tensor) -> torch.Tensor:
    """Our raw ``[-1, 1]`` output for case ``name`` (computed once per test session)."""
    if name not in _RAW:
        model = load_model(case_state_dict(name))
        with torch.inference_mode():
            _RAW[name] = model.module(case_input(face_crop, name))
    return _RAW[name]


def spandrel_clean_class():
    pytest.importorskip("spandrel")
    from spandrel.architectures.GFPGAN.__arch.gfpganv1_clean_arch import GFPGANv1Clean  # noqa: PLC0415

    return GFPGANv1Clean


def reference_clean(ref: torch.nn.Module, x: torch.Tensor, transform=None, noise=None) -> torch.Tensor:
    """Run spandrel's copy of the official GFPGANv1Clean with ``randomize_noise=False``.

    ``transform`` rewrites the list of SFT conditions ``[scale_8, shift_8, scale_16, ...]`` before
    the StyleGAN2 decoder sees it (an empty list = the official decoder without any SFT);
    ``noise`` is passed to the decoder as explicit noise inputs.
    """
    dec = ref.stylegan_decoder
    original = dec.forward

    def patched(styles, conditions, **kw):
        if transform is not None:
            conditions = transform(conditions)
        if noise is not None:
            kw["noise"] = noise
        return original(styles, conditions, **kw)

    dec.forward = patched
    try:
        with torch.inference_mode():
            return ref(x, return_rgb=False, randomize_noise=False)[0]
    finally:
        del dec.forward


# --------------------------------------------------------------------------- detection & loading


@pytest.mark.parametrize("name", list(CASES))
def test_official_layouts_detect_with_hparams_from_shapes(name: str) -> None:
    case = CASES[name]
    model = load_model(case_state_dict(name))
    assert model.arch == case.arch and model.family == "gfpgan"
    expected = dict(out_size=case.out_size, num_style_feat=512, num_mlp=8, narrow=1, sft_half=True, different_w=True)
    expected.update(case.hparams)
    assert model.hparams == expected
    assert not model.module.training


@pytest.mark.parametrize("name", list(CASES))
def test_fingerprints_are_mutually_exclusive(name: str) -> None:
    from facemend.model_loaders import default_registry

    sd = case_state_dict(name)
    assert [s.id for s in default_registry().specs if s.matches(sd)] == [CASES[name].arch]


def test_v1_and_bilinear_share_keys_and_are_told_apart_by_channel_multiplier() -> None:
    v1, bl = load_layout("gfpgan/layout_gfpgan_v1.json"), load_layout("gfpgan/layout_gfpgan_bilinear.json")
    assert list(v1) == list(bl)  # same keys, same order: only shapes can separate them
    assert v1["stylegan_decoder.to_rgbs.3.modulated_conv.weight"] != bl["stylegan_decoder.to_rgbs.3.modulated_conv.weight"]
    assert load_model(case_state_dict("gfpgan_v1")).module.resample == "fir"
    assert load_model(case_state_dict("gfpgan_bilinear")).module.resample == "bilinear"
    # the rule, stated: an equalised-layout file with channel multiplier 2 is taken as bilinear
    from facemend.archs.gfpgan import GFPGANv1

    c2_original = GFPGANv1(out_size=64, channel_multiplier=2, narrow=0.25, resample="fir").state_dict()
    assert load_model(c2_original).arch == "gfpgan_bilinear"


@pytest.mark.parametrize("name", ["gfpgan_clean", "gfpgan_v1_small", "gfpgan_bilinear_small"])
def test_official_container_saved_with_torch_save_loads_params_ema(name: str, tmp_path) -> None:
    sd = case_state_dict(name)
    params = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}  # a different generator
    path = tmp_path / f"{name}.pth"
    torch.save({"params": params, "params_ema": sd}, path)
    model = load_model(path)
    assert model.arch == CASES[name].arch
    loaded = model.module.state_dict()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)  # params_ema preferred over params
    path2 = tmp_path / f"{name}_params.pth"
    torch.save({"params": params}, path2)
    assert torch.equal(load_model(path2).module.state_dict()["final_linear.weight"], params["final_linear.weight"])


def test_shape_mismatch_and_missing_keys_are_clear_errors() -> None:
    from facemend.model_loaders import UnsupportedModelError

    sd = case_state_dict("gfpgan_bilinear_small")
    broken = dict(sd)
    broken["condition_scale.1.0.weight"] = broken["condition_scale.1.0.weight"][:, :-1]
    with pytest.raises(UnsupportedModelError, match="gfpgan_bilinear"):
        load_model(broken)
    missing = {k: v for k, v in sd.items() if k != "stylegan_decoder.style_conv1.activate.bias"}
    with pytest.raises(UnsupportedModelError, match="style_conv1.activate.bias"):
        load_model(missing)


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("name", list(CASES))
def test_matches_official_golden(name: str, face_crop: torch.Tensor) -> None:
    raw = our_raw(name, face_crop)
    ours, golden = golden_summary(raw), load_golden(name)
    assert set(ours) == set(golden)
    for key, ref in golden.items():
        err = (ours[key] - ref).abs().max().item()
        assert err <= TOL, f"{name} {key}: max abs {err:.2e}"
    assert raw.abs().max() > 0.5  # the comparison is not trivially small numbers


def test_clean_matches_spandrel_official_code(face_crop: torch.Tensor) -> None:
    spandrel = pytest.importorskip("spandrel")
    sd = case_state_dict("gfpgan_clean")
    desc = spandrel.ModelLoader().load_from_state_dict(sd)
    assert type(desc.model).__name__ == "GFPGANv1Clean"
    ref = reference_clean(desc.model.eval(), case_input(face_crop, "gfpgan_clean"))
    raw = our_raw("gfpgan_clean", face_crop)
    assert (raw - ref).abs().max().item() <= TOL


CLEAN_VARIANTS = [
    dict(out_size=64, channel_multiplier=1, narrow=0.5, sft_half=False, different_w=False),
    dict(out_size=128, channel_multiplier=2, narrow=0.25, sft_half=True, different_w=True),
]


def _spandrel_clean(hp: dict[str, Any], seed: int) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    ref = spandrel_clean_class()(num_mlp=8, input_is_latent=True, **hp).eval()
    layout = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    sd = seeded_state_dict(layout, seed, gfpgan_override(False))
    ref.load_state_dict(sd, strict=True)
    return ref, sd


@pytest.mark.parametrize("hp", CLEAN_VARIANTS, ids=lambda hp: f"s{hp['out_size']}-c{hp['channel_multiplier']}-n{hp['narrow']}")
def test_clean_variants_read_from_shapes_and_match_spandrel(hp: dict[str, Any], face_crop: torch.Tensor) -> None:
    ref, sd = _spandrel_clean(hp, 31)
    model = load_model(sd)
    assert model.arch == "gfpgan_clean"
    assert model.hparams == dict(num_style_feat=512, num_mlp=8, **hp)
    s = 512 // hp["out_size"]
    x = face_crop[..., ::s, ::s] * 2 - 1
    with torch.inference_mode():
        ours = model.module(x)
    assert (ours - reference_clean(ref, x)).abs().max().item() <= TOL


# --------------------------------------------------------------------------- CS-SFT strength and noise


@pytest.fixture(scope="module")
def small_clean(face_crop: torch.Tensor):
    hp = dict(out_size=128, channel_multiplier=1, narrow=0.25, sft_half=True, different_w=True)
    ref, sd = _spandrel_clean(hp, 47)
    return ref, load_model(sd), face_crop[..., ::4, ::4]


def _scaled_conditions(strengths: list[float]):
    def transform(conditions: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for j, s in enumerate(strengths):
            out += [1 + s * (conditions[2 * j] - 1), s * conditions[2 * j + 1]]
        return out

    return transform


def test_public_call_takes_and_returns_0_1_images(small_clean) -> None:
    ref, model, x01 = small_clean
    with torch.inference_mode():
        y = model(x01)
    expected = ((reference_clean(ref, x01 * 2 - 1) + 1) / 2).clamp(0, 1)
    assert y.shape == x01.shape and y.min() >= 0 and y.max() <= 1
    assert (y - expected).abs().max().item() <= TOL
    assert 0.05 < expected.mean() < 0.95 and expected.std() > 0.05  # not a saturated image


def test_strength_zero_is_the_stylegan2_prior_alone(small_clean) -> None:
    ref, model, x01 = small_clean
    with torch.inference_mode():
        ours = model(x01, strength=0.0)
    prior = reference_clean(ref, x01 * 2 - 1, transform=lambda c: [])  # official decoder, no SFT at all
    assert (ours - ((prior + 1) / 2).clamp(0, 1)).abs().max().item() <= TOL
    with torch.inference_mode():
        paper = model(x01)
    assert (ours - paper).abs().mean() > 1e-3  # and the modulation does matter


@pytest.mark.parametrize(
    "controls, per_level",
    [
        (dict(strength=2.0), [2.0] * 5),
        (dict(strength=0.5), [0.5] * 5),
        (dict(strength=1.0, strength_coarse=0.0, strength_fine=1.5), [0.0] * 4 + [1.5]),
        (dict(strength=0.8, strength_coarse=1.25, strength_fine=0.5), [1.0] * 4 + [0.4]),
    ],
)
def test_strength_scales_the_official_sft_maps(small_clean, controls: dict[str, float], per_level: list[float]) -> None:
    ref, model, x01 = small_clean
    with torch.inference_mode():
        raw = model.module(x01 * 2 - 1, strengths=_strengths(model, controls))
    assert (raw - reference_clean(ref, x01 * 2 - 1, transform=_scaled_conditions(per_level))).abs().max().item() <= TOL


def _strengths(model, controls: dict[str, float]):
    from facemend.archs.gfpgan import level_strengths

    return level_strengths(model.module.out_size, **controls)


def test_per_face_strength_tensor_equals_per_face_floats(small_clean) -> None:
    _, model, x01 = small_clean
    batch = torch.cat([x01, x01.flip(-1)])
    with torch.inference_mode():
        both = model(batch, strength=torch.tensor([0.3, 1.7]), strength_fine=torch.tensor([1.0, 0.5]))
        a = model(batch[:1], strength=0.3)
        b = model(batch[1:], strength=1.7, strength_fine=0.5)
    assert (both - torch.cat([a, b])).abs().max().item() <= TOL


def test_seeded_noise_reaches_the_official_noise_inputs(small_clean) -> None:
    from facemend.archs.gfpgan import seeded_noise

    ref, model, x01 = small_clean
    with torch.inference_mode():
        ours = model(x01, noise="random", seed=1234)
        again = model(x01, noise="random", seed=1234)
        other = model(x01, noise="random", seed=1235)
        stored = model(x01)
    expected = reference_clean(ref, x01 * 2 - 1, noise=seeded_noise(128, [1234]))
    assert (ours - ((expected + 1) / 2).clamp(0, 1)).abs().max().item() <= TOL
    assert torch.equal(ours, again)
    assert (ours - other).abs().max() > 1e-3 and (ours - stored).abs().max() > 1e-3


def test_face_noise_depends_on_face_index_not_on_batching(small_clean) -> None:
    _, model, x01 = small_clean
    batch = torch.cat([x01, x01])
    with torch.inference_mode():
        whole = model(batch, noise="random", seed=9)
        second = model(x01, noise="random", seed=9, face_index=torch.tensor([1.0]))
    assert (whole[0] - whole[1]).abs().max() > 1e-3  # two faces, two noise draws
    assert (whole[1:] - second).abs().max().item() <= 1e-5


# --------------------------------------------------------------------------- reduced precision


def _tiny(arch: str) -> RestorationModel:
    from facemend.archs.gfpgan import GFPGANv1, GFPGANv1Clean

    if arch == "gfpgan_clean":
        module = GFPGANv1Clean(out_size=64, channel_multiplier=1, narrow=0.25)
    else:
        module = GFPGANv1(out_size=64, channel_multiplier=1 if arch == "gfpgan_v1" else 2, narrow=0.25,
                          resample="fir" if arch == "gfpgan_v1" else "bilinear")
    layout = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    model = load_model(seeded_state_dict(layout, 77, gfpgan_override(arch != "gfpgan_clean")))
    assert model.arch == arch
    return model


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("arch", ["gfpgan_clean", "gfpgan_v1", "gfpgan_bilinear"])
def test_autocast_reduced_precision_is_finite_and_close(arch: str, dtype: torch.dtype, face_crop: torch.Tensor) -> None:
    model = _tiny(arch)
    x = face_crop[..., ::8, ::8]
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cpu", dtype=dtype):
            y = model(x)
    diff = (y.float() - ref).abs()
    assert torch.isfinite(y).all() and diff.max() > 0  # it really ran in reduced precision
    assert diff.mean() < 0.01 and diff.max() < 0.15, (diff.mean(), diff.max())


def test_original_runs_with_bf16_weights(face_crop: torch.Tensor) -> None:
    model = _tiny("gfpgan_v1")
    x = face_crop[..., ::8, ::8]
    with torch.inference_mode():
        ref = model(x)
        model.module.to(torch.bfloat16)  # FIR kernels (non-persistent buffers) follow the module
        y = model(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16 and (y.float() - ref).abs().mean() < 0.02


def _cpu_bf16_runs() -> bool:
    try:
        F.conv2d(torch.ones(1, 2, 4, 4, dtype=torch.bfloat16), torch.ones(2, 2, 3, 3, dtype=torch.bfloat16))
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not _cpu_bf16_runs(), reason="this CPU/torch build cannot run bf16 convolutions at all")
def test_v14_layout_bf16_on_the_cpu_keeps_35_db_on_the_real_face(face_crop: torch.Tensor) -> None:
    """The node's bf16 path (bf16 weights, channels-last, autocast) against our fp32 on the astronaut."""
    from facemend.model_loaders import restore_batch
    from facemend.runtime import ManagedModel, module_dtype

    model = load_model(case_state_dict("gfpgan_clean"))  # GFPGANv1.3/v1.4 layout, seeded weights
    ref = ((our_raw("gfpgan_clean", face_crop) + 1) / 2).clamp(0, 1)
    managed = ManagedModel(model, precision="bf16")
    y = restore_batch(managed, face_crop)
    assert module_dtype(model.module) == torch.bfloat16  # it really ran on bf16 weights
    mse = (y - ref).square().mean().item()
    psnr = 10 * math.log10(1 / mse)
    assert 35.0 <= psnr < 80.0, psnr  # close to fp32, and not secretly fp32
    assert ref.std() > 0.05  # a real image, not a flat one
