"""Codebook Restore: CodeFormer, RestoreFormer, RestoreFormer++ and VQFR on aligned face crops."""

from __future__ import annotations

from typing import Any

import torch

from ..model_loaders import RESTORE, plan_controls, restore_batch
from ..runtime import Progress
from .images import NO_FACE, bchw_to_image, image_to_bchw, is_placeholder
from .inputs import parse_per_face, require_family
from .spec import In, NodeDef, NodeResult, Out


def parse_fidelity_list(text: str | None, count: int | None = None) -> list[float] | None:
    """Codebook Restore's ``per_face_fidelity``: ``"0.3, 0.7"`` -> ``[0.3, 0.7]``; blank -> ``None``.

    Raises:
        ValueError: an entry that is not a number, or outside ``[0, 1]`` (the message names it), or
            neither one value nor ``count`` values.
    """
    return parse_per_face(text, "per_face_fidelity", "FaceMend Codebook Restore", count=count)


class FaceMendCodebookRestore(NodeDef):
    """Restore aligned face crops with a codebook-prior model (CodeFormer, RestoreFormer(++), VQFR)."""

    NODE_ID = "FaceMendCodebookRestore"
    DISPLAY_NAME = "FaceMend Codebook Restore"
    CATEGORY = "FaceMend/restore"
    DESCRIPTION = (
        "Restores aligned square face crops with a codebook (VQ) face prior: CodeFormer, RestoreFormer, "
        "RestoreFormer++ or VQFR, loaded with 'FaceMend Load Model'. 'fidelity' trades quality (0, trust "
        "the learned face codebook) for faithfulness to the input (1); it drives CodeFormer's w and "
        "VQFR v2's fidelity ratio and does not apply to the other models. CodeFormer's colorization and "
        "inpainting checkpoints are recognised and run as their official scripts do (inpainting fills "
        "pure-white pixels). Crops of any square size are resized to 512 and back."
    )
    INPUTS = (
        In("crops", "IMAGE", tooltip="Aligned square face crops (e.g. the crops output of 'FaceMend Detect'); a batch restores several faces."),
        In(
            "model",
            "FACEMEND_MODEL",
            tooltip="A codebook restorer from 'FaceMend Load Model' (CodeFormer, RestoreFormer, RestoreFormer++, VQFR). "
            "GFPGAN models go to 'FaceMend CS-SFT Modulate'.",
        ),
        In(
            "fidelity",
            "FLOAT",
            default=RESTORE.fidelity,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="0 = highest quality (rely on the codebook), 1 = closest to the input face. CodeFormer's w, VQFR v2's "
            "fidelity ratio. Not applicable to RestoreFormer, RestoreFormer++ and VQFR v1 (ignored, noted in the log); "
            "CodeFormer colorization/inpainting use their fixed official values.",
        ),
        In(
            "per_face_fidelity",
            "STRING",
            default="",
            optional=True,
            tooltip="Optional: one fidelity per crop, comma-separated in batch order (e.g. '0.3, 0.7' for two faces). "
            "Overrides 'fidelity'; a single value applies to every crop. Leave empty to use 'fidelity'.",
        ),
    )
    OUTPUTS = (Out("IMAGE", "crops", "The restored crops: same count, size and order as the input crops."),)

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeResult:
        crops: torch.Tensor = kwargs["crops"]
        managed = kwargs["model"]
        fidelity = float(kwargs.get("fidelity", RESTORE.fidelity))
        require_family(managed, "codebook", cls.DISPLAY_NAME)
        x = image_to_bchw(crops, "crops")
        b, _, h, w = x.shape
        if b == 0 or is_placeholder(crops):  # no face upstream: pass it through, run nothing
            return NodeResult((crops,), {"text": [NO_FACE]})
        if h != w:
            raise ValueError(
                f"{cls.DISPLAY_NAME}: crops must be square face crops; got {w}x{h}. Use the crops from 'FaceMend Detect' "
                "or crop the image to a square first."
            )
        per_face = parse_fidelity_list(kwargs.get("per_face_fidelity"), count=b)
        plan = plan_controls(managed.model, {"fidelity": per_face if per_face is not None else fidelity}, b)
        progress = Progress(b, desc=cls.DISPLAY_NAME)
        try:
            out = restore_batch(managed, x, plan, progress=progress)
        finally:
            progress.close()
        return NodeResult((bchw_to_image(out),), {"text": [plan.summary(managed.model)]})


NODES: list[type[NodeDef]] = [FaceMendCodebookRestore]
