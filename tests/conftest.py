"""Shared fixtures. Helpers live in ``tests/fm_testing`` (on ``sys.path`` via pytest's ``pythonpath``)."""

from __future__ import annotations

import pytest
import torch

from fm_testing.images import face_crop_512


@pytest.fixture(scope="session")
def face_crop() -> torch.Tensor:
    """``(1, 3, 512, 512)`` RGB in ``[0, 1]``: the astronaut's FFHQ-aligned face."""
    return face_crop_512()
