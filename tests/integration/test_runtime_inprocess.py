"""The runtime bridge inside a real ComfyUI process (in-process tier).

Runs when ``COMFYUI_PATH`` points at a ComfyUI checkout whose dependencies are importable by this
interpreter; it imports ComfyUI's real ``folder_paths``, ``comfy.model_management``,
``comfy.model_patcher`` and ``comfy.utils`` (no mocks). Skipped otherwise, with the reason.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

COMFY = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFY, reason="COMFYUI_PATH is not set: no ComfyUI checkout to test against")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Import ComfyUI's modules in this process (CPU mode), with models_dir in a temp folder."""
    sys.path.insert(0, str(Path(COMFY)))
    argv = sys.argv
    sys.argv = ["main.py", "--cpu"]
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        try:
            folder_paths = importlib.import_module("folder_paths")
            mm = importlib.import_module("comfy.model_management")
            importlib.import_module("comfy.model_patcher")
            importlib.import_module("comfy.utils")
        except ImportError as e:
            pytest.skip(f"ComfyUI's dependencies are not importable here: {e}")
    finally:
        sys.argv = argv
    base = tmp_path_factory.mktemp("comfy_models")
    folder_paths.models_dir = str(base)
    yield folder_paths, mm, base
    for name in [m for m in sys.modules if m == "folder_paths" or m == "comfy" or m.startswith("comfy.")]:
        del sys.modules[name]  # leave later tests a process without ComfyUI
    sys.path.remove(str(Path(COMFY)))


def test_folder_registration_merges(comfy) -> None:  # noqa: ANN001
    from facemend import runtime

    folder_paths, _, base = comfy
    assert runtime.in_comfyui()
    user_dir = base / "elsewhere"
    user_dir.mkdir()
    folder_paths.add_model_folder_path("facerestore_models", str(user_dir))  # as extra_model_paths.yaml does
    runtime.register_model_folders()
    runtime.register_model_folders()  # idempotent
    paths = folder_paths.get_folder_paths("facerestore_models")
    assert paths[0] == str(user_dir)  # the user's entry stays first
    assert paths[1:] == [str(base / d) for d in ("facerestore_models", "GFPGAN", "Codeformer")]
    assert folder_paths.get_folder_paths("refusion") == [str(base / "refusion")]
    (base / "GFPGAN").mkdir()
    torch.save({"w": torch.zeros(1)}, base / "GFPGAN" / "GFPGANv1.4.pth")
    (base / "GFPGAN" / "readme.txt").write_text("not a model")
    assert runtime.list_models("facerestore_models") == ["GFPGANv1.4.pth"]
    assert runtime.find_model("facerestore_models", "GFPGANv1.4.pth") == base / "GFPGAN" / "GFPGANv1.4.pth"


def test_model_patcher_load_progress_interrupt(comfy) -> None:  # noqa: ANN001
    from facemend import runtime
    from facemend.model_loaders import Registry, load_model
    from fm_testing.tiny_arch import TINY_SPEC, tiny_state_dict

    _, mm, _ = comfy
    managed = runtime.ManagedModel(load_model(tiny_state_dict(), registry=Registry([TINY_SPEC])))
    assert managed.patcher is not None and type(managed.patcher).__name__ == "ModelPatcher"
    device = managed.load(memory_required=1024)
    assert device == mm.get_torch_device()
    assert any(lm.model is managed.patcher for lm in mm.current_loaded_models)
    progress = runtime.Progress(3)
    assert type(progress._bar).__name__ == "ProgressBar"
    progress.update(3)
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            runtime.check_interrupted()
    finally:
        mm.interrupt_current_processing(False)
