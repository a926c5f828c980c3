"""The loader's model-info route: cheap checkpoint inspection and the request handler logic.

The handler (:func:`facemend.extension.routes.model_info`) runs here without ComfyUI: model
folders fall back to ``$FACEMEND_MODELS_DIR/<kind>``. A tiny made-up architecture stands in for
the real ones so these tests do not depend on any family being registered.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from facemend.model_loaders import ArchSpec, Registry
from facemend.model_loaders import info as info_mod
from facemend.model_loaders import model as model_mod
from facemend.extension import routes as server_routes
from facemend.extension.routes import model_info


class TinyNet(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.norm = nn.BatchNorm2d(ch)
        self.conv_out = nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.norm(self.conv_in(x)))


def _tiny_spec(predicate=None) -> ArchSpec:  # noqa: ANN001
    return ArchSpec(
        id="tiny_test",
        family="codebook",
        display_name="Tiny Test Net",
        required_keys=("conv_in.weight", "conv_out.weight", "norm.running_var"),
        read_hparams=lambda sd: {"ch": int(sd["conv_in.weight"].shape[0])},
        build=TinyNet,
        forward=lambda m, x, **c: m(x),
        licence="MIT",
        controls=("fidelity",),
        predicate=predicate,
    )


def _params(ch: int) -> int:
    return sum(p.numel() for p in TinyNet(ch).parameters())


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Standalone model folders under tmp, the tiny arch registered, the info cache empty."""
    base = tmp_path / "models"
    (base / "facerestore_models").mkdir(parents=True)
    (base / "refusion").mkdir()
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(base))
    monkeypatch.setattr(model_mod, "default_registry", lambda: Registry([_tiny_spec()]))
    server_routes._cached_answer.cache_clear()
    yield base / "facerestore_models"
    server_routes._cached_answer.cache_clear()


def _sd(ch: int = 8) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return TinyNet(ch).state_dict()


def test_safetensors_is_described_from_its_header_alone(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_file(_sd(8), str(models_dir / "tiny.safetensors"))
    # The cheap path must not fall back to reading the weights.
    monkeypatch.setattr(info_mod, "read_checkpoint", lambda p: pytest.fail("full read used for safetensors"))
    status, body = model_info("facerestore_models", "tiny.safetensors")
    assert status == 200, body
    assert body["arch"] == "tiny_test" and body["display_name"] == "Tiny Test Net"
    assert body["licence"] == "MIT" and body["family"] == "codebook"
    assert body["node"] == "FaceMendCodebookRestore"
    assert body["controls"] == ["fidelity"]
    assert body["parameters"] == _params(8)
    assert body["hparams"] == {"ch": 8}
    assert body["name"] == "tiny.safetensors" and body["kind"] == "facerestore_models"


def test_zip_pickle_in_a_training_container_is_read_lazily(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sd = {f"module.{k}": v for k, v in _sd(16).items()}
    torch.save({"params_ema": sd, "iter": 5}, models_dir / "tiny_ema.pth")
    monkeypatch.setattr(info_mod, "read_checkpoint", lambda p: pytest.fail("full read used for a zip checkpoint"))
    status, body = model_info("facerestore_models", "tiny_ema.pth")
    assert status == 200, body
    assert body["arch"] == "tiny_test" and body["parameters"] == _params(16)


def test_legacy_pickle_is_read_in_full(models_dir: Path) -> None:
    torch.save(_sd(4), models_dir / "legacy.pth", _use_new_zipfile_serialization=False)
    status, body = model_info("facerestore_models", "legacy.pth")
    assert status == 200, body
    assert body["parameters"] == _params(4)


def test_subfolder_names_and_refusion_kind(models_dir: Path) -> None:
    sub = models_dir.parent / "refusion" / "sub"
    sub.mkdir()
    save_file(_sd(8), str(sub / "r.safetensors"))
    status, body = model_info("refusion", "sub/r.safetensors")
    assert status == 200 and body["arch"] == "tiny_test"
    # the same name under another kind is not there
    assert model_info("facerestore_models", "sub/r.safetensors")[0] == 404


def test_predicate_needing_tensor_data_falls_back_to_a_full_read(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fingerprint that looks at values (not just shapes) cannot run on meta tensors.
    spec = _tiny_spec(predicate=lambda sd: bool(sd["norm.running_var"].min() > 0))
    monkeypatch.setattr(model_mod, "default_registry", lambda: Registry([spec]))
    save_file(_sd(8), str(models_dir / "tiny.safetensors"))
    status, body = model_info("facerestore_models", "tiny.safetensors")
    assert status == 200, body
    assert body["arch"] == "tiny_test"


@pytest.mark.parametrize("name", ["../secret.pth", "sub/../../secret.pth", "/etc/passwd", ""])
def test_names_outside_the_folder_are_refused_before_reading(models_dir: Path, name: str) -> None:
    torch.save(_sd(4), models_dir.parent.parent / "secret.pth")  # exists, but outside the folder
    status, body = model_info("facerestore_models", name)
    assert status == 400, body
    assert "error" in body and "arch" not in body


def test_absolute_path_to_a_real_model_is_refused(models_dir: Path) -> None:
    save_file(_sd(8), str(models_dir / "tiny.safetensors"))
    status, _ = model_info("facerestore_models", str(models_dir / "tiny.safetensors"))
    assert status == 400


def test_unknown_kind_and_missing_file(models_dir: Path) -> None:
    assert model_info("checkpoints", "x.pth")[0] == 400
    assert model_info("facedetection", "detection_mobilenet0.25_Final.pth")[0] == 400
    status, body = model_info("facerestore_models", "nothere.pth")
    assert status == 404 and "nothere.pth" in body["error"]
    assert model_info(None, None)[0] == 400


def test_file_with_an_unlisted_extension_is_not_served(models_dir: Path) -> None:
    torch.save(_sd(4), models_dir / "weights.pkl")  # a file, but not a model extension we list
    assert model_info("facerestore_models", "weights.pkl")[0] == 404


def test_unsupported_and_corrupt_files_give_readable_errors_without_full_paths(models_dir: Path) -> None:
    save_file({"foo.weight": torch.zeros(2, 2)}, str(models_dir / "other.safetensors"))
    status, body = model_info("facerestore_models", "other.safetensors")
    assert status == 422
    assert "other.safetensors" in body["error"] and str(models_dir) not in body["error"]
    assert "tiny_test" in body["error"]  # names the closest architecture

    good = models_dir / "tiny.safetensors"
    save_file(_sd(8), str(good))
    data = good.read_bytes()
    (models_dir / "cut.safetensors").write_bytes(data[: len(data) // 2])
    status, body = model_info("facerestore_models", "cut.safetensors")
    assert status == 422 and "cut.safetensors" in body["error"] and str(models_dir) not in body["error"]

    (models_dir / "empty.pth").write_bytes(b"")
    status, body = model_info("facerestore_models", "empty.pth")
    assert status == 422 and "empty" in body["error"]


def test_a_changed_file_is_read_again(models_dir: Path) -> None:
    path = models_dir / "tiny.safetensors"
    save_file(_sd(8), str(path))
    assert model_info("facerestore_models", "tiny.safetensors")[1]["parameters"] == _params(8)
    save_file(_sd(16), str(path))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert model_info("facerestore_models", "tiny.safetensors")[1]["parameters"] == _params(16)


def test_register_routes_is_a_no_op_outside_comfyui() -> None:
    assert server_routes.register_routes() is False


def test_refusion_prefix_and_not_yet_downloaded(models_dir: Path) -> None:
    """The loader's menu names ('refusion/<file>', official files not on disk) are answered too."""
    sd = {"conv_in.weight": torch.zeros(4, 3, 3, 3), "conv_in.bias": torch.zeros(4), "norm.weight": torch.ones(4),
          "norm.bias": torch.zeros(4), "norm.running_mean": torch.zeros(4), "norm.running_var": torch.ones(4),
          "norm.num_batches_tracked": torch.zeros((), dtype=torch.long), "conv_out.weight": torch.zeros(3, 4, 3, 3),
          "conv_out.bias": torch.zeros(3)}
    save_file(sd, str(models_dir.parent / "refusion" / "r.safetensors"))
    status, body = model_info("facerestore_models", "refusion/r.safetensors")
    assert status == 200 and body["kind"] == "refusion" and body["arch"] == "tiny_test"
    status, body = model_info("facerestore_models", "GFPGANv1.4.pth")
    assert status == 200 and body["arch"] == "gfpgan_clean" and "not downloaded yet" in body["status"]
    assert "will be downloaded into the facerestore_models folder on first run" in body["status"]
    assert "Apache" in body["licence"]
    status, body = model_info("facerestore_models", "nothing-known.pth")
    assert status == 404


# --- the route judges a file the way the loader does ---------------------------------------


def test_a_directory_under_a_model_name_is_reported_as_a_directory(models_dir: Path) -> None:
    from facemend.model_loaders import UnsupportedModelError, read_checkpoint

    for name in ("GFPGANv1.4.pth", "my_model.pth"):  # an official (downloadable) name and any other
        folder = models_dir / name
        folder.mkdir()
        status, body = model_info("facerestore_models", name)
        assert status == 422, body
        with pytest.raises(UnsupportedModelError) as loader:
            read_checkpoint(folder)
        assert body["error"] == str(loader.value).replace(str(folder), name)
        assert body["error"].startswith(f"{name}: is a directory, not a checkpoint file") and str(models_dir) not in body["error"]


def test_the_loader_node_reports_a_directory_too(models_dir: Path) -> None:
    from facemend.model_loaders import UnsupportedModelError
    from facemend.nodes.loaders import resolve_model_file

    (models_dir / "GFPGANv1.4.pth").mkdir()  # not downloaded over, not "not found"
    with pytest.raises(UnsupportedModelError, match="is a directory, not a checkpoint file"):
        resolve_model_file("GFPGANv1.4.pth")


def test_a_file_that_differs_from_its_download_record_is_refused_as_the_loader_does(models_dir: Path) -> None:
    from facemend.model_loaders import UnsupportedModelError, read_checkpoint

    path = models_dir / "tiny.safetensors"
    save_file(_sd(8), str(path))
    record = models_dir / "tiny.safetensors.sha256"
    record.write_text("ab" * 32 + "  tiny.safetensors\n")
    status, body = model_info("facerestore_models", "tiny.safetensors")
    assert status == 422, body
    with pytest.raises(UnsupportedModelError) as loader:
        read_checkpoint(path)
    assert body["error"] == str(loader.value).replace(str(path), "tiny.safetensors")
    assert "recorded when it was downloaded" in body["error"] and str(models_dir) not in body["error"]
    # a record that matches (the file as downloaded): described as usual
    import hashlib

    record.write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "  tiny.safetensors\n")
    status, body = model_info("facerestore_models", "tiny.safetensors")
    assert status == 200 and body["arch"] == "tiny_test" and "warning" not in body


def test_an_official_name_with_another_digest_carries_a_warning(models_dir: Path) -> None:
    from facemend.model_loaders.catalog import find_known

    save_file(_sd(8), str(models_dir / "codeformer.pth.safetensors"))  # not an official name: no digest to check
    assert "warning" not in model_info("facerestore_models", "codeformer.pth.safetensors")[1]
    torch.save(_sd(8), models_dir / "codeformer.pth")  # official name, other bytes (a fine-tune, a test file)
    status, body = model_info("facerestore_models", "codeformer.pth")
    assert status == 200 and body["arch"] == "tiny_test"  # the loader loads it too
    official = find_known("codeformer.pth").sha256
    assert f"differs from the official codeformer.pth's {official[:16]}..." in body["warning"]
    assert body["status"] == body["warning"] and str(models_dir) not in body["warning"]


def test_a_missing_manual_download_says_where_to_get_it(models_dir: Path) -> None:
    status, body = model_info("facerestore_models", "RestoreFormer++.ckpt")
    assert status == 404
    assert "by hand from https://drive.google.com/" in body["error"] and "facerestore_models" in body["error"]


def test_the_loader_node_names_the_real_folder_of_a_missing_file(models_dir: Path) -> None:
    from facemend.nodes.loaders import resolve_model_file

    with pytest.raises(FileNotFoundError) as info:
        resolve_model_file("my_finetune.pth")
    assert f"put the file at {models_dir / 'my_finetune.pth'}" in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        resolve_model_file("refusion/derain.pth")
    assert f"Put the file at {models_dir.parent / 'refusion' / 'derain.pth'}" in str(info.value)


def test_official_files_are_described_right_before_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before codeformer_colorization.pth is downloaded the answer already says its fidelity is
    fixed (the catalog records the variant its shapes give), and names nodes and widgets as the UI does."""
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(tmp_path))
    server_routes._cached_answer.cache_clear()
    status, body = model_info("facerestore_models", "codeformer_colorization.pth")
    assert status == 200, body
    assert body["fixed"] == {"fidelity": 0.0} and body["widgets"] == [] and body["controls"] == []
    assert body["node_name"] == "FaceMend Codebook Restore"
    assert body["control_widgets"]["FaceMendRestoreFaces"] == {"fidelity": False, "strength": False}
    status, body = model_info("facerestore_models", "codeformer.pth")
    assert body["widgets"] == ["fidelity", "per_face_fidelity"] and body["fixed"] == {}
    assert body["control_widgets"]["FaceMendRestoreFaces"] == {"fidelity": True, "strength": False}
    assert not any(body["control_widgets"]["FaceMendCSSFTModulate"].values())
    status, body = model_info("facerestore_models", "GPEN-BFR-512.pth")
    assert body["node_name"] == "FaceMend GPEN Restore" and body["input_size"] == 512
    assert body["control_widgets"]["FaceMendRestoreFaces"] == {"fidelity": False, "strength": True}


def test_catalog_hparams_are_what_the_official_layouts_say() -> None:
    """The hyper-parameters the catalog records for describing a file before download agree with
    what the registry reads from that file's official layout (tests/golden)."""
    from facemend.model_loaders import default_registry
    from facemend.model_loaders.catalog import find_known
    from fm_testing.weights import load_layout

    layouts = {
        "codeformer.pth": "codebook/codeformer_layout.json",
        "codeformer_colorization.pth": "codebook/codeformer_colorization_layout.json",
        "codeformer_inpainting.pth": "codebook/codeformer_inpainting_layout.json",
        "GPEN-BFR-512.pth": "gpen/layout_GPEN-BFR-512.json",
        "GPEN-BFR-256.pth": "gpen/layout_GPEN-BFR-256.json",
        "GPEN-Colorization-1024.pth": "gpen/layout_GPEN-Colorization-1024.json",
        "GPEN-Inpainting-1024.pth": "gpen/layout_GPEN-Inpainting-1024.json",
        "GPEN-Seg2face-512.pth": "gpen/layout_GPEN-Seg2face-512.json",
        "pytorch_model.pt": "gpen/layout_GPEN-BFR-1024.json",
        "pytorch_model-2048.pt": "gpen/layout_GPEN-BFR-2048.json",
    }
    registry = default_registry()
    for name, layout in layouts.items():
        known = find_known(name)
        sd = {k: torch.empty(shape, device="meta") for k, shape in load_layout(layout).items()}
        spec = registry.detect(sd)
        assert spec.id == known.arch, name
        hparams = spec.read_hparams(sd)
        assert known.hparams and all(hparams[k] == v for k, v in known.hparams.items()), (name, known.hparams)
