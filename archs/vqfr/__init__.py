"""VQFR (TencentARC, ECCV 2022) in plain PyTorch: v1 and v2, official state-dict layouts."""

from .v1 import VQFRv1
from .v2 import VQFRv2

__all__ = ["VQFRv1", "VQFRv2"]
