"""CodeFormer (sczhou/CodeFormer layout): restoration, colorization and inpainting checkpoints."""

from .codeformer import VARIANTS, CodeFormer

__all__ = ["VARIANTS", "CodeFormer"]
