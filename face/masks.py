"""Blend masks in crop space: feathered box, face-parsing classes, or both; sizes relative to the face.

All masks are ``(n, 1, S, S)`` float32 in ``[0, 1]`` over the aligned crop. "Face size" is the side
of the FFHQ face square in the crop, ``S / padding``; feather and erosion are fractions of it, so a
mask looks the same on a 40 px face and a 2000 px face.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from ..runtime import ManagedModel

MASK_MODES = ("box", "parsing", "box+parsing")

#: User-facing parsing groups -> CelebAMask-HQ part names.
PARSE_GROUPS: dict[str, tuple[str, ...]] = {
    "skin": ("skin",),
    "brows": ("l_brow", "r_brow"),
    "eyes": ("l_eye", "r_eye", "eye_g"),
    "nose": ("nose",),
    "mouth": ("mouth", "u_lip", "l_lip"),
    "hair": ("hair",),
    "ears": ("l_ear", "r_ear", "ear_r"),
    "neck": ("neck",),
}
DEFAULT_PARSE_CLASSES = ("skin", "brows", "eyes", "nose", "mouth")

#: Label order of each network (facexlib's inference_parsing*.py); the two releases differ.
PARSE_LABELS: dict[str, tuple[str, ...]] = {
    "bisenet": ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"),
    "parsenet": ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                 "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"),
}

#: Input normalisation (RGB mean, std) of each parser.
_PARSE_NORM = {"bisenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "parsenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
PARSE_SIZE = 512


def parse_class_list(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"skin, brows, eyes"`` -> ``("skin", "brows", "eyes")``, validated against :data:`PARSE_GROUPS`."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    unknown = [t for t in items if t not in PARSE_GROUPS]
    if unknown or not items:
        raise ValueError(
            f"FaceMend: unknown parsing class(es) {unknown or text!r}; use a comma-separated list of "
            f"{', '.join(PARSE_GROUPS)} (e.g. 'skin, brows, eyes, nose, mouth')."
        )
    return tuple(dict.fromkeys(items))


def _ramp(d: torch.Tensor, start: float, width: float) -> torch.Tensor:
    """Smoothstep from 0 at ``d = start`` to 1 at ``d = start + width``."""
    t = ((d - start) / max(width, 1e-6)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def box_mask(size: int, erode: float, feather: float, device: torch.device | None = None) -> torch.Tensor:
    """Feathered square over the crop: 0 at the border, 1 inside.

    Args:
        size: crop side ``S``.
        erode: pixels (crop px) between the crop edge and where the ramp starts.
        feather: ramp width in crop pixels.

    Returns:
        ``(1, 1, S, S)`` float32; exactly 0 within ``erode`` of the edge.
    """
    x = torch.arange(size, dtype=torch.float32, device=device) + 0.5
    d = torch.minimum(x, size - x)  # distance from the pixel centre to the nearest crop edge
    r = _ramp(d, erode, feather)
    return (r[:, None] * r[None, :]).view(1, 1, size, size)


def box_mask_at(points_to_crop: torch.Tensor, height: int, width: int, size: int, erode: float, feather: float,
                device: torch.device | None = None) -> torch.Tensor:
    """The :func:`box_mask` of each crop evaluated directly at the pixels of an image window.

    Exact (no resampling of a mask image), so the box mask costs almost nothing at paste time.

    Args:
        points_to_crop: ``(n, 2, 3)`` maps window pixel coordinates to crop pixel coordinates.
        height, width: window size.
        size, erode, feather: as :func:`box_mask` (crop pixels). The ramp is kept at least one
            window pixel wide so a hard box edge is still antialiased.

    Returns:
        ``(n, 1, height, width)`` float32 in ``[0, 1]``; 0 outside the crop.
    """
    a = points_to_crop.to(device=device, dtype=torch.float64)
    ys = torch.arange(height, dtype=torch.float64, device=device).view(1, -1, 1)
    xs = torch.arange(width, dtype=torch.float64, device=device).view(1, 1, -1)
    per_px = (a[:, 0, 0] ** 2 + a[:, 1, 0] ** 2).sqrt().view(-1, 1, 1)  # crop px per window px
    width_px = torch.clamp(torch.full_like(per_px, feather), min=per_px)
    out = torch.ones(a.shape[0], height, width, dtype=torch.float64, device=device)
    for row in (0, 1):
        u = a[:, row, 0].view(-1, 1, 1) * xs + a[:, row, 1].view(-1, 1, 1) * ys + a[:, row, 2].view(-1, 1, 1)
        d = torch.minimum(u + 0.5, size - 0.5 - u)
        t = ((d - erode) / width_px).clamp(0, 1)
        out = out * (t * t * (3 - 2 * t))
    return out.float().unsqueeze(1)


def parse_faces(parser: ManagedModel, crops: torch.Tensor) -> torch.Tensor:
    """Label every pixel of face crops with a CelebAMask-HQ class.

    Args:
        parser: managed BiSeNet/ParseNet (``parser.model.name`` picks the normalisation and labels).
        crops: ``(n, 3, S, S)`` RGB float in ``[0, 1]``.

    Returns:
        ``(n, 512, 512)`` int64 labels in the network's own label order (:data:`PARSE_LABELS`).
    """
    name = parser.model.name
    device = parser.load(memory_required=int(crops.shape[0] * PARSE_SIZE * PARSE_SIZE * 2048))
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in _PARSE_NORM[name])
    with torch.inference_mode():
        x = crops.to(device, torch.float32)
        if x.shape[-1] != PARSE_SIZE:
            x = F.interpolate(x, size=(PARSE_SIZE, PARSE_SIZE), mode="bilinear", antialias=True, align_corners=False)
        logits = parser.module((x - mean) / std)[0]
        return logits.argmax(dim=1).cpu()


def class_mask(labels: torch.Tensor, parser_name: str, classes: tuple[str, ...]) -> torch.Tensor:
    """``(n, H, W)`` labels -> ``(n, 1, H, W)`` float32, 1 where the label is in the chosen groups."""
    names = PARSE_LABELS[parser_name]
    wanted = {p for g in classes for p in PARSE_GROUPS[g]}
    lut = torch.tensor([n in wanted for n in names], dtype=torch.float32, device=labels.device)
    return lut[labels].unsqueeze(1)


def soften(mask: torch.Tensor, erode: float, feather: float) -> torch.Tensor:
    """Erode a hard mask by ``erode`` pixels (square structuring element) and blur its edge.

    ``feather`` is the edge's 10-90 % width in pixels (a Gaussian of sigma ``feather / 2.56``).
    """
    r = int(round(erode))
    if r > 0:
        mask = -F.max_pool2d(-mask, 2 * r + 1, stride=1, padding=r)  # min-filter (kornia's erosion is far slower)
    sigma = feather / 2.56
    if sigma > 0.3:
        k = 2 * int(math.ceil(3 * sigma)) + 1
        mask = kornia.filters.gaussian_blur2d(mask, (k, k), (sigma, sigma), border_type="replicate")
    return mask.clamp(0, 1)


def build_masks(
    n: int,
    crop_size: int,
    padding: float,
    mode: str = "box",
    erode: float = 0.05,
    feather: float = 0.1,
    labels: torch.Tensor | None = None,
    parser_name: str | None = None,
    classes: tuple[str, ...] = DEFAULT_PARSE_CLASSES,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Blend masks for ``n`` crops.

    Args:
        mode: ``"box"``, ``"parsing"`` or ``"box+parsing"`` (their product: parsed face parts with
            the box's soft edge, so nothing reaches the crop border).
        erode, feather: fractions of the face size (``crop_size / padding``).
        labels: ``(n, 512, 512)`` parser labels (needed for the parsing modes).
        parser_name: which network produced ``labels``.
        classes: parsing groups to keep (see :data:`PARSE_GROUPS`).

    Returns:
        ``(n, 1, crop_size, crop_size)`` float32 in ``[0, 1]`` on ``device``.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"FaceMend: unknown mask mode {mode!r}; choose one of {', '.join(MASK_MODES)}")
    face = crop_size / padding
    box = box_mask(crop_size, erode * face, feather * face, device)
    if mode == "box":
        return box.expand(n, 1, crop_size, crop_size).contiguous()
    if labels is None or parser_name is None:
        raise ValueError(
            f"FaceMend: mask mode {mode!r} needs a face parser; choose 'bisenet' or 'parsenet' in 'FaceMend Load Face "
            "Detector' and connect it to Paste Back, or use mask mode 'box'."
        )
    scale = PARSE_SIZE / crop_size
    parsed = soften(class_mask(labels.to(device), parser_name, classes), erode * face * scale, feather * face * scale)
    if crop_size != PARSE_SIZE:
        parsed = F.interpolate(parsed, size=(crop_size, crop_size), mode="bilinear", antialias=True, align_corners=False)
    if mode == "parsing":
        # a thin fade at the crop border so the mask never ends in a hard edge at the crop's side
        return parsed * box_mask(crop_size, 1.0, 0.02 * crop_size, device)
    return parsed * box
