"""GPEN Restore: GPEN (yangxy/GPEN, CVPR 2021) on face crops aligned to GPEN's own framing."""

from __future__ import annotations

from typing import Any

import torch

from ..model_loaders import RESTORE, plan_controls, restore_batch
from ..runtime import Progress
from .images import NO_FACE, bchw_to_image, image_to_bchw, is_placeholder
from .inputs import parse_per_face, require_family
from .spec import In, NodeDef, NodeResult, Out


class FaceMendGPENRestore(NodeDef):
    """Restore aligned face crops with a GPEN model."""

    NODE_ID = "FaceMendGPENRestore"
    DISPLAY_NAME = "FaceMend GPEN Restore"
    CATEGORY = "FaceMend/restore"
    DESCRIPTION = (
        "Restores face crops with GPEN (GAN Prior Embedded Network): a StyleGAN2-like generator whose noise inputs "
        "are the features of an encoder of your crop. GPEN was trained on its own face framing: set 'framing' to "
        "gpen in 'FaceMend Detect' (Restore Faces does this by itself). 'strength' blends the restored face with "
        "the input crop (the official --alpha; 1 = fully restored). GPEN-BFR-256/512/1024/2048, colorization, "
        "inpainting and Seg2face files run at their own size; crops of other sizes are resized in and out."
    )
    INPUTS = (
        In("crops", "IMAGE", "Square face crops aligned to GPEN's framing (Detect with framing = gpen); an empty "
           "batch passes through."),
        In("model", "FACEMEND_MODEL", "A GPEN model from 'FaceMend Load Model' (GPEN-BFR-512.pth, GPEN-BFR-256.pth, "
           "...). GFPGAN models go to 'FaceMend CS-SFT Modulate', CodeFormer and co. to 'FaceMend Codebook Restore'."),
        In("strength", "FLOAT", "Blend of the restored face with the input crop: 1 = GPEN's output (official default), "
           "0 = the input unchanged.", default=RESTORE.strength, min=0.0, max=1.0, step=0.01),
        In("normalize", "BOOLEAN", "Feed the network values in [-1, 1] as every GPEN file except GPEN-Seg2face-512 "
           "expects; switch off only for Seg2face (its official inference skips the normalisation).", default=True),
        In("per_face_strength", "STRING", "Optional: one strength per crop, comma-separated in batch order (e.g. "
           "'1, 0.6'), overriding 'strength'; e.g. the strength output of 'FaceMend Face Quality'.", default="",
           optional=True),
    )
    OUTPUTS = (Out("IMAGE", "crops", "The restored crops: same count, size and order as the input crops."),)

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        """Restore ``crops`` (IMAGE ``(B, S, S, C)`` in ``[0, 1]``) with a gpen-family ``ManagedModel``.

        Returns:
            IMAGE ``(B, S, S, 3)`` float32 in ``[0, 1]``, same order; an empty batch comes back empty.
        """
        managed = kw["model"]
        require_family(managed, "gpen", cls.DISPLAY_NAME)
        strength = float(kw.get("strength", RESTORE.strength))
        x = image_to_bchw(kw["crops"], "crops")
        b, _, h, w = x.shape
        if b == 0 or is_placeholder(kw["crops"]):  # no face upstream: pass it through, run nothing
            return NodeResult((kw["crops"],), {"text": [NO_FACE]})
        if h != w:
            raise ValueError(f"{cls.DISPLAY_NAME}: crops must be square face crops; got {w}x{h}. Use the crops from "
                             "'FaceMend Detect'.")
        per_face = parse_per_face(kw.get("per_face_strength"), "per_face_strength", cls.DISPLAY_NAME, count=b)
        values = {"strength": per_face if per_face is not None else strength, "normalize": bool(kw.get("normalize", True))}
        plan = plan_controls(managed.model, values, b)
        progress = Progress(b, desc=cls.DISPLAY_NAME)
        try:
            y: torch.Tensor = restore_batch(managed, x, plan, progress=progress)
        finally:
            progress.close()
        lines = [f"{b} face(s); {plan.summary(managed.model)}"]
        size = managed.model.input_size
        if size is not None and (h, w) != (size, size):
            lines.append(f"{w}x{h} crops were resized to {size} and back")
        return NodeResult((bchw_to_image(y),), {"text": lines})


NODES: list[type[NodeDef]] = [FaceMendGPENRestore]
