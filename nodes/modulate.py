"""Nodes of the 'modulate' stage: GFP-GAN's CS-SFT as a controllable node."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..archs.gfpgan import NOISE_MODES
from ..model_loaders import RESTORE, plan_controls, restore_batch
from ..runtime import Progress
from .images import NO_FACE, bchw_to_image, image_to_bchw, is_placeholder
from .inputs import parse_per_face, require_family
from .spec import In, NodeDef, NodeResult, Out

log = logging.getLogger("facemend")


#: Crops whose values leave [0, 1] by more than this are clamped with a warning ...
RANGE_SLACK = 1e-3
#: ... unless they look like another encoding (0-255, or far outside [0, 1]): then it is an error.
RANGE_LIMIT = (-1.0, 2.0)


def check_crop_range(x: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """Accept ``[0, 1]`` crops; clamp slight overshoot with a note; refuse other encodings.

    Args:
        x: ``(B, 3, H, W)`` float crops.

    Returns:
        ``(crops in [0, 1], note or None)``: the input itself when already in range, else a clamped copy.

    Raises:
        ValueError: values below -1 or above 2 (e.g. 0-255 pixel values), with what to do.
    """
    lo, hi = float(x.min()), float(x.max())
    if lo < RANGE_LIMIT[0] or hi > RANGE_LIMIT[1]:
        hint = " They look like 0-255 pixel values: divide by 255." if hi > 2 and lo >= -RANGE_SLACK else ""
        raise ValueError(
            f"FaceMend CS-SFT Modulate: crops must be ComfyUI images with values in [0, 1]; got values from "
            f"{lo:.3g} to {hi:.3g}.{hint} Connect the crops from 'FaceMend Detect' or a node that outputs IMAGE."
        )
    if lo < -RANGE_SLACK or hi > 1 + RANGE_SLACK:
        note = f"crops had values from {lo:.3g} to {hi:.3g}; clamped to [0, 1]"
        log.warning("FaceMend CS-SFT Modulate: %s", note)
        return x.clamp(0, 1), note
    return x, None


class FaceMendCSSFTModulate(NodeDef):
    """Restore aligned face crops with GFP-GAN, with control over its CS-SFT modulation."""

    NODE_ID = "FaceMendCSSFTModulate"
    DISPLAY_NAME = "FaceMend CS-SFT Modulate"
    CATEGORY = "FaceMend/restore"
    DESCRIPTION = (
        "Restores aligned face crops with a GFP-GAN model (v1, v1.2, v1.3, v1.4 or bilinear). GFP-GAN draws the face "
        "from a StyleGAN2 face prior and steers it with spatial scale/shift maps computed from your crop (the "
        "Channel-Split Spatial Feature Transform). 'strength' sets how strongly those maps act: 0 = the prior's own "
        "face from the crop's latent code only, 1 = the published model, above 1 = closer to your input. Coarse and "
        "fine multipliers act on the 8-64 px and 128-512 px levels separately. Crops of any square size work "
        "(they are resized to 512 and back); output has the input's size and order."
    )
    INPUTS = (
        In(
            "crops", "IMAGE",
            tooltip="Aligned square face crops, e.g. from 'FaceMend Detect'. Values in [0, 1]; an empty batch passes through.",
        ),
        In(
            "model", "FACEMEND_MODEL",
            tooltip="A GFP-GAN model from 'FaceMend Load Model' (GFPGANv1.pth, GFPGANCleanv1-NoCE-C2.pth, GFPGANv1.3.pth, "
            "GFPGANv1.4.pth).",
        ),
        In(
            "strength", "FLOAT", default=RESTORE.strength, min=0.0, max=3.0, step=0.05,
            tooltip="How strongly the crop's spatial features steer the StyleGAN2 prior. 0 = prior alone (smooth, generic), "
            "1 = as published, >1 = more fidelity to the input (and to its defects).",
        ),
        In(
            "strength_coarse", "FLOAT", default=RESTORE.strength_coarse, min=0.0, max=3.0, step=0.05, optional=True,
            tooltip="Multiplies 'strength' on the coarse levels (8-64 px of a 512 face): face shape, pose, expression.",
        ),
        In(
            "strength_fine", "FLOAT", default=RESTORE.strength_fine, min=0.0, max=3.0, step=0.05, optional=True,
            tooltip="Multiplies 'strength' on the fine levels (128-512 px): skin, eyes, hair and other texture.",
        ),
        In(
            "noise", "COMBO", default=RESTORE.noise, options=NOISE_MODES,
            tooltip="'stored': the model's fixed noise (reproducible, as the official code with randomize_noise=False). "
            "'random': fresh noise from 'seed' for varied fine detail.",
        ),
        In(
            "seed", "INT", default=RESTORE.seed, min=0, max=0xFFFFFFFFFFFFFFFF, optional=True,
            tooltip="Noise seed when noise is 'random' (face k of the batch uses seed + k). Ignored for 'stored'.",
        ),
        In(
            "per_face_strength", "STRING", default="", optional=True,
            tooltip="Optional: one strength per crop, comma-separated in batch order (0-3, e.g. the strength output of "
            "'FaceMend Face Quality'), overriding 'strength'; a single value applies to every crop.",
        ),
    )
    OUTPUTS = (Out("IMAGE", "crops", "Restored face crops, same size and order as the input crops."),)

    @classmethod
    def execute(
        cls,
        crops: torch.Tensor,
        model: Any,
        strength: float = RESTORE.strength,
        strength_coarse: float = RESTORE.strength_coarse,
        strength_fine: float = RESTORE.strength_fine,
        noise: str = RESTORE.noise,
        seed: int = RESTORE.seed,
        per_face_strength: str = "",
    ) -> NodeResult:
        """Restore ``crops`` (IMAGE ``(B, S, S, C)`` in ``[0, 1]``) with ``model`` (a gfpgan-family ``ManagedModel``).

        Returns:
            IMAGE ``(B, S, S, 3)`` float32 in ``[0, 1]``, same order; an empty batch comes back empty.

        Raises:
            ValueError: a model of another family, bad controls, non-square crops or values far
                outside ``[0, 1]`` (e.g. 0-255).
        """
        require_family(model, "gfpgan", cls.DISPLAY_NAME)
        if noise not in NOISE_MODES:
            raise ValueError(f"{cls.DISPLAY_NAME}: noise must be one of {NOISE_MODES}, got {noise!r}.")
        x = image_to_bchw(crops, "crops")
        b, _, h, w = x.shape
        if b == 0 or is_placeholder(crops):  # no face upstream: pass it through, run nothing
            return NodeResult((crops,), ui={"text": [NO_FACE]})
        x, note = check_crop_range(x)
        per_face = parse_per_face(per_face_strength, "per_face_strength", cls.DISPLAY_NAME, high=3.0, count=b)
        values = {"strength": per_face if per_face is not None else float(strength), "strength_coarse": float(strength_coarse),
                  "strength_fine": float(strength_fine), "noise": noise, "seed": int(seed)}
        plan = plan_controls(model.model, values, b)
        progress = Progress(b, desc="FaceMend CS-SFT")
        try:
            y = restore_batch(model, x, plan, progress=progress)
        finally:
            progress.close()
        lines = [
            f"{b} face(s), {model.model.arch}, strength {plan.applied.get('strength', f'{strength:g}')} "
            f"(coarse x{strength_coarse:g}, fine x{strength_fine:g}), noise {noise}"
        ]
        size = model.model.input_size
        if size is not None and (h, w) != (size, size):
            lines.append(f"{w}x{h} crops were resized to {size} and back")
        if note:
            lines.append(note)
        return NodeResult((bchw_to_image(y),), ui={"text": lines})


NODES: list[type[NodeDef]] = [FaceMendCSSFTModulate]
