"""Paste restored crops back into their frames: mask, colour correction, antialiased inverse warp, blend.

Work happens in windows around each face, so memory and time scale with the faces, not the frames:
the only full-size tensors are the output image and mask themselves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from ..runtime import ManagedModel, Progress, check_interrupted, intermediate_device, torch_device
from .color import COLOR_MODES, correct_color
from .masks import DEFAULT_PARSE_CLASSES, MASK_MODES, box_mask_at, build_masks, parse_faces
from .records import FaceSet
from .alignment import compose_affine
from .warp import common_windows, extract_crops, face_windows, footprints, pixel_chunks, resample, translation

log = logging.getLogger("facemend")


def check_crops(crops: torch.Tensor, faces: FaceSet) -> None:
    """Raise a clear ``ValueError`` when ``crops`` (``(N, 3, S, S)``) do not belong to ``faces``."""
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise ValueError(f"FaceMend: crops must be RGB images (N, 3, S, S); got shape {tuple(crops.shape)}.")
    n, _, h, w = crops.shape
    if n != len(faces):
        raise ValueError(
            f"FaceMend: got {n} crop(s) for {len(faces)} detected face(s). Connect the crops that came from the same "
            "'FaceMend Detect' node as the faces (one crop per face, same order), without adding or dropping images."
        )
    if (h, w) != (faces.crop_size, faces.crop_size):
        raise ValueError(
            f"FaceMend: crops are {w}x{h} but the faces were aligned to {faces.crop_size}x{faces.crop_size} crops. "
            f"Resize the crops back to {faces.crop_size} px, or set crop_size in 'FaceMend Detect' to the size you "
            "restore at."
        )
    if not bool(torch.isfinite(crops).all()):
        raise ValueError("FaceMend: the crops contain NaN or Inf values; fix the node that produced them.")


def face_opacities(opacity: float | Sequence[float] | torch.Tensor, count: int) -> torch.Tensor:
    """Paste-back opacity as one value per face.

    Args:
        opacity: a number for every face, or ``count`` numbers (list, tuple or 1-D tensor), one per
            face in face order; each in ``[0, 1]``.
        count: number of faces.

    Returns:
        ``(count,)`` float32 on the CPU.

    Raises:
        ValueError: a value that is NaN/Inf or outside ``[0, 1]`` (the message names the face), or
            a sequence whose length is not ``count``.
    """
    if isinstance(opacity, torch.Tensor):
        values = opacity.detach().to("cpu", torch.float64).flatten()
        if opacity.ndim == 0:
            values = values.expand(count)
    elif isinstance(opacity, (int, float)):
        values = torch.full((count,), float(opacity), dtype=torch.float64)
    else:
        values = torch.tensor([float(v) for v in opacity], dtype=torch.float64)
    if values.numel() != count:
        raise ValueError(
            f"FaceMend: got {values.numel()} opacity value(s) for {count} face(s); give one number for every face "
            "or one per face in face order."
        )
    for i, v in enumerate(values.tolist()):
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            which = "opacity" if count == 1 or isinstance(opacity, (int, float)) else f"opacity of face {i}"
            raise ValueError(f"FaceMend: {which} must be between 0 and 1, got {v}")
    return values.to(torch.float32)


def blend_order(faces: FaceSet) -> torch.Tensor:
    """Order faces are composited in: by frame, then smaller faces first, so larger (usually nearer)
    faces end on top where faces overlap; equal sizes keep the face order."""
    size = faces.face_sizes()
    by_size = torch.sort(size, stable=True).indices
    by_frame = torch.sort(faces.frame_index[by_size], stable=True).indices
    return by_size[by_frame]


def paste_faces(
    frames: torch.Tensor,
    crops: torch.Tensor,
    faces: FaceSet,
    mask_mode: str = "box",
    erode: float = 0.05,
    feather: float = 0.1,
    color: str = "none",
    opacity: float | Sequence[float] | torch.Tensor = 1.0,
    parser: ManagedModel | None = None,
    parse_classes: tuple[str, ...] = DEFAULT_PARSE_CLASSES,
    device: torch.device | None = None,
    max_batch_pixels: int = 2 * 1024 * 1024,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend ``crops`` into ``frames`` at the faces' positions. See :func:`facemend.face.pipeline.paste_back`.

    ``opacity`` is one number or one per face (:func:`face_opacities`); faces at opacity 0 are
    skipped, so their pixels (and the mask there) stay exactly as without them.
    """
    if mask_mode not in MASK_MODES:
        raise ValueError(f"FaceMend: unknown mask mode {mask_mode!r}; choose one of {', '.join(MASK_MODES)}")
    if color not in COLOR_MODES:
        raise ValueError(f"FaceMend: unknown colour correction {color!r}; choose one of {', '.join(COLOR_MODES)}")
    if mask_mode != "box" and parser is None:
        raise ValueError(
            f"FaceMend: mask mode {mask_mode!r} needs a face parser: load one ('bisenet' or 'parsenet') in 'FaceMend Load "
            "Face Detector' and connect that detector to Paste Back, or use mask mode 'box'."
        )
    b, c, height, width = frames.shape
    if c != 3:
        raise ValueError(f"FaceMend: image must have 3 channels here, got {c}")
    if b != faces.num_frames:
        raise ValueError(
            f"FaceMend: the image batch has {b} frame(s) but the faces were detected in {faces.num_frames}. Paste back "
            "onto the same batch that went into 'FaceMend Detect'."
        )
    faces = faces.rescaled(height, width)
    check_crops(crops, faces)
    alphas = face_opacities(opacity, len(faces))
    store = intermediate_device()
    out = torch.empty(b, height, width, 3, dtype=torch.float32, device=store)
    out.copy_(frames.permute(0, 2, 3, 1))  # a single pass, no intermediate full-size copy
    image = out.permute(0, 3, 1, 2)  # (B, 3, H, W) view with channels-last memory
    alpha = torch.zeros(b, height, width, dtype=torch.float32, device=store)
    if len(faces) == 0:
        return image, alpha
    device = device or (parser.load_device if parser is not None else torch_device())
    size, pad = faces.crop_size, faces.padding
    order = blend_order(faces)
    order = order[alphas[order] > 0]  # faces left alone cost nothing and touch no pixel
    if progress is not None and len(order) < len(faces):
        progress.update(len(faces) - len(order))
    affines = faces.affines[order]
    inverse = faces.inverse_affines()[order]
    frame_index = faces.frame_index[order]
    face_alpha = alphas[order]
    windows = face_windows(footprints(inverse, size), 2.0, height, width)
    chunks = pixel_chunks(windows, max_batch_pixels, size * size) if len(order) else []
    for chunk in chunks:
        check_interrupted()
        idx = order[chunk]
        n = len(chunk)
        restored = crops[idx].to(device, torch.float32)
        labels = parse_faces(parser, restored) if mask_mode != "box" and parser is not None else None
        masks = None
        if mask_mode != "box" or color != "none":
            masks = build_masks(
                n, size, pad, mask_mode, erode, feather, labels,
                parser.model.name if parser is not None else None, parse_classes, device,
            )
        if color != "none":
            original = extract_crops(frames, frame_index[chunk], affines[chunk], size, faces.border, device, out_device=device)
            restored = correct_color(restored, original, color, weight=masks)
        origins, hc, wc = common_windows(windows[chunk], height, width)
        m = compose_affine(translation(origins, -1.0), inverse[chunk])
        with torch.inference_mode():
            warped = resample(restored, m, (hc, wc), border="edge").clamp_(0, 1)
            if mask_mode == "box":  # evaluated exactly at the image pixels, no mask warp
                face = size / pad
                to_crop = compose_affine(affines[chunk], translation(origins, +1.0))
                weight = box_mask_at(to_crop, hc, wc, size, erode * face, feather * face, device)
            else:
                weight = resample(masks, m, (hc, wc), border="black").clamp_(0, 1)  # no interpolation overshoot
            a_chunk = face_alpha[chunk]
            if bool((a_chunk < 1.0).any()):
                weight = weight * a_chunk.to(device).view(-1, 1, 1, 1)
        for j in range(n):
            f, x0, y0 = int(frame_index[chunk[j]]), int(origins[j, 0]), int(origins[j, 1])
            region = image[f, :, y0:y0 + hc, x0:x0 + wc]
            a = alpha[f, y0:y0 + hc, x0:x0 + wc]
            w = weight[j]
            region.copy_(torch.lerp(region.to(device), warped[j], w))  # weight 0 keeps the pixel bit for bit
            a.copy_(a.to(device) + w[0] * (1 - a.to(device)))
        if progress is not None:
            progress.update(n)
    missing = faces.frames_without_faces()
    if missing:
        log.warning("FaceMend: no face in frame(s) %s; they pass through unchanged", _short_list(missing))
    return image, alpha


def _short_list(items: list[int], limit: int = 12) -> str:
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f" ... ({len(items)} in all)" if len(items) > limit else "")
