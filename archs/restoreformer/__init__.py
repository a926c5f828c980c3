"""RestoreFormer and RestoreFormer++ (wzhouxiff/RestoreFormerPlusPlus and GFPGAN layouts)."""

from .restoreformer import RestoreFormer

__all__ = ["RestoreFormer"]
