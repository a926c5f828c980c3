"""GFP-GAN generators in plain PyTorch, loading the official TencentARC/GFPGAN checkpoints unchanged.

- :class:`GFPGANv1Clean`: GFPGANCleanv1-NoCE-C2 (v1.2), GFPGANv1.3, GFPGANv1.4.
- :class:`GFPGANv1` with ``resample="fir"``: the original GFPGANv1 (GFPGANv1.pth);
  with ``resample="bilinear"``: GFPGANBilinear.
"""

from .clean import GFPGANv1Clean
from .common import (
    COARSE_MAX_RESOLUTION,
    GFPGANBase,
    apply_sft,
    level_resolutions,
    level_strengths,
    noise_resolutions,
    seeded_noise,
)
from .original import GFPGANv1

__all__ = [
    "COARSE_MAX_RESOLUTION", "GFPGANBase", "GFPGANv1", "GFPGANv1Clean", "apply_sft", "level_resolutions",
    "level_strengths", "noise_resolutions", "seeded_noise",
]
