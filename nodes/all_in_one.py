"""FaceMend Restore Faces: detect, align, restore and paste back in one node.

A thin node over the same library code as the modular chain
(``FaceMend Detect`` -> the family's restore node -> ``FaceMend Paste Back``):
:func:`facemend.face.pipeline.detect_and_align` with the model's own face framing,
:func:`facemend.model_loaders.restore_batch` with :func:`~facemend.model_loaders.restore_faces_plan`
(the family table says which widget drives which family), and
:func:`facemend.face.pipeline.paste_back`. With the same settings it gives the same pixels as the
chain.
"""

from __future__ import annotations

from typing import Any

import torch

from ..face.color import COLOR_MODES
from ..face.masks import MASK_MODES
from ..face.models import FaceModels
from ..face.restore import RESTORE_FACES, RestoreOptions, restore_faces
from ..face.selection import SELECTIONS
from ..face.settings import DETECT, PASTE
from ..model_loaders import RESTORE
from ..model_loaders.controls import check_restore_faces_model
from ..runtime import Progress
from .images import check_finite, rgb_view
from .spec import In, NodeDef, NodeResult, Out

NODE_NAME = "FaceMend Restore Faces"


class FaceMendRestoreFaces(NodeDef):
    """Detect, restore and paste back every chosen face of an image batch in one step."""

    NODE_ID = "FaceMendRestoreFaces"
    DISPLAY_NAME = NODE_NAME
    CATEGORY = "FaceMend/restore"
    DESCRIPTION = (
        "The one-node face restore: finds the faces (RetinaFace), aligns each to the framing its model was trained on, restores it "
        "with the loaded GFPGAN, CodeFormer, RestoreFormer(++), VQFR or GPEN model and blends it back with a soft "
        "mask. Same code and same result as the chain Detect -> Codebook Restore / CS-SFT Modulate / GPEN Restore -> "
        "Paste Back; use "
        "that chain to put other nodes (an SD img2img pass, Diffusion Refine) between the steps. Images without "
        "faces pass through unchanged with an empty mask."
    )
    INPUTS = (
        In("image", "IMAGE", "Image or batch of frames whose faces to restore (e.g. the output of VAE Decode)."),
        In("model", "FACEMEND_MODEL", "A face restorer from 'FaceMend Load Model': GFPGAN, CodeFormer, "
           "RestoreFormer(++), VQFR or GPEN. Refusion/IR-SDE models go to 'FaceMend Diffusion Refine'."),
        In("detector", "FACEMEND_DETECTOR", "Face detector from 'FaceMend Load Face Detector' (with a parser "
           "for the parsing masks)."),
        In("fidelity", "FLOAT", "Only for CodeFormer and VQFR v2 (ignored by GFPGAN, RestoreFormer(++) and VQFR v1; "
           "the log says so): 0 = highest quality (rely on the learned face codebook), 1 = closest to the input "
           "face.", default=RESTORE.fidelity, min=0.0, max=1.0, step=0.01),
        In("strength", "FLOAT", "Only for GFPGAN and GPEN (ignored by the codebook models; the log says so). GFPGAN: "
           "CS-SFT strength, how strongly the input face steers the StyleGAN2 prior (1 = the paper, lower = more "
           "generated detail, higher = closer to the input). GPEN: blend of the restored face with the input "
           "(0-1, 1 = fully restored).", default=RESTORE.strength, min=0.0, max=3.0, step=0.05),
        In("select", "COMBO", "Which faces to restore: all, the largest one, or the numbers listed in 'indices'.",
           default=DETECT.select, options=SELECTIONS),
        In("indices", "STRING", "With select = indices: face numbers, largest face first, counted from 0, e.g. "
           "'0,2' or '1-3' (the numbers 'FaceMend Detect' shows on its preview with order = area).", default=DETECT.indices),
        In("mask", "COMBO", "Blend mask: box (feathered square), parsing (face parts; needs a detector loaded with "
           "a parser) or box+parsing.", default=PASTE.mask, options=MASK_MODES),
        In("color_correction", "COMBO", "Match the restored face's colours to the original: none, adain (mean and "
           "contrast), wavelet (low frequencies from the original) or histogram.", default=PASTE.color,
           options=COLOR_MODES),
        In("opacity", "FLOAT", "How strongly the restored faces replace the original ones (1 = fully).",
           default=PASTE.opacity, min=0.0, max=1.0, step=0.01),
        In("auto_per_face", "BOOLEAN", "Restore each face only as much as it needs: its fidelity (codebook models) or "
           "strength (GFPGAN, GPEN) follows its degradation score (see 'FaceMend Face Quality'). A ruined face gets "
           "the fidelity/strength above, a clean face keeps its identity (fidelity 1; GFPGAN strength 1.5; GPEN "
           "strength 0), faces in between a mix.", default=RESTORE_FACES.auto, optional=True),
        In("leave_alone_below", "FLOAT", "Faces whose degradation score is below this are not restored at all: the "
           "output there is the input, bit for bit (0 = restore every face; 0.15 leaves sharp, well-lit faces "
           "alone).", default=RESTORE_FACES.leave_alone_below, min=0.0, max=1.0, step=0.01, optional=True),
    )
    OUTPUTS = (
        Out("IMAGE", "image", "The image(s) with the chosen faces restored."),
        Out("MASK", "mask", "Where and how much restored faces were blended in (0 = original pixel, untouched)."),
    )

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        managed = kw["model"]
        models = kw["detector"]
        model = getattr(managed, "model", None)
        if getattr(model, "family", None) is None:
            raise ValueError(f"{NODE_NAME}: the 'model' input is not a FaceMend model; connect a 'FaceMend Load Model' node.")
        if not isinstance(models, FaceModels):
            raise ValueError(f"{NODE_NAME}: 'detector' must come from 'FaceMend Load Face Detector'.")
        mask_mode = kw.get("mask", PASTE.mask)
        if mask_mode != "box" and models.parser is None:
            raise ValueError(
                f"{NODE_NAME}: the {mask_mode} mask needs a face parser; choose bisenet or parsenet in 'FaceMend Load "
                "Face Detector', or use the box mask."
            )
        fidelity = float(kw.get("fidelity", RESTORE.fidelity))
        strength = float(kw.get("strength", RESTORE.strength))
        try:
            check_restore_faces_model(model)
        except ValueError as e:
            raise ValueError(f"{NODE_NAME}: {e}") from None

        image: torch.Tensor = kw["image"]
        frames = rgb_view(image)
        check_finite(frames)
        options = RestoreOptions(
            fidelity=fidelity, strength=strength, select=kw.get("select", DETECT.select),
            indices=kw.get("indices", DETECT.indices), mask=mask_mode, color=kw.get("color_correction", PASTE.color),
            opacity=float(kw.get("opacity", PASTE.opacity)), auto=bool(kw.get("auto_per_face", RESTORE_FACES.auto)),
            leave_alone_below=float(kw.get("leave_alone_below", RESTORE_FACES.leave_alone_below)),
        )
        # One bar for the whole node: a step per frame detected, then per face restored and pasted.
        progress = Progress(frames.shape[0], NODE_NAME)
        try:
            result = restore_faces(models, managed, frames, options, progress=progress)
        finally:
            progress.close()
        if len(result.faces) == 0:
            out = image if image.shape[-1] == 3 else frames.permute(0, 2, 3, 1).contiguous()
            return NodeResult((out, result.mask), ui={"text": [result.summary(model)]})
        return NodeResult((result.image.permute(0, 2, 3, 1), result.mask), ui={"text": [result.summary(model)]})


NODES: list[type[NodeDef]] = [FaceMendRestoreFaces]
