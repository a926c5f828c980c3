"""A preview of what Detect found: numbered boxes and landmarks drawn on (downscaled) frames."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: Long side of preview frames (previews are for looking, not for further processing).
PREVIEW_MAX_SIDE = 1024
SELECTED = (40, 220, 60)
SKIPPED = (150, 150, 150)


@dataclass(frozen=True)
class FrameFaces:
    """Every face found in one frame, for the preview: boxes ``(k, 4)``, landmarks ``(k, 5, 2)``,
    numbers ``(k,)`` (position in the order, the number selection uses) and ``selected`` ``(k,)`` bool."""

    boxes: torch.Tensor
    landmarks: torch.Tensor
    numbers: torch.Tensor
    selected: torch.Tensor


def draw_preview(frames: torch.Tensor, found: list[FrameFaces], max_side: int = PREVIEW_MAX_SIDE) -> torch.Tensor:
    """Frames with numbered boxes: green for kept faces, grey for faces the selection skipped.

    Args:
        frames: ``(B, 3, H, W)`` RGB float in ``[0, 1]`` (any strides; read frame by frame).
        found: one :class:`FrameFaces` per frame.
        max_side: frames are shrunk (antialiased) so their long side is at most this.

    Returns:
        ComfyUI IMAGE ``(B, h, w, 3)`` float32 in ``[0, 1]`` on the CPU.
    """
    b, _, height, width = frames.shape
    scale = min(1.0, max_side / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    out = torch.empty(b, h, w, 3, dtype=torch.float32)
    # Lines and labels scale with the preview, so they stay readable when a Preview Image node
    # shows the whole (up to 1024 px) frame at node size (~300 px wide).
    thick = max(2, round(max(h, w) / 250))
    for i in range(b):
        frame = frames[i:i + 1].float().cpu()
        if scale < 1.0:
            frame = F.interpolate(frame, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        img = np.ascontiguousarray((frame[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8))
        faces = found[i]
        for j in range(faces.boxes.shape[0]):
            colour = SELECTED if bool(faces.selected[j]) else SKIPPED
            x1, y1, x2, y2 = (float(v) * scale for v in faces.boxes[j])
            cv2.rectangle(img, (round(x1), round(y1)), (round(x2), round(y2)), colour, thick)
            for px, py in faces.landmarks[j].tolist():
                cv2.circle(img, (round(px * scale), round(py * scale)), thick + 1, colour, -1)
            label = str(int(faces.numbers[j]))
            font = max(max(h, w) / 900, (y2 - y1) / 120)
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
            ty = max(th + 2, round(y1) - 3)
            cv2.rectangle(img, (round(x1), ty - th - 2), (round(x1) + tw + 4, ty + base - 1), colour, -1)
            cv2.putText(img, label, (round(x1) + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)
        out[i] = torch.from_numpy(img).float() / 255
    return out
