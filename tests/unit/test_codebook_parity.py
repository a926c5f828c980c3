"""Numerical parity of CodeFormer, RestoreFormer and RestoreFormer++ with the official networks.

Weights: seeded random tensors in each official layout (``tests/golden/codebook/*_layout.json``, the
``state_dict()`` key -> shape of the official modules), drawn by :func:`seeded` below. Input: the
real FFHQ-aligned face crop (``face_crop`` fixture). Tolerance: 1e-4 max abs on the ``[0, 1]`` output.

References:

- CodeFormer restoration (``w`` = 0, 0.5, 1) and colorization (official script: ``w = 0``, AdaIN):
  spandrel-extra-arches' CodeFormer module, called directly (its descriptor fixes ``w``/AdaIN).
- RestoreFormer (GFPGAN ``RestoreFormer.pth`` = official ``RestoreFormer.ckpt`` network): spandrel's
  RestoreFormer module.
- CodeFormer inpainting and RestoreFormer++ (not in spandrel): golden outputs in
  ``tests/golden/codebook/*_golden.safetensors``, made once by a scratch script (kept outside the
  repository) that imported the official modules by file path with a two-line stub of basicsr's
  registry/logger:

  * sczhou/CodeFormer @ b33cc7d639d6545bfcccc7e0bc6ae51f24e79c2b, ``basicsr/archs/codeformer_arch.py``:
    ``CodeFormer(dim_embd=512, codebook_size=512, n_head=8, n_layers=9, connect_list=['32','64','128'])``
    loaded with ``seeded(layout, SEED_INPAINT)``, input = :func:`inpainting_input` normalised with
    ``(x - 0.5) / 0.5``, then the steps of ``inference_inpainting.py``: mask = pixels whose channel sum is
    3, ``net(x, w=1, adain=False)[0]``, ``(1 - mask) * x + mask * out``, then ``(clamp(-1, 1) + 1) / 2``.
  * wzhouxiff/RestoreFormerPlusPlus @ 59d250f45d6b11a3e620d62e6e067ca1288f93a9,
    ``RestoreFormer/modules/vqvae/vqvae_arch.py``: ``VQVAEGANMultiHeadTransformer(head_size=4,
    ex_multi_scale_num=1)`` (as ``RestoreFormer/RestoreFormer.py`` builds RestoreFormer++) loaded with
    ``seeded(layout, SEED_RFPP)``, input = the face crop normalised as above, output
    ``(clamp(net(x)[0], -1, 1) + 1) / 2``.

  Each golden stores 64x64 windows of the ``(3, 512, 512)`` output (keys ``patch_<y>_<x>``) and the
  per-channel mean of the whole image (``mean``), all fp32, computed on CPU with torch 2.13.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from fm_testing.weights import GOLDEN_DIR, default_tensor, load_layout, seeded_state_dict
from facemend.model_loaders import load_model

ATOL = 1e-4
SEED_CF = 5
SEED_COLOR = 6
SEED_INPAINT = 7
SEED_RF = 8
SEED_RFPP = 9
PATCH = 64
#: Top-left corners of the golden windows: eyes, nose/mouth (through the inpainting hole's edge), chin.
WINDOWS = ((176, 160), (240, 224), (320, 256), (400, 192))
LAYOUTS = GOLDEN_DIR / "codebook"


def seeded(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights with trained-like scales where fan-in scaling alone misbehaves.

    Plain fan-in-scaled random weights make CodeFormer's fusion layers multiply features by O(1)
    random maps at four resolutions, and the output convs emit values around +-10, so almost all of
    the image clamps away. Trained networks make small fusion corrections and output ``[-1, 1]``;
    these scales do the same: the last conv of each fusion scale/shift branch x0.1 and the final
    image conv x0.2. Everything else is :func:`fm_testing.weights.default_tensor`.
    """

    def override(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor | None:
        t = default_tensor(key, shape, g)
        if re.fullmatch(r"fuse_convs_dict\.\d+\.(scale|shift)\.2\.weight", key):
            return t * 0.1
        if key in ("generator.blocks.24.weight", "decoder.conv_out.weight"):
            return t * 0.2
        return t

    return seeded_state_dict(layout, seed, override)


def inpainting_input(face: torch.Tensor) -> torch.Tensor:
    """The face crop with two pure-white holes (over the left eye and the mouth): ``(1, 3, 512, 512)``."""
    x = face.clone()
    x[:, :, 200:248, 170:250] = 1.0
    x[:, :, 330:370, 210:300] = 1.0
    return x


def windows(img: torch.Tensor) -> dict[str, torch.Tensor]:
    """Golden-style summary of a ``(1, 3, 512, 512)`` image: 64x64 windows and the channel means."""
    out = {f"patch_{y}_{x}": img[0, :, y : y + PATCH, x : x + PATCH].contiguous() for y, x in WINDOWS}
    out["mean"] = img[0].mean(dim=(1, 2))
    return out


def _load_golden(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(LAYOUTS / name))


def _spandrel_codeformer(sd: dict[str, torch.Tensor], connect_list: list[str], codebook_size: int) -> torch.nn.Module:
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer as SpandrelCodeFormer

    net = SpandrelCodeFormer(
        dim_embd=512, n_head=8, n_layers=9, codebook_size=codebook_size, latent_size=256, connect_list=connect_list
    )
    net.load_state_dict(sd, strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def face(face_crop: torch.Tensor) -> torch.Tensor:
    return face_crop


@torch.inference_mode()
def test_codeformer_matches_spandrel_at_several_fidelities(face: torch.Tensor) -> None:
    sd = seeded(load_layout("codebook/codeformer_layout.json"), SEED_CF)
    ours = load_model(sd)
    assert ours.arch == "codeformer" and ours.module.variant == "restore"
    ref_net = _spandrel_codeformer(sd, ["32", "64", "128", "256"], 1024)
    # w = 0 and 1 in one batch with a per-face fidelity tensor (the node's per-face path), w = 0.5
    # as a plain float.
    both = ours(face.expand(2, -1, -1, -1), fidelity=torch.tensor([0.0, 1.0]))
    got = {0.0: both[0:1], 1.0: both[1:2], 0.5: ours(face, fidelity=0.5)}
    for w, image in got.items():
        ref = (ref_net(face * 2 - 1, weight=w)[0].clamp(-1, 1) + 1) / 2
        err = (image - ref).abs().max().item()
        assert err < ATOL, f"w={w}: max abs {err:.2e}"
    assert (got[0.0] - got[1.0]).abs().mean() > 1e-3  # fidelity really changes the result


@torch.inference_mode()
def test_codeformer_colorization_matches_spandrel(face: torch.Tensor) -> None:
    sd = seeded(load_layout("codebook/codeformer_colorization_layout.json"), SEED_COLOR)
    ours = load_model(sd)
    assert ours.module.variant == "colorization" and ours.fixed_controls == {"fidelity": 0.0}
    ref = (_spandrel_codeformer(sd, ["32", "64", "128"], 1024)(face * 2 - 1, weight=0.0)[0].clamp(-1, 1) + 1) / 2
    got = ours(face, fidelity=0.9)  # the official script fixes w = 0; the value is ignored
    assert (got - ref).abs().max().item() < ATOL


@torch.inference_mode()
def test_codeformer_inpainting_matches_official_golden(face: torch.Tensor) -> None:
    sd = seeded(load_layout("codebook/codeformer_inpainting_layout.json"), SEED_INPAINT)
    ours = load_model(sd)
    assert ours.module.variant == "inpainting"
    x = inpainting_input(face)
    got = ours(x, fidelity=0.0)
    golden = _load_golden("codeformer_inpainting_golden.safetensors")
    for key, value in windows(got).items():
        assert (value - golden[key]).abs().max().item() < ATOL, key
    # Outside the white holes the input is kept as it is (the official masked composite).
    hole = (x == 1).all(dim=1, keepdim=True).expand_as(x)
    assert (got[~hole] - x[~hole]).abs().max().item() < 1e-6
    assert (got[hole] - x[hole]).abs().max().item() > 0.05


@torch.inference_mode()
def test_restoreformer_matches_spandrel(face: torch.Tensor) -> None:
    from spandrel.architectures.RestoreFormer import RestoreFormer as SpandrelRestoreFormer

    sd = seeded(load_layout("codebook/restoreformer_layout.json"), SEED_RF)
    ours = load_model(sd)
    assert ours.arch == "restoreformer"
    ref_net = SpandrelRestoreFormer(head_size=8)
    ref_net.load_state_dict(sd, strict=True)
    ref = (ref_net.eval()(face * 2 - 1)[0].clamp(-1, 1) + 1) / 2
    assert (ours(face) - ref).abs().max().item() < ATOL


@torch.inference_mode()
def test_restoreformer_pp_matches_official_golden(face: torch.Tensor) -> None:
    sd = seeded(load_layout("codebook/restoreformer_pp_layout.json"), SEED_RFPP)
    ours = load_model(sd)
    assert ours.arch == "restoreformer_pp"
    got = ours(face)
    golden = _load_golden("restoreformer_pp_golden.safetensors")
    for key, value in windows(got).items():
        assert (value - golden[key]).abs().max().item() < ATOL, key


class _CodesChosen(Exception):
    """Raised from a forward hook once the codes are known (the rest of the network is not needed)."""


def _chosen_codes(model: torch.nn.Module, x: torch.Tensor, autocast: torch.dtype | None) -> torch.Tensor:
    """The codes ``model`` picks for ``x`` (CodeFormer: predicted indices; RestoreFormer: the
    quantised latent), with CPU autocast to ``autocast`` when given."""
    net = model.module
    layer = net.idx_pred_layer if hasattr(net, "idx_pred_layer") else net.quantize
    seen: list[torch.Tensor] = []

    def hook(_m: torch.nn.Module, _a: object, out: torch.Tensor) -> None:
        seen.append(out.argmax(-1) if layer is not net.quantize else out)
        raise _CodesChosen

    handle = layer.register_forward_hook(hook)
    try:
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            with pytest.raises(_CodesChosen):
                model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    ("layout", "seed"),
    [("codebook/codeformer_layout.json", SEED_CF), ("codebook/restoreformer_pp_layout.json", SEED_RFPP)],
)
@torch.inference_mode()
def test_bf16_autocast_picks_the_fp32_codes(face: torch.Tensor, layout: str, seed: int) -> None:
    """Under bf16 autocast the encoder runs in fp32 (``precise_codes``), so the same codes are chosen.

    Without it, the bf16 encoder flips some codes here (2% of CodeFormer's indices, 14% of
    RestoreFormer++'s quantised values with these weights); on the benchmark's weights that drops
    the outputs to 22 / 20 dB PSNR against fp32, against 39 / 42 dB with it
    (``benchmarks/bench_codebook.py``).
    """
    model = load_model(seeded(load_layout(layout), seed))
    assert model.module.precise_codes
    assert torch.equal(_chosen_codes(model, face, None), _chosen_codes(model, face, torch.bfloat16))


def test_goldens_are_small() -> None:
    total = sum(p.stat().st_size for p in Path(LAYOUTS).iterdir())
    assert total < 3 * 1024 * 1024
