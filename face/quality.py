"""Per-face degradation score: how much each face needs restoring, from what the pipeline already has.

No model weights: four cues, each in ``[0, 1]`` (0 = clean, 1 = ruined), measured on the face's
luminance *at the face's own scale* (source pixels, through the alignment affine), combined into one
score in ``[0, 1]``. Every default lives in :class:`QualitySettings`; ``benchmarks/bench_quality.py``
measured them (its table is in ``benchmarks/README.md``).

The analysis grid. An aligned crop usually shows its face enlarged (``s = face_scale``, source px
per crop px, is 0.25-0.4 for the 120-200 px faces of ordinary photos in a 512 crop). Blur, noise
and JPEG blocks are properties of *source* pixels: enlarged 3x, a sharp face looks blurred per crop
pixel, its noise is smeared over three crop pixels and JPEG's 8x8 blocks are 25 px and rotated. So
a window over the central face (FFHQ-512 ``x 128..384, y 160..416``: eyes, nose, mouth) is
resampled back onto the source's own pixel grid, axes and all (one grid px per source px, each
grid px on an integer source pixel; box average by the whole part of the shrink, then
:func:`~facemend.face.warp.resample`'s windowed-sinc warp). A face larger than its crop (``s > 1``)
is analysed at crop resolution, what the restorer sees. Without geometry the crop is the grid.
A face's window covers the same source pixels whatever else is in the batch, so batched scores
equal per-face scores (to float rounding).

The cues. Each raw measure becomes a cue through :func:`anchor_ramp`: a logistic curve in log
scale that is 0.05 at a *clean* anchor and 0.95 at a *ruined* anchor. Strictly increasing (no two
degradation levels tie) and flat well below the clean anchor, so what clean photos have anyway
costs almost nothing, and a degradation that lowers some measure as a side effect (blur smooths
away grain and JPEG blocks) can hardly lower the score. Clean anchors sit at the top of what the
benchmark's undegraded faces measure; ruined anchors near its heaviest levels.

* **resolution**: side of the FFHQ face square in source px (``crop_size / padding * s``).
  Anchors 128 px (clean) and 24 px (ruined): a face pasted back at 128 px or more has the pixels
  for its detail; at 24 px (a 15 px detection box) identity detail is gone and the restorer must
  invent it. Constant for a face whatever its pixels: it shifts scores, it cannot rank
  degradations of one face. Chosen by reasoning (the benchmark's faces are 117-204 px).
* **blur**: edge width, a Gaussian sigma in grid px (source px; crop px for a face larger than its
  crop, whose sharpness the crop then limits). A step edge blurred by ``sigma`` has peak
  gradient ~``1/sigma``; re-blurred by ``a = 2`` px, ``~1/sqrt(sigma^2 + a^2)``; so on the
  strongest 10% of edges ``sigma = a / sqrt(R^2 - 1)`` with ``R^2`` the ratio of the gradient
  energies (Sobel), the noise's expected share subtracted from both. It does not saturate (a
  finest/next-octave energy ratio, tried first, floors at 1/9 beyond sigma 3). Undegraded faces
  measure 1.19-1.46 (the Sobel operator's own width included); Gaussian blur 0.8 / 1.5 / 2.5 / 4 /
  6 px gives 1.4-1.8 / 1.8-2.6 / 2.5-4.3 / 3.8-5.4 / 5.6-7.0; down-and-up scaling by 2 / 3 / 6
  gives 1.4-1.7 / 1.7-2.0 / 2.5-4.0. Anchors 1.3 and 4.0 px.
* **noise**: noise std in 0-1 luminance units on the grid, Immerkaer's estimator (3x3 second
  differences, blind to shading) made robust to edges and texture with the median of ``|r|``
  (Gaussian: median = 0.6745 std). The crop's interpolation attenuates it: added noise of 4 / 8 /
  14 / 22 / 35 (of 255) measures 1.4-2.5 / 2.6-3.6 / 4.3-5.8 / 6.6-8.2 / 10.3-12.4 (of 255);
  undegraded faces 0.25-0.6, the astronaut's film grain 1.75. Anchors 0.01 (2.5/255) and 0.04
  (10/255).
* **blocking**: JPEG's 8x8 grid, on a window 1.5x larger (more blocks, steadier). Neighbour
  differences averaged per position modulo 8 on both axes; the strongest phase's excess over the
  other seven (an absolute difference: noise raises every phase alike), divided by the mean
  neighbour difference of the sigma-2 blurred window (contrast, which JPEG leaves intact). The
  phase is searched, so a photo cropped before Detect still works. Measured only where the grid is
  the source grid (``s <= 1``, or crops without geometry, taken as native): a face shrunk into its
  crop has its blocks averaged away. Undegraded faces 0.14 (PNG) to 0.55 (the group photo, itself
  a JPEG of quality ~70); quality 40 / 30 / 20 / 12 / 6 measures 0.5-1.0 / 0.65-1.2 / 0.9-1.65 /
  1.4-2.3 / 2.3-3.4. Anchors 0.6 and 2.5: a good JPEG counts as clean.

Combination: a noisy-OR, ``score = 1 - prod_i (1 - w_i * cue_i)``. ``w_i`` is the score that cue
alone gives when maximal. Independent degradations compound (blur *and* noise is worse than
either), one ruined cue is enough for a high score, and the score rises strictly with every cue,
so it ranks degradations even where one cue (resolution) is constant. Weights: blur 0.95 and
noise 0.95 (either alone can destroy a face), blocking 0.6 (even heavy JPEG keeps a face's
coarse structure), resolution 0.7 (a tiny face needs the
prior, but a small clean face is not a ruined one). The anchors and weights were picked from a
random grid search (``bench_quality.py --tune``): among settings whose worst Spearman rank
correlation between level and score is >= 0.9 for every face and family, the one with the largest
mean separation between a face and its mildest degradation.

The measuring itself (grid, filters, and why they are hand-written where they are) is
:mod:`facemend.face.degradation`; this module turns its measures into cues, a score and controls.

Mappings to controls: :func:`fidelity_from_score` (Codebook Restore's per-face fidelity),
:func:`strength_from_score` (CS-SFT Modulate / GPEN strength), :func:`opacity_from_score` (Paste
Back's per-face opacity: leave good faces alone), :func:`smooth_along_tracks` (video); and
:func:`assess_faces`, which does it all for nodes and the CLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .degradation import Measures, measure_faces
from .records import FaceSet
from .tracking import smooth_tracks

__all__ = [
    "CUE_NAMES", "DEFAULT_SETTINGS", "Cues", "FaceQuality", "Measures", "QualitySettings", "anchor_ramp",
    "assess_faces", "combine_cues", "cues_from_measures", "degradation_cues", "degradation_score",
    "fidelity_from_score", "format_values", "measure_faces", "opacity_from_score",
    "smooth_along_tracks", "source_scale", "strength_from_score",
]

#: The cues, in :class:`Cues` order.
CUE_NAMES = ("resolution", "blur", "noise", "blocking")


@dataclass(frozen=True)
class QualitySettings:
    """Every default of the quality stage (one source for nodes, CLI and library).

    Cue anchors: each raw measure maps to a cue that is 0.05 at its *clean* anchor and 0.95 at its
    *ruined* anchor, logistic in log scale (:func:`anchor_ramp`).

    Attributes:
        res_clean_px, res_ruined_px: face-square side in source px.
        blur_clean_px, blur_ruined_px: edge width (Gaussian sigma) in source px.
        noise_clean, noise_ruined: noise std in ``[0, 1]`` luminance units.
        block_clean, block_ruined: block-boundary strength (phase excess / smooth activity).
        w_resolution, w_blur, w_noise, w_blocking: noisy-OR weights (score of that cue alone at 1).
        clean_fidelity, ruined_fidelity: fidelity for a score of 0 and 1 (Codebook Restore).
        clean_strength, ruined_strength: CS-SFT/GPEN strength for a score of 0 and 1.
        leave_alone_below, full_opacity_at: paste-back opacity 0 up to the first score, 1 from the
            second, smooth in between (both 0: every face pasted fully). The undegraded faces of
            ``benchmarks/bench_quality.py`` score 0.05-0.14.
        track_sigma: temporal smoothing of the score along video tracks, in frames (0 = off).
    """

    res_clean_px: float = 128.0
    res_ruined_px: float = 24.0
    blur_clean_px: float = 1.3
    blur_ruined_px: float = 4.0
    noise_clean: float = 0.01
    noise_ruined: float = 0.04
    block_clean: float = 0.6
    block_ruined: float = 2.5
    w_resolution: float = 0.7
    w_blur: float = 0.95
    w_noise: float = 0.95
    w_blocking: float = 0.6
    clean_fidelity: float = 1.0
    ruined_fidelity: float = 0.3
    clean_strength: float = 1.5
    ruined_strength: float = 0.8
    leave_alone_below: float = 0.1
    full_opacity_at: float = 0.3
    track_sigma: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not math.isfinite(v):
                raise ValueError(f"FaceMend quality: {f.name} must be a finite number, got {v}")
        for name in ("res_clean_px", "res_ruined_px", "blur_clean_px", "blur_ruined_px", "noise_clean",
                     "noise_ruined", "block_clean", "block_ruined"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FaceMend quality: {name} must be > 0, got {getattr(self, name)}")
        for name in ("w_resolution", "w_blur", "w_noise", "w_blocking", "clean_fidelity", "ruined_fidelity",
                     "leave_alone_below", "full_opacity_at"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FaceMend quality: {name} must be between 0 and 1, got {getattr(self, name)}")
        if self.full_opacity_at < self.leave_alone_below:
            raise ValueError("FaceMend quality: full_opacity_at must be >= leave_alone_below")
        if self.track_sigma < 0 or self.clean_strength < 0 or self.ruined_strength < 0:
            raise ValueError("FaceMend quality: track_sigma and strengths must be >= 0")


DEFAULT_SETTINGS = QualitySettings()


@dataclass(frozen=True)
class Cues:
    """Per-face cues: each ``(N,)`` float32 in ``[0, 1]`` (0 = clean, 1 = ruined), on the crops' device.

    Attributes:
        resolution, blur, noise, blocking: the cues (see the module notes); blocking is 0 where
            it was not measured.
        measures: the raw :class:`Measures` they come from.
    """

    resolution: torch.Tensor
    blur: torch.Tensor
    noise: torch.Tensor
    blocking: torch.Tensor
    measures: Measures

    def stack(self) -> torch.Tensor:
        """``(N, 4)`` the cues in :data:`CUE_NAMES` order."""
        return torch.stack([self.resolution, self.blur, self.noise, self.blocking], dim=1)


def source_scale(faces: FaceSet) -> torch.Tensor:
    """``(N,)`` float64 source pixels per crop pixel of each face (the alignment similarity's scale)."""
    return faces.face_scale()


#: Logistic slope: with it a cue is exactly 0.05 at its clean anchor and 0.95 at its ruined one.
_SLOPE = 2 * math.log(19.0)


def anchor_ramp(x: torch.Tensor, clean: float, ruined: float) -> torch.Tensor:
    """Cue of a positive measure ``x``: a logistic curve in ``log x``, 0.05 at ``clean``, 0.95 at ``ruined``.

    ``t`` is the position of ``log x`` between the anchors (0 at ``clean``, 1 at ``ruined``; either
    order works, e.g. resolution, where fewer pixels is worse) and the cue is
    ``1 / (1 + exp(-5.89 (t - 0.5)))``. Strictly increasing, so a worse measure always gives a
    higher cue and no two levels of a degradation tie; flat well below the clean anchor, so what a
    clean photo has anyway (fine grain, the blocks of a good JPEG) costs almost nothing and a
    degradation that happens to lower such a measure (blur smooths grain away) can hardly lower
    the score. Returns ``x``'s shape, float32, in ``(0, 1)``.
    """
    t = (x.to(torch.float32).clamp_min(1e-6).log() - math.log(clean)) / (math.log(ruined) - math.log(clean))
    return torch.sigmoid(_SLOPE * (t - 0.5))


def cues_from_measures(measures: Measures, settings: QualitySettings = DEFAULT_SETTINGS) -> Cues:
    """Calibrate raw :class:`Measures` into :class:`Cues` with the anchors of ``settings``."""
    m, s = measures, settings
    return Cues(
        resolution=anchor_ramp(m.face_px, s.res_clean_px, s.res_ruined_px),
        blur=anchor_ramp(m.blur_px, s.blur_clean_px, s.blur_ruined_px),
        noise=anchor_ramp(m.noise, s.noise_clean, s.noise_ruined),
        blocking=torch.where(m.block_measured, anchor_ramp(m.blockiness, s.block_clean, s.block_ruined),
                             torch.zeros_like(m.blockiness)),
        measures=m,
    )


def degradation_cues(
    crops: torch.Tensor,
    face_scale: torch.Tensor | None = None,
    *,
    affines: torch.Tensor | None = None,
    padding: float = 1.0,
    settings: QualitySettings = DEFAULT_SETTINGS,
) -> Cues:
    """The four degradation cues of each face crop, each ``(N,)`` float32 in ``[0, 1]``.

    Arguments as :func:`measure_faces`; ``settings`` holds the anchors (:func:`cues_from_measures`).
    """
    return cues_from_measures(measure_faces(crops, face_scale, affines=affines, padding=padding), settings)


def _noisy_or(cues: torch.Tensor, settings: QualitySettings) -> torch.Tensor:
    """``(N, 4)`` cues -> ``(N,)`` ``1 - prod_i (1 - w_i * cue_i)``."""
    w = torch.tensor([settings.w_resolution, settings.w_blur, settings.w_noise, settings.w_blocking],
                     dtype=torch.float32, device=cues.device)
    return (1 - (1 - cues.to(torch.float32) * w).prod(dim=1)).clamp(0.0, 1.0)


def combine_cues(cues: Cues, settings: QualitySettings = DEFAULT_SETTINGS) -> torch.Tensor:
    """Noisy-OR of the cues: ``1 - prod_i (1 - w_i * cue_i)``, ``(N,)`` float32 in ``[0, 1]``."""
    return _noisy_or(cues.stack(), settings)


def degradation_score(
    crops: torch.Tensor,
    face_scale: torch.Tensor | None = None,
    *,
    affines: torch.Tensor | None = None,
    padding: float = 1.0,
    settings: QualitySettings = DEFAULT_SETTINGS,
) -> torch.Tensor:
    """How degraded each face is: ``(N,)`` float32 in ``[0, 1]`` (0 = clean, 1 = ruined), on ``crops``' device.

    Arguments as :func:`degradation_cues`; the cues are combined by :func:`combine_cues`.
    """
    return combine_cues(degradation_cues(crops, face_scale, affines=affines, padding=padding, settings=settings), settings)


def _lerp(score: torch.Tensor, at0: float, at1: float) -> torch.Tensor:
    s = torch.as_tensor(score, dtype=torch.float32).clamp(0.0, 1.0)
    return at0 + (at1 - at0) * s


def fidelity_from_score(
    score: torch.Tensor, clean_fidelity: float = DEFAULT_SETTINGS.clean_fidelity,
    ruined_fidelity: float = DEFAULT_SETTINGS.ruined_fidelity,
) -> torch.Tensor:
    """Codebook fidelity per face: ``clean_fidelity`` at score 0 -> ``ruined_fidelity`` at score 1, linear.

    CodeFormer's ``w`` / VQFR v2's ratio: 1 keeps the input's identity, 0 trusts the codebook. A
    clean face keeps its identity (high fidelity); a ruined face needs the prior (low fidelity).

    Args:
        score: ``(N,)`` degradation scores in ``[0, 1]``.

    Returns:
        ``(N,)`` float32 in ``[min, max]`` of the two fidelities.
    """
    return _lerp(score, clean_fidelity, ruined_fidelity)


def strength_from_score(
    score: torch.Tensor, clean_strength: float = DEFAULT_SETTINGS.clean_strength,
    ruined_strength: float = DEFAULT_SETTINGS.ruined_strength,
) -> torch.Tensor:
    """CS-SFT (GFP-GAN) / GPEN strength per face, linear in the score.

    Strength steers the GAN prior with the input's features (1 = published, above 1 = closer to the
    input, below 1 = more of the prior's face): a clean face gets ``clean_strength`` (1.5: stay close
    to it), a ruined face ``ruined_strength`` (0.8: lean on the prior rather than on its defects).

    Returns:
        ``(N,)`` float32.
    """
    return _lerp(score, clean_strength, ruined_strength)


def opacity_from_score(
    score: torch.Tensor, leave_alone_below: float = DEFAULT_SETTINGS.leave_alone_below,
    full_opacity_at: float = DEFAULT_SETTINGS.full_opacity_at,
) -> torch.Tensor:
    """Paste-back opacity per face: 0 (face left untouched) below ``leave_alone_below``, 1 from
    ``full_opacity_at``, smoothstep between (defaults 0.1 and 0.3, :class:`QualitySettings`). Both 0:
    every face pasted fully.

    Returns:
        ``(N,)`` float32 in ``[0, 1]``.
    """
    s = torch.as_tensor(score, dtype=torch.float32)
    if full_opacity_at <= leave_alone_below:
        return (s >= leave_alone_below).to(torch.float32)
    t = ((s - leave_alone_below) / (full_opacity_at - leave_alone_below)).clamp(0.0, 1.0)
    return t * t * (3 - 2 * t)


def smooth_along_tracks(
    values: torch.Tensor, frame_index: torch.Tensor, track_id: torch.Tensor, sigma: float = 2.0
) -> torch.Tensor:
    """Gaussian smoothing of per-face ``values`` over time within each video track (no flicker).

    Args:
        values: ``(N,)`` float (scores, fidelities, ...), any device.
        frame_index, track_id: ``(N,)`` int64 (``FaceSet.frame_index``, ``FaceSet.track_id``).
        sigma: standard deviation in frames; 0 returns a copy. Runs break at gaps in a track
            (see :func:`~facemend.face.tracking.smooth_tracks`).

    Returns:
        ``(N,)`` smoothed values, ``values``' dtype and device; a face alone in its track is unchanged.
    """
    if values.shape[0] != frame_index.shape[0] or values.shape[0] != track_id.shape[0]:
        raise ValueError("FaceMend quality: values, frame_index and track_id must have one entry per face")
    out = smooth_tracks(frame_index.cpu(), track_id.cpu(), values.detach().cpu().to(torch.float64), float(sigma))
    return out.to(device=values.device, dtype=values.dtype)


def format_values(values: torch.Tensor | list[float], digits: int = 2) -> str:
    """``(N,)`` values -> ``"0.12, 0.80"`` (empty string for no faces); ``facemend.nodes.inputs.parse_per_face`` reads it back."""
    seq = values.tolist() if isinstance(values, torch.Tensor) else list(values)
    return ", ".join(f"{float(v):.{digits}f}" for v in seq)


@dataclass(frozen=True)
class FaceQuality:
    """Per-face assessment and the controls derived from it (all on the CPU, face order).

    Attributes:
        score: ``(N,)`` float32 degradation score in ``[0, 1]`` (after track smoothing, if any).
        cues: ``(N, 4)`` float32 cues in :data:`CUE_NAMES` order (unsmoothed).
        fidelity: ``(N,)`` float32 codebook fidelity (:func:`fidelity_from_score`).
        strength: ``(N,)`` float32 CS-SFT/GPEN strength (:func:`strength_from_score`).
        opacity: ``(N,)`` float32 paste-back opacity (:func:`opacity_from_score`).
    """

    score: torch.Tensor
    cues: torch.Tensor
    fidelity: torch.Tensor
    strength: torch.Tensor
    opacity: torch.Tensor

    def __len__(self) -> int:
        return int(self.score.shape[0])


def assess_faces(
    crops: torch.Tensor,
    faces: FaceSet | None = None,
    settings: QualitySettings = DEFAULT_SETTINGS,
    chunk: int = 32,
) -> FaceQuality:
    """Score every face and map the scores to fidelity, strength and opacity (what nodes and CLI call).

    Args:
        crops: ``(N, 3, S, S)`` RGB float in ``[0, 1]``, any strides and device (e.g. a view of a
            ComfyUI IMAGE); read ``chunk`` faces at a time, never modified.
        faces: the :class:`FaceSet` the crops were cut with (source resolution, source grid,
            tracks), or ``None``: crops taken as native, no tracks.
        settings: anchors, weights, mappings and ``track_sigma`` (smoothing needs ``faces``).
        chunk: faces measured per batch (bounded memory for long videos).

    Returns:
        :class:`FaceQuality`; empty tensors for no faces.
    """
    n = int(crops.shape[0])
    if faces is not None and len(faces) != n:
        raise ValueError(
            f"FaceMend: got {n} crop(s) for {len(faces)} face(s); connect the crops and faces of the same "
            "'FaceMend Detect' node (one crop per face, same order)."
        )
    parts = []
    for i in range(0, n, max(1, int(chunk))):
        sl = slice(i, min(n, i + chunk))
        if faces is None:
            c = degradation_cues(crops[sl], settings=settings)
        else:
            c = degradation_cues(crops[sl], affines=faces.affines[sl], padding=faces.padding, settings=settings)
        parts.append(c.stack().cpu())
    cues = torch.cat(parts) if parts else torch.zeros(0, 4)
    score = _noisy_or(cues, settings)
    if faces is not None and settings.track_sigma > 0 and n:
        score = smooth_along_tracks(score, faces.frame_index, faces.track_id, settings.track_sigma).clamp(0.0, 1.0)
    s = settings
    return FaceQuality(
        score=score, cues=cues,
        fidelity=fidelity_from_score(score, s.clean_fidelity, s.ruined_fidelity),
        strength=strength_from_score(score, s.clean_strength, s.ruined_strength),
        opacity=opacity_from_score(score, s.leave_alone_below, s.full_opacity_at),
    )
