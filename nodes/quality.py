"""FaceMend Face Quality: how degraded each face is, and the per-face controls that follow from it.

Thin node over :func:`facemend.face.quality.assess_faces`; the mappings and defaults live in
:class:`facemend.face.quality.QualitySettings`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..face.quality import CUE_NAMES, DEFAULT_SETTINGS, assess_faces, format_values
from ..face.records import FaceSet
from .images import check_finite, is_placeholder, rgb_view
from .spec import In, NodeDef, NodeResult, Out

#: Largest temporal smoothing offered on the node, in frames.
MAX_SMOOTHING = 30.0
#: Faces listed one per line in the node's text; the rest are summarised.
UI_LINES = 12


class FaceMendFaceQuality(NodeDef):
    """Score each face crop's degradation and turn the scores into per-face fidelity, strength and opacity."""

    NODE_ID = "FaceMendFaceQuality"
    DISPLAY_NAME = "FaceMend Face Quality"
    CATEGORY = "FaceMend/face"
    DESCRIPTION = (
        "Measures how degraded each face crop is, from 0 (clean) to 1 (ruined): the face's size in the source image, "
        "blur, noise and JPEG blocking, measured at the face's own pixel scale (no model). Turns the scores into one "
        "fidelity per face for 'FaceMend Codebook Restore' (per_face_fidelity), one strength per face for GAN-prior "
        "models, and one paste-back opacity per face (good faces are left alone). Connect 'faces' from 'FaceMend "
        "Detect' for the resolution cue, JPEG blocks on the source grid and video smoothing."
    )
    INPUTS = (
        In("crops", "IMAGE", "Aligned face crops, e.g. the crops output of 'FaceMend Detect' (before restoring). "
           "An empty batch gives empty strings."),
        In("clean_fidelity", "FLOAT", "Fidelity given to a clean face (score 0): 1 keeps its identity and detail.",
           default=DEFAULT_SETTINGS.clean_fidelity, min=0.0, max=1.0, step=0.01),
        In("ruined_fidelity", "FLOAT", "Fidelity given to a ruined face (score 1): low values let the codebook "
           "rebuild it. Scores in between are interpolated linearly.", default=DEFAULT_SETTINGS.ruined_fidelity,
           min=0.0, max=1.0, step=0.01),
        In("video_smoothing", "FLOAT", "Video: smooth each face's score over time along its track, sigma in frames, "
           "so restoration strength does not flicker (0 = off). Needs 'faces' from Detect in video mode.",
           default=DEFAULT_SETTINGS.track_sigma, min=0.0, max=MAX_SMOOTHING, step=0.5),
        In("faces", "FACEMEND_FACES", "Optional: the faces output of the same 'FaceMend Detect'. Gives each face's "
           "source resolution, the source pixel grid (JPEG blocks) and video tracks; without it crops are taken as "
           "native-resolution images.", optional=True),
    )
    OUTPUTS = (
        Out("STRING", "scores", "Degradation score per face, comma-separated in face order (0 = clean, 1 = ruined)."),
        Out("STRING", "fidelity", "Fidelity per face for 'FaceMend Codebook Restore' per_face_fidelity."),
        Out("STRING", "strength", "CS-SFT strength per face for 'FaceMend CS-SFT Modulate' per_face_strength (GFP-GAN): "
            "higher for clean faces (stay close to them), lower for ruined ones (lean on the prior)."),
        Out("STRING", "opacity", "Paste-back opacity per face for 'FaceMend Paste Back' per_face_opacity: 0 leaves a "
            "clean face untouched, 1 pastes the restored face fully. Also a per_face_strength for 'FaceMend GPEN "
            "Restore' (its strength blends the restored face with the input)."),
    )

    @classmethod
    def execute(cls, **kw: Any) -> NodeResult:
        """Score the crops (IMAGE ``(N, S, S, C)``); outputs are ``", "``-separated strings in face order.

        Raises:
            ValueError: a fidelity outside ``[0, 1]`` or NaN, a negative/NaN smoothing, ``faces`` that
                is not a FaceSet or does not match the crops, non-square crops, NaN crops.
        """
        values = {name: float(kw.get(name, default)) for name, default in (
            ("clean_fidelity", DEFAULT_SETTINGS.clean_fidelity), ("ruined_fidelity", DEFAULT_SETTINGS.ruined_fidelity),
            ("video_smoothing", DEFAULT_SETTINGS.track_sigma))}  # ranges checked by NodeDef (check_numbers)
        faces = kw.get("faces")
        if faces is not None and not isinstance(faces, FaceSet):
            raise ValueError(f"{cls.DISPLAY_NAME}: 'faces' must come from 'FaceMend Detect'.")
        crops = rgb_view(kw["crops"], "crops", allow_empty=True)
        n, _, h, w = crops.shape
        if n == 0 or (is_placeholder(kw["crops"]) and (faces is None or len(faces) == 0)):  # Detect kept no face
            return NodeResult(("", "", "", ""), {"text": ["no face crops: nothing to score"]})
        if h != w:
            raise ValueError(f"{cls.DISPLAY_NAME}: crops must be square aligned face crops; got {w}x{h}. Use the crops "
                             "of 'FaceMend Detect'.")
        check_finite(crops, "crops")
        settings = dataclasses.replace(
            DEFAULT_SETTINGS, clean_fidelity=values["clean_fidelity"], ruined_fidelity=values["ruined_fidelity"],
            track_sigma=values["video_smoothing"],
        )
        q = assess_faces(crops, faces, settings)
        lines = []
        if faces is None:
            lines.append("no faces input: crops taken at native resolution (connect 'faces' for the resolution cue)")
            if values["video_smoothing"] > 0:
                lines.append("video_smoothing needs the faces input; not applied")
        for i in range(min(n, UI_LINES)):
            cues = ", ".join(f"{name} {float(c):.2f}" for name, c in zip(CUE_NAMES, q.cues[i]))
            lines.append(f"face {i}: score {float(q.score[i]):.2f} ({cues}) -> fidelity {float(q.fidelity[i]):.2f}, "
                         f"strength {float(q.strength[i]):.2f}, opacity {float(q.opacity[i]):.2f}")
        if n > UI_LINES:
            lines.append(f"... {n - UI_LINES} more; scores {float(q.score.min()):.2f} to {float(q.score.max()):.2f}")
        out = (format_values(q.score), format_values(q.fidelity), format_values(q.strength), format_values(q.opacity))
        return NodeResult(out, {"text": lines})


NODES: list[type[NodeDef]] = [FaceMendFaceQuality]
