"""Shared fixtures. Helpers live in ``tests/fm_testing`` (on ``sys.path`` via pytest's ``pythonpath``)."""

from __future__ import annotations

import pytest
import torch

from fm_testing.images import face_crop_512


@pytest.fixture(scope="session")
def face_crop() -> torch.Tensor:
    """``(1, 3, 512, 512)`` RGB in ``[0, 1]``: the astronaut's FFHQ-aligned face."""
    return face_crop_512()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that collected no test is a failure, never a silent pass."""
    if session.testscollected == 0 and exitstatus == 0:
        session.exitstatus = 1
