"""Landmarks -> similarity transforms onto the FFHQ 5-point template.

The template is the one official GFPGAN/CodeFormer inference aligns to (facexlib's
``FaceRestoreHelper``): five points for a 512x512 FFHQ face, scaled to the crop size and, with
``padding`` > 1, shrunk and centred so the crop shows more context (facexlib's ``crop_ratio``).

Estimation (two methods, same model: rotation + uniform scale + translation).

* ``"lmeds"`` (default): exactly what official GFPGAN/CodeFormer inference does,
  ``cv2.estimateAffinePartial2D(landmarks, template, method=cv2.LMEDS)``: a robust search over point
  pairs, then Levenberg-Marquardt refinement on the points it keeps. It is *not* the same as a
  least-squares fit: on ``skimage.data.astronaut()`` it drops the right mouth corner and the crop is
  rotated ~5 degrees more than the least-squares one. We call OpenCV itself (5 points per face on
  the CPU, microseconds) so crops match the official pipeline's pixel for pixel geometry.
* ``"least-squares"``: the closed-form least-squares similarity over all five points
  (complex-number form of Umeyama's method), batched and on any device. No inlier switching, so it
  is the steadier choice for video, where LMEDS can jump between inlier sets from frame to frame.
"""

from __future__ import annotations

import torch

from ..archs.framing import FFHQ, Framing

#: FFHQ 5-point template for a 512x512 crop, ``(x, y)``, order as :data:`~facemend.face.records.LANDMARK_NAMES`.
FFHQ_TEMPLATE_512 = torch.tensor(FFHQ.template_512, dtype=torch.float64)


def face_template(crop_size: int, padding: float = 1.0, framing: Framing = FFHQ) -> torch.Tensor:
    """``framing``'s landmark template for a square ``crop_size`` crop with ``padding`` around the face.

    ``padding`` = facexlib's ``crop_ratio`` (same on both axes): the face keeps the framing of a
    ``crop_size / padding`` crop, centred in a ``crop_size`` canvas. ``padding=1`` with the FFHQ
    framing is exactly the template official GFPGAN/CodeFormer inference uses at
    ``face_size=crop_size``; with the GPEN framing, GPEN's ``get_reference_facial_points``.

    Returns:
        ``(5, 2)`` float64 ``(x, y)`` crop pixel coordinates.
    """
    if padding < 1.0:
        raise ValueError(f"padding must be >= 1 (got {padding}); 1 is the standard framing")
    face = crop_size / padding
    template = torch.tensor(framing.template_512, dtype=torch.float64)
    return template * (face / 512.0) + (crop_size - face) / 2.0


def estimate_similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping ``src`` to ``dst``.

    Args:
        src: ``(N, K, 2)`` points (K >= 2), e.g. detected landmarks in image pixels.
        dst: ``(K, 2)`` or ``(N, K, 2)`` target points, e.g. :func:`face_template`.

    Returns:
        ``(N, 2, 3)`` float64 matrices ``A`` with ``dst ~= A @ [src, 1]``: the minimiser of the summed
        squared distances, the same model ``cv2.estimateAffinePartial2D`` fits.
    """
    src = src.to(torch.float64)
    dst = dst.to(device=src.device, dtype=torch.float64)
    if dst.ndim == 2:
        dst = dst.expand(src.shape[0], -1, -1)
    z = torch.complex(src[..., 0], src[..., 1])
    w = torch.complex(dst[..., 0], dst[..., 1])
    zc = z - z.mean(dim=1, keepdim=True)
    wc = w - w.mean(dim=1, keepdim=True)
    denom = (zc.abs() ** 2).sum(dim=1).clamp_min(1e-12)
    a = (wc * zc.conj()).sum(dim=1) / denom  # scale * exp(i * angle)
    b = w.mean(dim=1) - a * z.mean(dim=1)
    out = torch.zeros(src.shape[0], 2, 3, dtype=torch.float64, device=src.device)
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = a.real, -a.imag, b.real
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = a.imag, a.real, b.imag
    return out


ALIGN_METHODS = ("lmeds", "least-squares")


def estimate_similarity_lmeds(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The official alignment: ``cv2.estimateAffinePartial2D(src[i], dst, method=cv2.LMEDS)`` per face.

    Args:
        src: ``(N, K, 2)`` points; dst: ``(K, 2)`` target points.

    Returns:
        ``(N, 2, 3)`` float64 on the CPU. A degenerate face (OpenCV finds no model) falls back to
        the least-squares similarity.
    """
    import cv2
    import numpy as np

    pts = src.detach().to("cpu", torch.float64).numpy()
    tpl = dst.detach().to("cpu", torch.float64).numpy()
    out = torch.empty(pts.shape[0], 2, 3, dtype=torch.float64)
    for i in range(pts.shape[0]):
        m = cv2.estimateAffinePartial2D(np.ascontiguousarray(pts[i]), tpl, method=cv2.LMEDS)[0]
        out[i] = torch.from_numpy(m) if m is not None else estimate_similarity(src[i:i + 1].cpu(), dst.cpu())[0]
    return out


def align_landmarks(
    landmarks: torch.Tensor, crop_size: int, padding: float = 1.0, method: str = "lmeds", framing: Framing = FFHQ
) -> torch.Tensor:
    """Image -> crop transforms that put ``landmarks`` (``(N, 5, 2)`` image px) on ``framing``'s template.

    Args:
        method: ``"lmeds"`` (official GFPGAN/CodeFormer alignment) or ``"least-squares"`` (see the
            module notes; GPEN's official alignment is a least-squares similarity).
        framing: the face framing of the restorer the crops are for (FFHQ by default).

    Returns:
        ``(N, 2, 3)`` float64 affine matrices (image pixel -> crop pixel).
    """
    template = face_template(crop_size, padding, framing)
    if method == "lmeds":
        return estimate_similarity_lmeds(landmarks, template)
    if method == "least-squares":
        return estimate_similarity(landmarks, template)
    raise ValueError(f"FaceMend: unknown alignment {method!r}; choose one of {', '.join(ALIGN_METHODS)}")


def to_homogeneous(a: torch.Tensor) -> torch.Tensor:
    """``(N, 2, 3)`` -> ``(N, 3, 3)`` by appending the row ``[0, 0, 1]``."""
    row = torch.zeros(*a.shape[:-2], 1, 3, dtype=a.dtype, device=a.device)
    row[..., 0, 2] = 1
    return torch.cat([a, row], dim=-2)


def invert_affine(a: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(N, 2, 3)`` affine matrices (closed form, any dtype)."""
    m = a[..., :2, :2]
    t = a[..., :2, 2:]
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    inv = torch.stack(
        [torch.stack([m[..., 1, 1], -m[..., 0, 1]], -1), torch.stack([-m[..., 1, 0], m[..., 0, 0]], -1)], -2
    ) / det[..., None, None]
    return torch.cat([inv, -inv @ t], dim=-1)


def compose_affine(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """``outer o inner`` for ``(N, 2, 3)`` matrices: apply ``inner`` first."""
    return (to_homogeneous(outer) @ to_homogeneous(inner))[..., :2, :]


def transform_points(a: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply ``(N, 2, 3)`` matrices to ``(N, K, 2)`` points."""
    a = a.to(pts.dtype)
    return pts @ a[..., :2, :2].transpose(-1, -2) + a[..., :2, 2].unsqueeze(-2)


def affine_scale(a: torch.Tensor) -> torch.Tensor:
    """``(N,)`` uniform scale of similarity matrices (``sqrt(|det|)``): output px per input px."""
    det = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
    return det.abs().sqrt()
