"""The face pipeline's two public entry points, for nodes (Detect, Paste Back, Restore Faces) and scripts.

* :func:`detect_and_align`: frames -> aligned crops + :class:`~facemend.face.records.FaceSet`.
* :func:`paste_back`: frames + (restored) crops + FaceSet -> frames + blend mask.

Frames are ``(B, 3, H, W)`` RGB float in ``[0, 1]``. They may be a zero-copy view of a ComfyUI
IMAGE (:func:`facemend.nodes.images.rgb_view`), because both functions read them a chunk or a face
window at a time and never modify them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..archs import resolve_framing
from ..archs.framing import Framing
from ..runtime import ManagedModel, Progress, intermediate_device
from .alignment import ALIGN_METHODS, align_landmarks
from .detection import Detections, detect_frames
from .masks import DEFAULT_PARSE_CLASSES, parse_class_list
from .models import FaceModels
from .paste import paste_faces
from .preview import FrameFaces
from .records import BORDERS, FaceSet
from .selection import big_enough, choose, rank
from .settings import DETECT, PASTE
from .tracking import link_tracks, smooth_tracks, track_between_keyframes
from .warp import extract_crops

log = logging.getLogger("facemend")

MIN_CROP, MAX_CROP = 64, 2048


@dataclass(frozen=True)
class DetectResult:
    """What :func:`detect_and_align` returns.

    Attributes:
        crops: ``(N, 3, S, S)`` RGB float32 in ``[0, 1]`` on ComfyUI's intermediate device (CPU
            outside ComfyUI), one per face of ``faces``, same order.
        faces: the geometry needed to paste the crops back.
        found: per frame, every face found (kept or not) with its number, for previews.
    """

    crops: torch.Tensor
    faces: FaceSet
    found: list[FrameFaces]


def _detector(models: FaceModels | ManagedModel) -> ManagedModel:
    return models.detector if isinstance(models, FaceModels) else models


def detect_and_align(
    models: FaceModels | ManagedModel,
    frames: torch.Tensor,
    *,
    threshold: float = DETECT.threshold,
    min_size: float = DETECT.min_size,
    select: str = DETECT.select,
    indices: str = DETECT.indices,
    order: str = DETECT.order,
    max_faces: int = DETECT.max_faces,
    crop_size: int = DETECT.crop_size,
    padding: float = DETECT.padding,
    border: str = DETECT.border,
    alignment: str = DETECT.alignment,
    max_side: int = DETECT.max_side,
    video: bool = DETECT.video,
    detect_every: int = DETECT.detect_every,
    smoothing: float = DETECT.smoothing,
    framing: str | Framing = DETECT.framing,
    progress: Progress | None = None,
) -> DetectResult:
    """Detect faces, pick and order them, align each to the framing's template and cut its crop.

    Args:
        models: loaded face models (or just the managed detector).
        frames: ``(B, 3, H, W)`` RGB float in ``[0, 1]`` (e.g. a view of a ComfyUI IMAGE).
        threshold: minimum detector confidence.
        min_size: faces whose box's shorter side is below this many pixels are ignored.
        select: ``"all"``, ``"largest"`` or ``"indices"`` (then ``indices`` such as ``"0,2"``,
            ``"1-3"``: positions in ``order``).
        order: see :data:`~facemend.face.selection.ORDERS`.
        max_faces: at most this many faces per frame, first in order (video: this many tracks);
            0 = no limit.
        crop_size: side of the square crops (512 for GFPGAN/CodeFormer-style restorers).
        padding: facexlib ``crop_ratio`` >= 1: context around the FFHQ face framing.
        border: fill of crop pixels outside the frame (:data:`~facemend.face.records.BORDERS`).
        alignment: ``"lmeds"`` (the official GFPGAN/CodeFormer fit) or ``"least-squares"``
            (steadier for video); see :mod:`facemend.face.alignment`.
        max_side: frames larger than this (long side) are shrunk for detection only.
        video: treat the batch as consecutive video frames: faces keep one number (track) across
            frames, order and selection apply to tracks, and the two options below apply.
        detect_every: (video) run the full detector every N frames and follow faces in between.
        smoothing: (video) Gaussian smoothing of landmarks over time, sigma in frames (0 = off).
        framing: the face framing to align to, a :class:`~facemend.archs.framing.Framing` or its
            name (:func:`facemend.archs.framings`): ``"ffhq"`` for GFP-GAN/CodeFormer/RestoreFormer/
            VQFR, ``"gpen"`` for GPEN (a restorer's own is ``model.framing``).
        progress: optional progress counter (one step per frame detected).

    Returns:
        :class:`DetectResult`. Frames without faces contribute no crops (a warning is logged).
    """
    b, c, height, width = frames.shape
    if c != 3:
        raise ValueError(f"FaceMend: frames must have 3 channels, got {c}")
    if not MIN_CROP <= crop_size <= MAX_CROP:
        raise ValueError(f"FaceMend: crop_size must be between {MIN_CROP} and {MAX_CROP}, got {crop_size}")
    if padding < 1.0:
        raise ValueError(f"FaceMend: padding must be >= 1.0 (1.0 = standard FFHQ framing), got {padding}")
    if border not in BORDERS:
        raise ValueError(f"FaceMend: unknown border {border!r}; choose one of {', '.join(BORDERS)}")
    if alignment not in ALIGN_METHODS:
        raise ValueError(f"FaceMend: unknown alignment {alignment!r}; choose one of {', '.join(ALIGN_METHODS)}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"FaceMend: confidence threshold must be in (0, 1], got {threshold}")
    if min(height, width) < 32:
        log.warning("FaceMend: the image is only %dx%d pixels; faces that small cannot be detected", width, height)
    detector = _detector(models)
    every = max(1, int(detect_every)) if video else 1
    keyframes = list(range(0, b, every))
    dets = detect_frames(detector, frames, threshold, max_side=max_side, frame_ids=keyframes, progress=progress)
    per_frame: list[Detections] = [Detections.empty()] * b
    for f, d in zip(keyframes, dets):
        per_frame[f] = d.subset(big_enough(d.boxes, min_size).nonzero().flatten())
    if every > 1:
        tracked = track_between_keyframes(detector, frames, {f: per_frame[f] for f in keyframes}, every, threshold)
        for f, d in tracked.items():
            per_frame[f] = d.subset(big_enough(d.boxes, min_size).nonzero().flatten())
    if video:
        numbers, keep = _order_tracks(per_frame, order, select, indices, max_faces, height, width)
    else:
        numbers, keep = _order_frames(per_frame, order, select, indices, max_faces, height, width)

    rows = []
    found = []
    for f, d in enumerate(per_frame):
        found.append(FrameFaces(d.boxes, d.landmarks, numbers[f], keep[f]))
        sel = keep[f].nonzero().flatten()
        sel = sel[torch.argsort(numbers[f][sel], stable=True)]
        for j in sel.tolist():
            rows.append((f, d.boxes[j], d.scores[j], d.landmarks[j], int(numbers[f][j])))
    if rows:
        frame_index = torch.tensor([r[0] for r in rows], dtype=torch.int64)
        boxes = torch.stack([r[1] for r in rows]).float()
        scores = torch.stack([r[2] for r in rows]).float()
        landmarks = torch.stack([r[3] for r in rows]).float()
        track_id = torch.tensor([r[4] for r in rows], dtype=torch.int64)
    else:
        frame_index, track_id = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
        boxes, scores, landmarks = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)
    if video and smoothing > 0 and rows:
        landmarks = smooth_tracks(frame_index, track_id, landmarks, smoothing)
        boxes = smooth_tracks(frame_index, track_id, boxes, smoothing)
    affines = align_landmarks(landmarks, crop_size, padding, alignment, resolve_framing(framing))
    faces = FaceSet(
        frame_index=frame_index, boxes=boxes, scores=scores, landmarks=landmarks, affines=affines,
        crop_size=crop_size, source_size=(height, width), num_frames=b, padding=float(padding), border=border,
        track_id=track_id,
    )
    crops = extract_crops(frames, frame_index, affines, crop_size, border, device=detector.load_device,
                          out_device=intermediate_device())
    empty = faces.frames_without_faces()
    if empty:
        log.warning("FaceMend: no face found in %d of %d frame(s) (%s); they will pass through unchanged",
                    len(empty), b, ", ".join(map(str, empty[:12])) + (" ..." if len(empty) > 12 else ""))
    return DetectResult(crops=crops, faces=faces, found=found)


def _order_frames(per_frame: list[Detections], order: str, select: str, indices: str, max_faces: int,
                  height: int, width: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Independent images: number faces by their position in ``order`` within each frame."""
    numbers, keep = [], []
    for d in per_frame:
        perm = rank(d.boxes, d.scores, order, height, width)
        num = torch.empty(len(d), dtype=torch.int64)
        num[perm] = torch.arange(len(d))
        pos = choose(d.boxes[perm], select, indices, max_faces, height, width)
        k = torch.zeros(len(d), dtype=torch.bool)
        k[perm[pos]] = True
        numbers.append(num)
        keep.append(k)
    return numbers, keep


def _order_tracks(per_frame: list[Detections], order: str, select: str, indices: str, max_faces: int,
                  height: int, width: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Video: number tracks by ``order`` applied to each track's mean box and score over its frames."""
    ids = link_tracks(per_frame)
    n_tracks = int(max((int(i.max()) + 1 for i in ids if i.numel()), default=0))
    if n_tracks == 0:
        return [torch.zeros(0, dtype=torch.int64) for _ in per_frame], [torch.zeros(0, dtype=torch.bool) for _ in per_frame]
    box_sum = torch.zeros(n_tracks, 4, dtype=torch.float64)
    score_sum = torch.zeros(n_tracks, dtype=torch.float64)
    count = torch.zeros(n_tracks, dtype=torch.float64)
    for d, i in zip(per_frame, ids):
        box_sum.index_add_(0, i, d.boxes.to(torch.float64))
        score_sum.index_add_(0, i, d.scores.to(torch.float64))
        count.index_add_(0, i, torch.ones(len(i), dtype=torch.float64))
    mean_boxes, mean_scores = box_sum / count[:, None], score_sum / count
    perm = rank(mean_boxes, mean_scores, order, height, width)
    track_number = torch.empty(n_tracks, dtype=torch.int64)
    track_number[perm] = torch.arange(n_tracks)
    chosen = torch.zeros(n_tracks, dtype=torch.bool)
    chosen[perm[choose(mean_boxes[perm], select, indices, max_faces, height, width)]] = True
    return [track_number[i] for i in ids], [chosen[i] for i in ids]


def paste_back(
    frames: torch.Tensor,
    crops: torch.Tensor,
    faces: FaceSet,
    *,
    mask: str = PASTE.mask,
    erode: float = PASTE.erode,
    feather: float = PASTE.feather,
    color: str = PASTE.color,
    opacity: float | Sequence[float] | torch.Tensor = PASTE.opacity,
    models: FaceModels | None = None,
    parse_classes: str | tuple[str, ...] = PASTE.parse_classes,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend (restored) crops back into the frames they were cut from.

    Args:
        frames: ``(B, 3, H, W)`` RGB float ``[0, 1]``: the batch given to :func:`detect_and_align`,
            or a uniformly resized copy of it (e.g. an upscaled background). Never modified.
        crops: ``(N, 3, S, S)`` RGB float ``[0, 1]``, one per face of ``faces`` in the same order
            (any device; e.g. the restorer's output).
        faces: the :class:`FaceSet` from :func:`detect_and_align`.
        mask: ``"box"`` (feathered square), ``"parsing"`` (face-parsing classes) or
            ``"box+parsing"`` (their product). Parsing needs ``models`` with a parser.
        erode: how far the mask edge moves in from the crop edge (box) or from the parsed
            region's edge, as a fraction of the face size.
        feather: width of the soft edge, as a fraction of the face size.
        color: colour correction of the crop against the original crop: ``"none"``, ``"adain"``,
            ``"wavelet"`` or ``"histogram"``.
        opacity: blend strength in ``[0, 1]``: one number, or one per face (a sequence or ``(N,)``
            tensor in face order, e.g. :func:`facemend.face.quality.opacity_from_score`). A face at
            opacity 0 is left alone: its pixels stay bit-identical to ``frames``.
        models: face models carrying the parser (only needed for parsing masks).
        parse_classes: parsing groups kept in the mask (``"skin, brows, eyes, nose, mouth"``;
            also ``hair``, ``ears``, ``neck``).
        progress: optional counter advanced once per face.

    Returns:
        ``(image, mask)``: ``image`` ``(B, 3, H, W)`` float32 (channels-last memory, so
        ``image.permute(0, 2, 3, 1)`` is a ComfyUI IMAGE without a copy) and ``mask``
        ``(B, H, W)`` float32 in ``[0, 1]`` (how much of each pixel comes from the crops). Pixels
        where the mask is 0 are bit-identical to ``frames``. Overlapping faces are composited
        smaller-first, so the larger face is on top. Frames without faces pass through unchanged.

    Raises:
        ValueError: crops whose count or size does not match ``faces``, a batch of a different
            length, a resized image with another aspect ratio, NaN crops, or a parsing mask
            without a parser.
    """
    classes = parse_class_list(parse_classes) if mask != "box" else DEFAULT_PARSE_CLASSES
    parser = models.parser if models is not None else None
    device = models.detector.load_device if models is not None else None
    return paste_faces(
        frames, crops, faces, mask_mode=mask, erode=erode, feather=feather, color=color, opacity=opacity,
        parser=parser, parse_classes=classes, device=device, progress=progress,
    )
