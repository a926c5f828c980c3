"""Nodes of the 'refine' stage: diffusion refinement with Refusion / IR-SDE."""

from __future__ import annotations

from typing import Any

import torch

from ..archs.refusion import SAMPLERS, SCHEDULES, RefineSettings, generator_noise, minimum_side, refine_images, seed_generators
from ..runtime import Progress, check_interrupted, resolve_dtype, run_in_chunks
from .images import NO_FACE, bchw_to_image, image_to_bchw, is_placeholder
from .inputs import require_family
from .spec import In, NodeDef, NodeResult, Out

NODE_NAME = "FaceMend Diffusion Refine"
_DEFAULTS = RefineSettings()


class FaceMendDiffusionRefine(NodeDef):
    """Refusion / IR-SDE reverse diffusion on face crops or whole images."""

    NODE_ID = "FaceMendDiffusionRefine"
    DISPLAY_NAME = NODE_NAME
    CATEGORY = "FaceMend/restore"
    DESCRIPTION = (
        "Restores or refines images with Refusion / IR-SDE: a mean-reverting SDE whose mean is the input image; "
        "a NAFNet or U-Net noise network runs the reverse process from a noisy version of the input back to a "
        "clean image. Works on face crops (place it between 'FaceMend Codebook Restore' or 'FaceMend CS-SFT "
        "Modulate' and 'FaceMend Paste Back') and on whole images; large images run in overlapping tiles. "
        "Latent Refusion models need their autoencoder on the 'autoencoder' input. Lower 'strength' for a light "
        "touch on an already restored face. Defaults are the paper's: sde sampler, 100 steps, max_sigma 50 "
        "(of 255), cosine schedule, eps 0.005."
    )
    INPUTS = (
        In("image", "IMAGE", "Face crops or whole images (RGB). Each side must be at least 16 pixels; big images are processed tile by tile."),
        In("model", "FACEMEND_MODEL", "A Refusion / IR-SDE noise network from 'FaceMend Load Model' (models/refusion): refusion_nafnet, irsde_unet, or a latent (8-channel) Refusion NAFNet together with its autoencoder."),
        In("sampler", "COMBO", "Reverse process: 'sde' = reverse-time SDE (the paper's sampler, stochastic); 'ode' = probability-flow ODE (deterministic, smoother); 'posterior' = posterior sampling (stochastic, the authors' 2024 recommendation for IR-SDE models). Default: sde.", default=_DEFAULTS.sampler, options=SAMPLERS),
        In("steps", "INT", "Number of steps T of the SDE (paper default 100). Fewer steps are faster; the network's time input is rescaled to the 100 steps it was trained with.", default=_DEFAULTS.steps, min=1, max=1000, step=1),
        In("max_sigma", "FLOAT", "Noise level of the SDE's end state. Values >= 1 are on the 0-255 scale (paper default 50 = 50/255); values below 1 on the 0-1 scale. Use what the model was trained with (Refusion 50, IR-SDE 10).", default=_DEFAULTS.max_sigma, min=0.001, max=255.0, step=0.5),
        In("eps", "FLOAT", "How much of the clean image is left at the last step, which fixes the time scale of the SDE (paper default 0.005).", default=_DEFAULTS.eps, min=0.0001, max=0.5, step=0.0005),
        In("schedule", "COMBO", "Theta schedule of the SDE: cosine (paper default), linear or constant.", default=_DEFAULTS.schedule, options=SCHEDULES),
        In("seed", "INT", "Seed of the noise (image i of a batch uses seed + i), so a workflow reproduces its result.", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, step=1),
        In("strength", "FLOAT", "Fraction of the reverse process to run: 1 = full restoration from noise (default); 0.2-0.5 = light refinement of an already restored face, starting part-way; 0 returns the input.", default=_DEFAULTS.strength, min=0.0, max=1.0, step=0.01),
        In("tile_size", "INT", "Images larger than this (in pixels; latent pixels for latent models) are processed in overlapping tiles whose results are blended at every step, to bound memory. Default 512.", default=_DEFAULTS.tile, min=64, max=8192, step=64),
        In("tile_overlap", "INT", "Overlap between neighbouring tiles (same units as tile_size); larger hides seams better. Default 64.", default=_DEFAULTS.overlap, min=0, max=2048, step=8),
        In("autoencoder", "FACEMEND_MODEL", "Only for latent Refusion: the latent_refusion U-Net autoencoder (load it with 'FaceMend Load Model'). Leave empty for pixel-space models.", optional=True),
    )
    OUTPUTS = (Out("IMAGE", "image", "The refined images, same size as the input."),)

    @classmethod
    def execute(  # noqa: PLR0913 - one argument per widget
        cls,
        image: torch.Tensor,
        model: Any,
        sampler: str = _DEFAULTS.sampler,
        steps: int = _DEFAULTS.steps,
        max_sigma: float = _DEFAULTS.max_sigma,
        eps: float = _DEFAULTS.eps,
        schedule: str = _DEFAULTS.schedule,
        seed: int = 0,
        strength: float = _DEFAULTS.strength,
        tile_size: int = _DEFAULTS.tile,
        tile_overlap: int = _DEFAULTS.overlap,
        autoencoder: Any = None,
    ) -> NodeResult:
        net, ae = _check_models(model, autoencoder)
        if int(steps) != steps or steps < 1:
            raise ValueError(f"{NODE_NAME}: steps must be at least 1 (got {steps}); the paper uses 100.")
        settings = RefineSettings(
            sampler=sampler, steps=int(steps), max_sigma=float(max_sigma), eps=float(eps), schedule=schedule,
            strength=float(strength), tile=int(tile_size), overlap=int(tile_overlap),
        )
        try:
            settings.validate()
        except ValueError as e:
            raise ValueError(f"{NODE_NAME}: {e}") from None
        x = image_to_bchw(image)
        b, _, h, w = x.shape
        side = minimum_side(net.model.module, ae.model.module if ae is not None else None)
        if b > 0 and min(h, w) < side:
            raise ValueError(
                f"{NODE_NAME}: the image is {w}x{h} pixels; {net.model.arch} needs at least {side}x{side} "
                "(its padding multiple). Upscale the image or use larger crops."
            )
        t0 = settings.start_step()
        if is_placeholder(image):  # no face upstream (Detect's placeholder): pass it through, run nothing
            return NodeResult((image,), {"text": [NO_FACE]})
        if b == 0 or t0 == 0:
            return NodeResult((bchw_to_image(x),), {"text": ["strength 0: image passed through" if b else "empty batch"]})

        device = net.load(memory_required=int(_per_item_bytes(net, ae, settings, h, w)))
        dtype = resolve_dtype(getattr(net, "precision", "auto"), device)
        progress = Progress(b * t0, desc="FaceMend refine")

        def run(chunk: torch.Tensor, index: slice) -> torch.Tensor:
            n = index.stop - index.start

            def on_step(_t: int) -> None:
                progress.update(n)
                check_interrupted()

            def on_phase(phase: str) -> None:
                (ae if ae is not None and phase in ("encode", "decode") else net).load()

            draw = generator_noise(seed_generators(seed, n, first_index=index.start))
            return refine_images(
                net.model.module, chunk, settings, draw,
                autoencoder=ae.model.module if ae is not None else None, on_step=on_step, on_phase=on_phase,
            )

        try:
            out = run_in_chunks(
                run, x, device=device, dtype=dtype, per_item_bytes=_per_item_bytes(net, ae, settings, h, w), max_chunk=8,
                chunk_seconds=None,  # progress and Cancel after every diffusion step already
            )
        finally:
            progress.close()
        return NodeResult((bchw_to_image(out),))


def _check_models(model: Any, autoencoder: Any) -> tuple[Any, Any]:
    """Validate the model/autoencoder pair; returns ``(noise_net, autoencoder_or_None)`` (ManagedModels)."""
    require_family(model, "refusion", NODE_NAME)
    arch = model.model.arch
    if arch == "latent_refusion":
        raise ValueError(
            f"{NODE_NAME}: the 'model' input got the latent-Refusion autoencoder. Connect it to the 'autoencoder' "
            "input, and connect its latent Refusion noise network (8-channel NAFNet) to 'model'."
        )
    latent = getattr(model.model.module, "img_channel", 3) != 3
    if autoencoder is None:
        if latent:
            raise ValueError(
                f"{NODE_NAME}: {arch} is a latent Refusion network (it works on a "
                f"{model.model.module.img_channel}-channel latent) and needs its autoencoder: load the latent_refusion "
                "U-Net (e.g. latent-dehazing.pth) and connect it to the 'autoencoder' input."
            )
        return model, None
    require_family(autoencoder, "refusion", NODE_NAME)
    if autoencoder.model.arch != "latent_refusion":
        raise ValueError(
            f"{NODE_NAME}: the 'autoencoder' input must be a latent_refusion U-Net autoencoder, "
            f"got {autoencoder.model.arch} ({autoencoder.model.spec.display_name})."
        )
    if not latent:
        raise ValueError(
            f"{NODE_NAME}: an autoencoder is connected but {arch} works directly on RGB pixels. Disconnect the "
            "autoencoder, or use a latent (8-channel) Refusion network as 'model'."
        )
    want = model.model.module.img_channel
    have = autoencoder.model.module.embed_dim
    if want != have:
        raise ValueError(
            f"{NODE_NAME}: the autoencoder makes {have}-channel latents but the noise network expects {want} channels; "
            "use the autoencoder released with this network."
        )
    return model, autoencoder


def _per_item_bytes(net: Any, ae: Any, settings: RefineSettings, h: int, w: int) -> float:
    """Rough peak memory for one image: network activations on one tile plus the global SDE state."""
    if ae is not None:
        f = ae.model.module.downscale
        lh, lw = -(-h // f), -(-w // f)
        net_tile = min(lh * lw, settings.tile**2) * net.model.spec.memory_per_pixel
        ae_tile = min(h * w, settings.tile**2) * ae.model.spec.memory_per_pixel
        state = 8 * 4 * 8 * lh * lw + 3 * 4 * 4 * h * w
        return max(net_tile, ae_tile) + state
    return min(h * w, settings.tile**2) * net.model.spec.memory_per_pixel + 8 * 3 * 4 * h * w


NODES: list[type[NodeDef]] = [FaceMendDiffusionRefine]
