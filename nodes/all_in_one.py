"""FaceMend Restore Faces: detect, align, restore and paste back in one node.

A thin node over the same library code as the modular chain
(``FaceMend Detect`` -> ``FaceMend Codebook Restore`` / ``FaceMend CS-SFT Modulate`` ->
``FaceMend Paste Back``): :func:`facemend.face.pipeline.detect_and_align`,
:func:`facemend.runtime.restore_batch` with the restore nodes' own control mapping, and
:func:`facemend.face.pipeline.paste_back`. With the same settings it gives the same pixels as
the chain.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from .. import runtime
from ..face.color import COLOR_MODES
from ..face.masks import MASK_MODES
from ..face.models import FaceModels
from ..face.pipeline import check_finite, detect_and_align, paste_back, rgb_view
from ..face.selection import SELECTIONS
from .modulate import cs_sft_controls
from .restore import fidelity_controls
from .spec import In, NodeDef, NodeResult, Out

log = logging.getLogger("facemend")

NODE_NAME = "FaceMend Restore Faces"

#: Model families this node runs, and the widget that drives each (the other one does not apply).
FAMILY_CONTROL = {"codebook": "fidelity", "gfpgan": "strength"}


class FaceMendRestoreFaces(NodeDef):
    """Detect, restore and paste back every chosen face of an image batch in one step."""

    NODE_ID = "FaceMendRestoreFaces"
    DISPLAY_NAME = NODE_NAME
    CATEGORY = "FaceMend/restore"
    DESCRIPTION = (
        "The one-node face restore: finds the faces (RetinaFace), aligns each to the FFHQ template, restores it "
        "with the loaded GFPGAN, CodeFormer, RestoreFormer(++) or VQFR model and blends it back with a soft mask. "
        "Same code and same result as the chain Detect -> Codebook Restore / CS-SFT Modulate -> Paste Back; use "
        "that chain to put other nodes (an SD img2img pass, Diffusion Refine) between the steps. Images without "
        "faces pass through unchanged with an empty mask."
    )
    INPUTS = (
        In("image", "IMAGE", "Image or batch of frames whose faces to restore (e.g. the output of VAE Decode)."),
        In("model", "FACEMEND_MODEL", "A face restorer from 'FaceMend Load Model': GFPGAN, CodeFormer, "
           "RestoreFormer(++) or VQFR. Refusion/IR-SDE models go to 'FaceMend Diffusion Refine'."),
        In("detector", "FACEMEND_DETECTOR", "Face detector from 'FaceMend Load Face Detector' (with a parser "
           "for the parsing masks)."),
        In("fidelity", "FLOAT", "Only for CodeFormer and VQFR v2 (ignored by GFPGAN, RestoreFormer(++) and VQFR v1; "
           "the log says so): 0 = highest quality (rely on the learned face codebook), 1 = closest to the input "
           "face.", default=0.5, min=0.0, max=1.0, step=0.01),
        In("strength", "FLOAT", "Only for GFPGAN (ignored by the codebook models; the log says so): CS-SFT "
           "strength, how strongly the input face steers the StyleGAN2 prior. 1 = the paper, lower = more "
           "generated detail, higher = closer to the input.", default=1.0, min=0.0, max=3.0, step=0.05),
        In("select", "COMBO", "Which faces to restore: all, the largest one, or the numbers listed in 'indices'.",
           default="all", options=SELECTIONS),
        In("indices", "STRING", "With select = indices: face numbers, largest face first, counted from 0, e.g. "
           "'0,2' or '1-3' (the numbers 'FaceMend Detect' shows on its preview with order = area).", default="0"),
        In("mask", "COMBO", "Blend mask: box (feathered square), parsing (face parts; needs a detector loaded with "
           "a parser) or box+parsing.", default="box", options=MASK_MODES),
        In("color_correction", "COMBO", "Match the restored face's colours to the original: none, adain (mean and "
           "contrast), wavelet (low frequencies from the original) or histogram.", default="none",
           options=COLOR_MODES),
        In("opacity", "FLOAT", "How strongly the restored faces replace the original ones (1 = fully).",
           default=1.0, min=0.0, max=1.0, step=0.01),
    )
    OUTPUTS = (
        Out("IMAGE", "image", "The image(s) with the chosen faces restored."),
        Out("MASK", "mask", "Where and how much restored faces were blended in (0 = original pixel, untouched)."),
    )

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        managed = kw["model"]
        models = kw["detector"]
        family = check_model(managed)
        if not isinstance(models, FaceModels):
            raise ValueError(f"{NODE_NAME}: 'detector' must come from 'FaceMend Load Face Detector'.")
        mask_mode = kw.get("mask", "box")
        if mask_mode != "box" and models.parser is None:
            raise ValueError(
                f"{NODE_NAME}: the {mask_mode} mask needs a face parser; choose bisenet or parsenet in 'FaceMend Load "
                "Face Detector', or use the box mask."
            )
        fidelity = float(kw.get("fidelity", 0.5))
        strength = float(kw.get("strength", 1.0))
        for name, value, top in (("fidelity", fidelity, 1.0), ("strength", strength, 3.0)):
            if not math.isfinite(value) or not 0.0 <= value <= top:
                raise ValueError(f"{NODE_NAME}: {name} must be between 0 and {top:g}, got {value}.")

        image: torch.Tensor = kw["image"]
        frames = rgb_view(image)
        check_finite(frames)
        model = managed.model
        progress = runtime.Progress(frames.shape[0], "FaceMend detect")
        try:
            det = detect_and_align(
                models, frames, select=kw.get("select", "all"), indices=kw.get("indices", "0"),
                crop_size=model.spec.input_size or 512, progress=progress,
            )
        finally:
            progress.close()
        n = len(det.faces)
        if n == 0:
            b, h, w = frames.shape[0], frames.shape[2], frames.shape[3]
            out = image if image.shape[-1] == 3 else frames.permute(0, 2, 3, 1).contiguous()
            return NodeResult((out, torch.zeros(b, h, w)), ui={"text": ["no face found: image passed through"]})

        controls, per_item, note = model_controls(model, family, fidelity=fidelity, strength=strength, count=n)
        progress = runtime.Progress(n, NODE_NAME)
        try:
            restored = runtime.restore_batch(managed, det.crops, controls=controls, per_item=per_item, progress=progress)
        finally:
            progress.close()
        progress = runtime.Progress(n, "FaceMend paste")
        try:
            result, mask = paste_back(
                frames, restored, det.faces, mask=mask_mode, color=kw.get("color_correction", "none"),
                opacity=float(kw.get("opacity", 1.0)), models=models, progress=progress,
            )
        finally:
            progress.close()
        text = f"{n} face(s) in {det.faces.num_frames} frame(s) restored; {note}"
        return NodeResult((result.permute(0, 2, 3, 1), mask), ui={"text": [text]})


def check_model(managed: Any) -> str:
    """The family of the wired-in model (``"codebook"`` or ``"gfpgan"``), or a clear ``ValueError``."""
    family = getattr(getattr(managed, "model", None), "family", None)
    if family == "refusion":
        model = managed.model
        raise ValueError(
            f"{NODE_NAME}: {model.spec.display_name} ({model.arch}) is a diffusion refiner, not a face restorer. "
            "Use 'FaceMend Detect' -> 'FaceMend Diffusion Refine' -> 'FaceMend Paste Back' for it, and give this node "
            "a GFPGAN, CodeFormer, RestoreFormer or VQFR model."
        )
    if family not in FAMILY_CONTROL:
        runtime.require_family(managed, "codebook", NODE_NAME)  # raises: not a FaceMend model
    return str(family)


def model_controls(
    model: Any, family: str, *, fidelity: float, strength: float, count: int
) -> tuple[dict[str, Any], dict[str, list[float]], str]:
    """Controls for ``runtime.restore_batch`` from this node's widgets, through the modular nodes'
    own mapping (``restore.fidelity_controls`` / ``modulate.cs_sft_controls``).

    Returns ``(controls, per_item, note)``; the widget that does not apply to ``family`` is logged
    as ignored and named in ``note``.
    """
    if family == "codebook":
        controls, per_item, note = fidelity_controls(model, fidelity, None, count)
        unused = "strength"
    else:
        controls, per_item = cs_sft_controls(count, strength=strength)
        note = f"{model.spec.display_name}: strength {strength:g}"
        unused = "fidelity"
    log.info("FaceMend: %s: %s does not apply to %s (%s); the value is ignored", NODE_NAME, unused,
             model.spec.display_name, model.arch)
    return controls, per_item, f"{note}; {unused} does not apply"


NODES: list[type[NodeDef]] = [FaceMendRestoreFaces]
