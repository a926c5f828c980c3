"""Video: identities across frames, tracking between detection keyframes, landmark smoothing."""

from __future__ import annotations

import math

import torch
from torchvision.ops import nms

from ..runtime import ManagedModel, check_interrupted
from .detection import BGR_MEAN, Detections, run_detector
from .alignment import compose_affine
from .warp import common_windows, face_windows, gather_windows, resample, translation

#: Side of the tracking window around a face, in face-box sizes.
TRACK_WINDOW = 3.0
#: Largest tracking canvas side (pixels) the detector sees.
TRACK_CANVAS_MAX = 640
#: Largest distance (in face sizes) between a face and a track's predicted position to link them.
MATCH_DISTANCE = 0.8


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b = boxes.to(torch.float64)
    return (b[:, :2] + b[:, 2:]) / 2, torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).clamp_min(1.0)


def link_tracks(dets: list[Detections], max_distance: float = MATCH_DISTANCE) -> list[torch.Tensor]:
    """Give every face a track id, matching each frame's faces to the tracks seen so far.

    Each track predicts its next position from its last two observations (constant velocity).
    A face matches a track when its centre is within ``max_distance`` face sizes of the prediction
    and its size is within a factor 1.6; matching is greedy, nearest first. Unmatched faces start
    new tracks. A track may skip frames (a missed detection) and continue where it left off.

    Returns:
        One ``(k_t,)`` int64 tensor of track ids per frame (ids count up from 0 in order of first
        appearance).
    """
    tracks: list[dict] = []  # {"frame", "centre", "size", "velocity"}
    out: list[torch.Tensor] = []
    for t, det in enumerate(dets):
        ids = torch.full((len(det),), -1, dtype=torch.int64)
        centre, size = _centre_size(det.boxes)
        if len(det) and tracks:
            pred = torch.stack([tr["centre"] + tr["velocity"] * (t - tr["frame"]) for tr in tracks])
            tsize = torch.stack([tr["size"] for tr in tracks])
            dist = torch.cdist(centre, pred) / torch.maximum(size[:, None], tsize[None, :])
            ratio = size[:, None] / tsize[None, :]
            dist[(ratio > 1.6) | (ratio < 1 / 1.6)] = float("inf")
            while True:
                best = dist.min()
                if not float(best) <= max_distance:
                    break
                i, j = divmod(int(dist.argmin()), dist.shape[1])
                ids[i] = j
                dist[i, :] = float("inf")
                dist[:, j] = float("inf")
        for i in range(len(det)):
            if ids[i] < 0:
                ids[i] = len(tracks)
                tracks.append({"frame": t, "centre": centre[i], "size": size[i], "velocity": torch.zeros(2, dtype=torch.float64)})
            else:
                tr = tracks[int(ids[i])]
                tr["velocity"] = (centre[i] - tr["centre"]) / (t - tr["frame"])
                tr.update(frame=t, centre=centre[i], size=size[i])
        out.append(ids)
    return out


def smooth_tracks(frame_index: torch.Tensor, track_id: torch.Tensor, values: torch.Tensor, sigma: float) -> torch.Tensor:
    """Zero-phase Gaussian smoothing of per-face ``values`` along time, per track.

    Args:
        frame_index: ``(N,)`` frame of each face; track_id: ``(N,)`` its identity.
        values: ``(N, ...)`` float (e.g. landmarks ``(N, 5, 2)``).
        sigma: standard deviation in frames (0 = no smoothing).

    Returns:
        ``(N, ...)`` smoothed values. Smoothing runs only over consecutive frames of a track (a gap
        starts a new run) and renormalises at the ends, so it never drags a face towards a frame
        where it was not seen.
    """
    if sigma <= 0 or values.shape[0] == 0:
        return values.clone()
    out = values.clone().to(torch.float64)
    src = values.to(torch.float64)
    radius = max(1, int(math.ceil(3 * sigma)))
    for t in torch.unique(track_id).tolist():
        pos = (track_id == t).nonzero().flatten()
        pos = pos[torch.argsort(frame_index[pos], stable=True)]
        frames = frame_index[pos]
        breaks = (frames[1:] - frames[:-1] != 1).nonzero().flatten() + 1
        for run in torch.tensor_split(pos, breaks.tolist()):
            if run.numel() < 2:
                continue
            f = frame_index[run].to(torch.float64)
            d = f[:, None] - f[None, :]
            w = torch.exp(-0.5 * (d / sigma) ** 2) * (d.abs() <= radius)
            w = w / w.sum(dim=1, keepdim=True)
            out[run] = (w @ src[run].reshape(run.numel(), -1)).reshape(src[run].shape)
    return out.to(values.dtype)


def track_between_keyframes(
    detector: ManagedModel,
    frames: torch.Tensor,
    keyframes: dict[int, Detections],
    every: int,
    threshold: float,
) -> dict[int, Detections]:
    """Follow keyframe faces through the frames up to the next keyframe.

    Frame by frame, each face followed so far is looked for in a window of :data:`TRACK_WINDOW`
    face sizes around its predicted position (last position + last motion), resized to at most
    :data:`TRACK_CANVAS_MAX` px; all windows of a frame go through the detector as one batch, and
    the detection nearest the prediction is kept. Much cheaper than full-frame detection on large
    frames. A face that is not found is dropped until the next keyframe; faces that appear between
    keyframes are picked up at the next keyframe.

    Args:
        detector: managed RetinaFace.
        frames: ``(B, 3, H, W)`` RGB ``[0, 1]`` (any strides; only windows are read).
        keyframes: frame -> detections already filtered (threshold, minimum size).
        every: keyframe spacing.
        threshold: minimum score in the windows.

    Returns:
        Detections for every non-keyframe frame (empty where every face was lost).
    """
    device = detector.load()
    out: dict[int, Detections] = {}
    for k, det in keyframes.items():
        boxes = det.boxes.to(torch.float64)
        velocity = torch.zeros(len(det), 2, dtype=torch.float64)
        for t in range(k + 1, min(k + every, frames.shape[0])):
            if t in keyframes:
                break
            check_interrupted()
            if boxes.shape[0] == 0:
                out[t] = Detections.empty()
                continue
            predicted = boxes + velocity.repeat(1, 2)
            found = _find_in_windows(detector.module, frames, t, predicted, threshold, device)
            kept = [i for i, d in enumerate(found) if d is not None]
            if not kept:
                out[t] = Detections.empty()
                boxes = boxes[:0]
                velocity = velocity[:0]
                continue
            new_boxes = torch.stack([found[i].boxes[0] for i in kept]).to(torch.float64)
            velocity = (_centre_size(new_boxes)[0] - _centre_size(boxes[kept])[0])
            boxes = new_boxes
            d = Detections(
                torch.stack([found[i].boxes[0] for i in kept]), torch.stack([found[i].scores[0] for i in kept]),
                torch.stack([found[i].landmarks[0] for i in kept]),
            )
            keep = nms(d.boxes, d.scores, 0.4)  # two windows may have caught the same face
            out[t] = d.subset(keep)
            boxes, velocity = boxes[keep], velocity[keep]
    return out


def _find_in_windows(
    module: torch.nn.Module, frames: torch.Tensor, t: int, predicted: torch.Tensor, threshold: float, device: torch.device
) -> list[Detections | None]:
    """Detect in a window around each predicted box of frame ``t``; the best match per window (or ``None``)."""
    height, width = frames.shape[-2:]
    centre, size = _centre_size(predicted)
    side = TRACK_WINDOW * size.clamp_min(16)
    canvas = int(min(TRACK_CANVAS_MAX, max(96, math.ceil(float(side.max()) / 32) * 32)))
    scale = canvas / side  # canvas px per frame px
    origin = centre - side[:, None] / 2  # frame coordinates of the window's top-left edge
    n = predicted.shape[0]
    m = torch.zeros(n, 2, 3, dtype=torch.float64)  # frame -> canvas: u = (x - origin + 0.5) * s - 0.5
    m[:, 0, 0] = scale
    m[:, 1, 1] = scale
    m[:, :, 2] = (0.5 - origin) * scale[:, None] - 0.5
    square = torch.cat([origin, origin + side[:, None]], dim=1)
    windows = face_windows(square, 3 + 3 / scale.clamp(max=1.0), height, width)
    origins, hc, wc = common_windows(windows, height, width)
    with torch.inference_mode():
        src = gather_windows(frames, torch.full((n,), t, dtype=torch.int64), origins, hc, wc, device)
        mw = compose_affine(m, translation(origins, +1.0))
        fill = tuple(c / 255 for c in reversed(BGR_MEAN))
        rois = resample(src, mw, (canvas, canvas), border="grey", fill=fill).clamp_(0, 1)
        dets = run_detector(module, rois, threshold)
    found: list[Detections | None] = []
    for j, det in enumerate(dets):
        if not len(det):
            found.append(None)
            continue
        s = float(scale[j])
        back = det.map(s, (float(origin[j, 0]) - 0.5 + 0.5 / s, float(origin[j, 1]) - 0.5 + 0.5 / s))
        c, sz = _centre_size(back.boxes)
        dist = (c - centre[j]).norm(dim=1) / size[j]
        ratio = sz / size[j]
        dist[(ratio > 1.6) | (ratio < 1 / 1.6)] = float("inf")
        best = int(dist.argmin())
        found.append(back.subset(torch.tensor([best])) if float(dist[best]) <= MATCH_DISTANCE else None)
    return found
