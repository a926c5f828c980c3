"""RetinaFace detection, batched: frames -> boxes, scores and 5 landmarks per face.

facexlib supplies the network (``facexlib.detection.retinaface.RetinaFace``); this module does the
rest in batched tensor code on the model's device: BGR/mean preprocessing, anchor generation,
decoding, thresholding and non-maximum suppression for all frames of a chunk at once
(``torchvision.ops.batched_nms``). facexlib's own ``detect_faces`` helpers keep state on the module
(``self.scale``, ``self.resize``), use a fixed CPU-side anchor loop and a device chosen at
construction, so they cannot follow ComfyUI's model management; the maths is the same.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from ..runtime import ManagedModel, Progress, check_interrupted, chunk_size_for, is_oom
from ..runtime.memory import empty_cache

log = logging.getLogger("facemend")

#: RetinaFace anchor settings (identical for the ResNet-50 and MobileNet-0.25 releases).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
#: BGR mean the released weights were trained with (pixel values 0..255).
BGR_MEAN = (104.0, 117.0, 123.0)

#: Default long side above which frames are shrunk for detection (and coordinates scaled back).
DEFAULT_MAX_SIDE = 2048
#: Candidates kept per frame before NMS (as the original RetinaFace test script).
PRE_NMS_TOP_K = 5000


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame, sorted by descending score.

    Attributes:
        boxes: ``(k, 4)`` float32 ``(x1, y1, x2, y2)`` frame pixels.
        scores: ``(k,)`` float32 in ``[0, 1]``.
        landmarks: ``(k, 5, 2)`` float32 frame pixels (see ``records.LANDMARK_NAMES``).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2))

    def subset(self, idx: torch.Tensor) -> Detections:
        return Detections(self.boxes[idx], self.scores[idx], self.landmarks[idx])

    def map(self, scale: torch.Tensor | float, offset: torch.Tensor | tuple[float, float]) -> Detections:
        """Coordinates ``x / scale + offset`` (undo a crop-and-resize)."""
        off = torch.as_tensor(offset, dtype=torch.float32)
        boxes = (self.boxes.view(-1, 2, 2) / scale + off).view(-1, 4)
        return Detections(boxes, self.scores, self.landmarks / scale + off)


@lru_cache(maxsize=16)
def _priors_cpu(height: int, width: int) -> torch.Tensor:
    """Anchors ``(P, 4)`` ``(cx, cy, w, h)`` normalised to the input size, in the network's output order."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid(
            (torch.arange(fh, dtype=torch.float32) + 0.5) * step / height,
            (torch.arange(fw, dtype=torch.float32) + 0.5) * step / width,
            indexing="ij",
        )
        per_size = [
            torch.stack([cx, cy, torch.full_like(cx, s / width), torch.full_like(cy, s / height)], dim=-1)
            for s in sizes
        ]
        out.append(torch.stack(per_size, dim=2).reshape(-1, 4))  # (fh, fw, anchors, 4): position-major
    return torch.cat(out, dim=0)


def priors(height: int, width: int, device: torch.device) -> torch.Tensor:
    """RetinaFace anchors for a ``height x width`` network input (cached per size)."""
    return _priors_cpu(height, width).to(device)


def decode(loc: torch.Tensor, landm: torch.Tensor, anchors: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Network regressions -> boxes ``(B, P, 4)`` and landmarks ``(B, P, 5, 2)`` in input pixels."""
    a = anchors.unsqueeze(0)
    v0, v1 = VARIANCE
    centre = a[..., :2] + loc[..., :2] * v0 * a[..., 2:]
    size = a[..., 2:] * torch.exp(loc[..., 2:] * v1)
    scale = torch.tensor([width, height], dtype=loc.dtype, device=loc.device)
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1) * scale.repeat(2)
    pts = a[..., None, :2] + landm.view(*landm.shape[:-1], 5, 2) * v0 * a[..., None, 2:]
    return boxes, pts * scale


def detection_scale(height: int, width: int, max_side: int) -> float:
    """Factor frames are resized by for detection: 1 unless the long side exceeds ``max_side``."""
    long_side = max(height, width)
    return 1.0 if long_side <= max_side else max_side / long_side


def prepare_input(rgb: torch.Tensor, scale: float = 1.0, device: torch.device | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """RGB ``[0, 1]`` ``(n, 3, H, W)`` -> the network's input: resized by ``scale`` (antialiased),
    BGR, 0..255 minus the training mean, padded with the mean to a multiple of 32.

    ``rgb`` may live anywhere with any strides (e.g. a view of a ComfyUI IMAGE on the CPU): at
    ``scale == 1`` it is read once, straight into the network's input buffer (channels-last, the
    faster convolution layout on CPUs and harmless on GPUs); no other full-size copy is made.

    Returns:
        ``(input, (h, w))``: the padded ``(n, 3, h + ph, w + pw)`` float32 input on ``device`` and
        the resized size before padding.
    """
    device = device or rgb.device
    if scale != 1.0:
        h, w = rgb.shape[-2:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        rgb = F.interpolate(rgb.to(device=device, dtype=torch.float32), size=size, mode="bilinear", antialias=True,
                            align_corners=False)
    n, _, h, w = rgb.shape
    ph, pw = (-h) % 32, (-w) % 32
    x = torch.empty((n, 3, h + ph, w + pw), dtype=torch.float32, device=device, memory_format=torch.channels_last)
    core = x[:, :, :h, :w]
    for c in range(3):  # RGB -> BGR while copying (torch.flip would make another copy)
        core[:, c].copy_(rgb[:, 2 - c])
    mean = torch.tensor(BGR_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    core.mul_(255.0).sub_(mean)
    x[:, :, h:].zero_()  # zero after mean subtraction = the mean colour
    x[:, :, :, w:].zero_()
    return x, (h, w)


def run_network(
    module: torch.nn.Module,
    x: torch.Tensor,
    size: tuple[int, int],
    source_size: tuple[int, int],
    threshold: float,
    nms_threshold: float = 0.4,
) -> list[Detections]:
    """Network input from :func:`prepare_input` -> detections in source pixels.

    Args:
        size: ``(h, w)`` of the resized image inside the padded input.
        source_size: ``(H0, W0)`` of the frames the input was made from.
    """
    n = x.shape[0]
    (rh, rw), (h0, w0) = size, source_size
    sx, sy = rw / w0, rh / h0  # network px per source px
    h, w = x.shape[-2:]
    loc, conf, landm = module(x)
    boxes, pts = decode(loc.float(), landm.float(), priors(h, w, x.device), h, w)
    scores = conf[..., 1].float()
    keep = scores > threshold
    frame_ids, cand = keep.nonzero(as_tuple=True)
    if frame_ids.numel() > PRE_NMS_TOP_K * n:  # pathological inputs: keep the best per frame
        top = scores.masked_fill(~keep, -1).topk(min(PRE_NMS_TOP_K, scores.shape[1]), dim=1).indices
        sel = torch.zeros_like(keep).scatter_(1, top, True) & keep
        frame_ids, cand = sel.nonzero(as_tuple=True)
    b, s, p = boxes[frame_ids, cand], scores[frame_ids, cand], pts[frame_ids, cand]
    kept = batched_nms(b, s, frame_ids, nms_threshold)  # sorted by descending score
    b, s, p, f = b[kept].cpu(), s[kept].cpu(), p[kept].cpu(), frame_ids[kept].cpu()
    if (sx, sy) != (1.0, 1.0):  # pixel centres: x_src = (x_net + 0.5) / sx - 0.5
        k = torch.tensor([sx, sy])
        b = ((b.view(-1, 2, 2) + 0.5) / k - 0.5).view(-1, 4)
        p = (p + 0.5) / k - 0.5
    out = []
    for i in range(n):
        sel = (f == i).nonzero().flatten()
        out.append(Detections(b[sel], s[sel], p[sel]))
    return out


def run_detector(
    module: torch.nn.Module,
    rgb: torch.Tensor,
    threshold: float,
    nms_threshold: float = 0.4,
    scale: float = 1.0,
    source_size: tuple[int, int] | None = None,
) -> list[Detections]:
    """Detect faces in a chunk of frames (:func:`prepare_input` + :func:`run_network`).

    Args:
        module: facexlib ``RetinaFace`` (``phase="test"``: returns softmaxed scores).
        rgb: ``(n, 3, H, W)`` RGB float in ``[0, 1]`` (any device; the input is built on ``rgb``'s).
        threshold: minimum face score.
        nms_threshold: IoU above which the lower-scoring of two boxes is dropped.
        scale: resize factor applied to ``rgb`` before the network.
        source_size: ``(H0, W0)`` of the frames ``rgb`` was shrunk from, if it was (coordinates
            are returned in those frames' pixels); default: ``rgb``'s own size.

    Returns:
        One :class:`Detections` per frame, on the CPU, sorted by descending score.
    """
    x, size = prepare_input(rgb, scale)
    return run_network(module, x, size, source_size or tuple(rgb.shape[-2:]), threshold, nms_threshold)


#: Peak activation memory per network input pixel (fp32, measured on a 1088x1920 input, CPU).
ACTIVATION_BYTES = {"retinaface_mobile0.25": 64, "retinaface_resnet50": 256}


def detect_frames(
    detector: ManagedModel,
    frames: torch.Tensor,
    threshold: float = 0.8,
    nms_threshold: float = 0.4,
    max_side: int = DEFAULT_MAX_SIDE,
    frame_ids: list[int] | None = None,
    max_chunk: int | None = None,
    progress: Progress | None = None,
) -> list[Detections]:
    """Run RetinaFace over frames in memory-sized chunks.

    Args:
        detector: managed RetinaFace (``detector.module`` is facexlib's ``RetinaFace``).
        frames: ``(B, 3, H, W)`` RGB float in ``[0, 1]``, any device and strides (a permuted IMAGE
            view is fine); read one chunk at a time, never modified, never copied whole.
        threshold: minimum score (facexlib's helper hard-codes 0.97; RetinaFace's default is 0.8).
        nms_threshold: NMS IoU threshold.
        max_side: frames whose long side exceeds this are shrunk (antialiased) for detection;
            coordinates are returned in full-resolution pixels. Bounds memory for huge images.
        frame_ids: which frames to run (default: all).
        max_chunk: upper bound on frames per network call (default: 8 on GPUs, 2 on the CPU,
            where batching frames gains nothing and only costs memory).
        progress: optional ``runtime.Progress`` advanced per frame.

    Returns:
        One :class:`Detections` per entry of ``frame_ids`` (CPU tensors).

    Raises:
        ValueError: NaN/Inf in a frame.
    """
    ids = list(range(frames.shape[0])) if frame_ids is None else list(frame_ids)
    height, width = frames.shape[-2:]
    scale = detection_scale(height, width, max_side)
    dh, dw = math.ceil(height * scale / 32) * 32, math.ceil(width * scale / 32) * 32
    # the network input (the one full-resolution float copy) + activations
    act = ACTIVATION_BYTES.get(getattr(detector.model, "name", ""), 256)
    per_frame = (height * width * 3 * 4 if 0.5 <= scale < 1.0 else 0) + dh * dw * (12 + act)
    device = detector.load(memory_required=int(per_frame))
    module = detector.module
    if max_chunk is None:
        max_chunk = 2 if device.type == "cpu" else 8
    n = chunk_size_for(per_frame, device, max_chunk=max_chunk)
    results: list[Detections] = []
    i = 0
    while i < len(ids):
        check_interrupted()
        chunk_ids = ids[i:i + n]
        try:
            with torch.inference_mode():
                if scale < 0.5:  # huge frames: shrink strip by strip, never a full-resolution float copy
                    small = torch.stack([shrink_frame(frames[f], scale, device) for f in chunk_ids])
                    x, size = prepare_input(small, 1.0, device)
                    del small
                else:  # read straight from the frames into the network's input buffer
                    x, size = prepare_input(_take(frames, chunk_ids), scale, device)
                    _check_finite(x, chunk_ids)
                dets = run_network(module, x, size, (height, width), threshold, nms_threshold)
                del x
        except (RuntimeError, MemoryError) as e:
            if not is_oom(e) or n == 1:
                raise
            empty_cache()
            n = max(1, n // 2)
            log.warning("FaceMend: out of memory while detecting faces; retrying %d frame(s) at a time", n)
            continue
        results.extend(dets)
        if progress is not None:
            progress.update(len(chunk_ids))
        i += len(chunk_ids)
    return results


def _take(frames: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """``frames[ids]`` as a view when ``ids`` are consecutive (no copy before the device transfer)."""
    if ids == list(range(ids[0], ids[-1] + 1)):
        return frames[ids[0]:ids[-1] + 1]
    return frames[ids]


def _check_finite(rgb: torch.Tensor, ids: list[int]) -> None:
    """Refuse NaN/Inf (min/max propagate both; one pass, no full-size temporary)."""
    lo, hi = torch.aminmax(rgb.permute(0, 2, 3, 1).reshape(rgb.shape[0], -1), dim=1)  # a view for channels-last
    ok = (torch.isfinite(lo) & torch.isfinite(hi)).tolist()
    if not all(ok):
        bad = [f for f, good in zip(ids, ok) if not good]
        raise ValueError(f"FaceMend: frame(s) {bad} contain NaN or Inf values; fix the node that produced them.")


def shrink_frame(frame: torch.Tensor, scale: float, device: torch.device, strip_rows: int = 512) -> torch.Tensor:
    """Shrink one huge ``(3, H, W)`` frame by ``scale`` (< 0.5) without a full-resolution float copy.

    Rows are read in strips, box-averaged by the integer factor ``k = floor(1 / scale)`` on
    ``device`` (strips are multiples of ``k`` rows, so this equals one ``avg_pool2d`` of the whole
    frame), then the small result is resized to the exact size with antialiasing. NaN/Inf refused.

    Returns:
        ``(3, round(H * scale), round(W * scale))`` float32 on ``device``.
    """
    _, height, width = frame.shape
    k = max(1, int(1.0 / scale))
    rows = max(k, strip_rows // k * k)
    parts = []
    for y in range(0, height, rows):
        strip = frame[:, y:y + rows].to(device=device, dtype=torch.float32)
        if not bool(torch.isfinite(strip).all()):
            raise ValueError("FaceMend: the image contains NaN or Inf values; fix the node that produced it.")
        parts.append(F.avg_pool2d(strip.unsqueeze(0), k, stride=k, ceil_mode=True))
    reduced = torch.cat(parts, dim=2)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(reduced, size=size, mode="bilinear", antialias=True, align_corners=False)[0]
