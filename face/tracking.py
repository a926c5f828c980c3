"""Video: identities across frames, tracking between detection keyframes, landmark smoothing."""

from __future__ import annotations

import math

import torch
from torchvision.ops import box_iou, nms

from ..runtime import ManagedModel, check_interrupted
from .detection import BGR_MEAN, Detections, run_detector
from .warp import common_windows, face_windows, gather_windows, resample, translation

#: Side of the tracking window around a face, in face-box sizes.
TRACK_WINDOW = 3.0
#: Largest tracking canvas side (pixels) the detector sees.
TRACK_CANVAS_MAX = 640


def link_tracks(dets: list[Detections], iou_threshold: float = 0.3) -> list[torch.Tensor]:
    """Give every face a track id, matching each frame's faces to the tracks seen so far.

    Greedy matching on box IoU against each track's most recent box (highest IoU first, at least
    ``iou_threshold``); unmatched faces start new tracks. A track may skip frames (a missed
    detection) and continue where it left off.

    Returns:
        One ``(k_t,)`` int64 tensor of track ids per frame (ids count up from 0 in order of first
        appearance).
    """
    last_boxes: list[torch.Tensor] = []
    out: list[torch.Tensor] = []
    for det in dets:
        ids = torch.full((len(det),), -1, dtype=torch.int64)
        if len(det) and last_boxes:
            iou = box_iou(det.boxes.to(torch.float64), torch.stack(last_boxes).to(torch.float64))
            while True:
                best = iou.max()
                if float(best) < iou_threshold:
                    break
                flat = int(iou.argmax())
                i, t = divmod(flat, iou.shape[1])
                ids[i] = t
                iou[i, :] = -1
                iou[:, t] = -1
        for i in range(len(det)):
            if ids[i] < 0:
                ids[i] = len(last_boxes)
                last_boxes.append(det.boxes[i])
            else:
                last_boxes[int(ids[i])] = det.boxes[i]
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
    max_batch: int = 16,
) -> dict[int, Detections]:
    """Follow keyframe faces through the frames up to the next keyframe.

    For every face of keyframe ``k`` and every frame ``k+1 .. k+every-1``, the detector looks at a
    window of :data:`TRACK_WINDOW` face sizes around the keyframe box (resized to at most
    :data:`TRACK_CANVAS_MAX` px, all windows of a segment batched) and keeps the detection that
    overlaps the expected box best. Much cheaper than full-frame detection on large frames; faces
    that appear between keyframes are picked up at the next keyframe.

    Args:
        detector: managed RetinaFace.
        frames: ``(B, 3, H, W)`` RGB ``[0, 1]`` (any strides; only windows are read).
        keyframes: frame -> detections already filtered (threshold, minimum size).
        every: keyframe spacing.
        threshold: minimum score in the windows.

    Returns:
        Detections for every non-keyframe frame (empty where a face was lost).
    """
    height, width = frames.shape[-2:]
    device = detector.load()
    jobs: list[tuple[int, torch.Tensor]] = []  # (frame, expected box)
    for k, det in keyframes.items():
        for t in range(k + 1, min(k + every, frames.shape[0])):
            if t in keyframes:
                break
            for i in range(len(det)):
                jobs.append((t, det.boxes[i]))
    found: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    for start in range(0, len(jobs), max_batch):
        check_interrupted()
        chunk = jobs[start:start + max_batch]
        boxes = torch.stack([b for _, b in chunk]).to(torch.float64)
        side = TRACK_WINDOW * torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).clamp_min(16)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        canvas = int(min(TRACK_CANVAS_MAX, max(96, math.ceil(float(side.max()) / 32) * 32)))
        scale = canvas / side  # canvas px per frame px
        origin = centre - side[:, None] / 2  # frame coords of the canvas' top-left corner
        m = torch.zeros(len(chunk), 2, 3, dtype=torch.float64)
        m[:, 0, 0] = scale
        m[:, 1, 1] = scale
        m[:, :, 2] = -origin * scale[:, None] + 0.5 * scale[:, None] - 0.5
        square = torch.cat([origin, origin + side[:, None]], dim=1)
        windows = face_windows(square, 3 + 3 / scale.clamp(max=1.0), height, width)
        origins, hc, wc = common_windows(windows, height, width)
        fidx = torch.tensor([t for t, _ in chunk], dtype=torch.int64)
        with torch.inference_mode():
            src = gather_windows(frames, fidx, origins, hc, wc, device)
            mw = m.clone()
            mw[:, :, 2] += (m[:, :, :2] @ origins.to(torch.float64).unsqueeze(-1)).squeeze(-1)
            fill = tuple(c / 255 for c in reversed(BGR_MEAN))
            rois = resample(src, mw, (canvas, canvas), border="grey", fill=fill).clamp_(0, 1)
            dets = run_detector(detector.module, rois, threshold)
        for j, det in enumerate(dets):
            if not len(det):
                continue
            expected = ((boxes[j].view(2, 2) - origin[j] + 0.5) * scale[j] - 0.5).view(1, 4).float()
            iou = box_iou(det.boxes, expected).flatten()
            best = int(iou.argmax())
            if float(iou[best]) < 0.1:
                continue
            s = float(scale[j])
            # canvas u -> frame x = (u + 0.5) / s + origin - 0.5
            off = (float(origin[j, 0]) - 0.5 + 0.5 / s, float(origin[j, 1]) - 0.5 + 0.5 / s)
            back = det.subset(torch.tensor([best])).map(s, off)
            found.setdefault(chunk[j][0], []).append((back.boxes[0], back.scores[0], back.landmarks[0]))
    out: dict[int, Detections] = {}
    for t in {t for t, _ in jobs}:
        items = found.get(t, [])
        if not items:
            out[t] = Detections.empty()
            continue
        b = torch.stack([x[0] for x in items])
        s = torch.stack([x[1] for x in items])
        p = torch.stack([x[2] for x in items])
        keep = nms(b, s, 0.4)  # two windows may catch the same face
        out[t] = Detections(b[keep], s[keep], p[keep])
    return out
