"""Detect, restore and paste back in one pass: what 'FaceMend Restore Faces' and ``facemend restore`` run.

The same library calls as the modular chain (Detect -> the family's restore node -> Paste Back),
plus the per-face options of the one-node restore: an automatic per-face fidelity/strength from
each face's degradation score (:mod:`facemend.face.quality`), and leaving faces that need no
restoration alone (they are not restored, and the output there is the input bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model_loaders import RESTORE, ControlPlan, restore_batch, restore_faces_plan
from ..runtime import ManagedModel, Progress
from .models import FaceModels
from .pipeline import detect_and_align, paste_back
from .quality import DEFAULT_SETTINGS, assess_faces
from .records import FaceSet
from .settings import DETECT, PASTE


@dataclass(frozen=True)
class RestoreOptions:
    """The one-node restore's settings (defaults: :data:`DETECT`, :data:`PASTE`, the restore widgets).

    Attributes:
        fidelity, strength: the Restore Faces widgets (the model's family picks the one it takes).
        threshold, select, indices: which faces are restored.
        mask, color, opacity: how they are blended back.
        auto: each face's fidelity/strength follows its degradation score (a clean face keeps its
            identity; a ruined face gets ``fidelity``/``strength``).
        leave_alone_below: faces whose degradation score is below this are not restored (0 = off).
    """

    fidelity: float = RESTORE.fidelity
    strength: float = RESTORE.strength
    threshold: float = DETECT.threshold
    select: str = DETECT.select
    indices: str = DETECT.indices
    mask: str = PASTE.mask
    color: str = PASTE.color
    opacity: float = PASTE.opacity
    auto: bool = False
    leave_alone_below: float = 0.0


#: The one-node restore's defaults (Restore Faces' widgets and ``facemend restore``'s options).
RESTORE_FACES = RestoreOptions()


@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore_faces` returns.

    Attributes:
        image: ``(B, 3, H, W)`` float32, ``[0, 1]`` (channels-last memory).
        mask: ``(B, H, W)`` float32 blend mask (0 = original pixel, untouched).
        faces: every face found and selected (restored or left alone).
        restored: ``(N,)`` bool, which of ``faces`` were restored.
        scores: ``(N,)`` degradation scores when the options needed them, else ``None``.
        plan: the controls the restored faces got (``None`` when no face was restored).
    """

    image: torch.Tensor
    mask: torch.Tensor
    faces: FaceSet
    restored: torch.Tensor
    scores: torch.Tensor | None
    plan: ControlPlan | None

    def summary(self, model: object) -> str:
        """One line for the node / the terminal."""
        n, done = len(self.faces), int(self.restored.sum())
        if n == 0:
            return "no face found: image passed through"
        text = f"{done} of {n} face(s) in {self.faces.num_frames} frame(s) restored"
        if self.scores is not None:
            text += "; degradation " + ", ".join(f"{float(s):.2f}" for s in self.scores[:12])
        if done < n:
            text += f"; {n - done} clean face(s) left alone"
        if self.plan is not None:
            text += f"; {self.plan.summary(model)}"
        return text


def restore_faces(
    models: FaceModels, managed: ManagedModel, frames: torch.Tensor, options: RestoreOptions,
    progress: Progress | None = None,
) -> RestoreResult:
    """Detect the faces of ``frames``, restore them with ``managed``'s model and paste them back.

    Args:
        models: detector (and parser for parsing masks).
        managed: a restorer of a family Restore Faces takes (family table).
        frames: ``(B, 3, H, W)`` RGB float in ``[0, 1]`` (a view of an IMAGE is fine; never modified).
        options: see :class:`RestoreOptions`.
        progress: one bar for the whole pass: a step per frame detected, then per face restored
            and pasted (its total grows once the faces are known).

    Raises:
        ValueError: a model Restore Faces does not run, or bad options (from the library calls).
    """
    model = managed.model
    detected = detect_and_align(
        models, frames, threshold=options.threshold, select=options.select, indices=options.indices,
        crop_size=model.input_size or DETECT.crop_size, alignment=model.framing.fit, framing=model.framing,
        progress=progress,
    )
    faces, crops = detected.faces, detected.crops
    n = len(faces)
    b, _, h, w = frames.shape
    if n == 0:
        mask = torch.zeros(b, h, w)
        return RestoreResult(frames, mask, faces, torch.zeros(0, dtype=torch.bool), None, None)
    scores = None
    if options.auto or options.leave_alone_below > 0:
        scores = assess_faces(crops, faces, DEFAULT_SETTINGS).score
    keep = torch.ones(n, dtype=torch.bool) if scores is None else scores >= options.leave_alone_below
    kept = int(keep.sum())
    if progress is not None:
        progress.extend(b + kept + n)
    plan = None
    restored = crops
    if kept:
        plan = restore_faces_plan(model, options.fidelity, options.strength, kept,
                                  scores=scores[keep].tolist() if options.auto and scores is not None else None)
        out = restore_batch(managed, crops[keep] if kept < n else crops, plan, progress=progress)
        if kept < n:
            restored = crops.clone()
            restored[keep] = out.to(restored.dtype)
        else:
            restored = out
    opacity = options.opacity if kept == n else torch.where(keep, options.opacity, 0.0)
    image, mask = paste_back(frames, restored, faces, mask=options.mask, color=options.color, opacity=opacity,
                             models=models, progress=progress)
    return RestoreResult(image, mask, faces, keep, scores, plan)
