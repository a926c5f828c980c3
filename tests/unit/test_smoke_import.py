"""The package imports without ComfyUI and exposes its stable names."""

import sys

import facemend
from facemend.model_loaders import UnsupportedModelError, load_model


def test_import_has_no_comfy_side_effects() -> None:
    assert "comfy" not in sys.modules and "folder_paths" not in sys.modules
    assert callable(load_model) and issubclass(UnsupportedModelError, ValueError)
    assert facemend.WEB_DIRECTORY == "./web"
