"""Refusion / IR-SDE (Algolzw/image-restoration-sde): noise networks, latent autoencoder, the
mean-reverting SDE with its samplers, and tiled refinement of images."""

from .autoencoder import LatentUNet
from .nafnet import ConditionalNAFNet
from .refine import TRAINING_STEPS, RefineSettings, minimum_side, refine_images, seed_generators
from .sde import IRSDE, SAMPLERS, SCHEDULES, generator_noise, theta_schedule
from .unet import ConditionalUNet

__all__ = [
    "IRSDE", "SAMPLERS", "SCHEDULES", "TRAINING_STEPS", "ConditionalNAFNet", "ConditionalUNet", "LatentUNet",
    "RefineSettings", "generator_noise", "minimum_side", "refine_images", "seed_generators", "theta_schedule",
]
