"""The face bundle that travels between Detect and Paste Back (socket type ``FACEMEND_FACES``).

A :class:`FaceSet` holds, for every detected face of a batch of frames, where it came from and
how it was aligned. It carries geometry only (no pixels), so it is small and any node may sit
between Detect and Paste Back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

#: Landmark order (RetinaFace and the FFHQ template): the eye on the image's left, the eye on the
#: image's right, the nose tip, the mouth corner on the image's left, the one on the image's right.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

#: Border fills for the part of a crop that lies outside the image.
BORDERS = ("grey", "edge", "reflect", "black")


@dataclass(frozen=True)
class FaceSet:
    """Faces detected in a batch of ``num_frames`` frames of size ``source_size``.

    All tensors are on the CPU and have one row per face, faces sorted by frame and then by the
    order the user chose (so face ``i`` is crop ``i`` of the crops IMAGE).

    Attributes:
        frame_index: ``(N,)`` int64, the frame each face belongs to.
        boxes: ``(N, 4)`` float32 ``(x1, y1, x2, y2)`` in source pixels (pixel centres at integers).
        scores: ``(N,)`` float32 detector confidence in ``[0, 1]``.
        landmarks: ``(N, 5, 2)`` float32 ``(x, y)`` source pixels, order :data:`LANDMARK_NAMES`.
        affines: ``(N, 2, 3)`` float64, maps source pixel coordinates to crop pixel coordinates
            (``[u, v] = A @ [x, y, 1]``; the same convention as ``cv2.warpAffine``).
        crop_size: side of the square crops in pixels.
        source_size: ``(H, W)`` of the frames the faces were found in.
        num_frames: number of frames (frames without faces included).
        padding: facexlib-style ``crop_ratio`` the crops were made with (1.0 = FFHQ framing).
        border: how crop pixels outside the image were filled (one of :data:`BORDERS`).
        track_id: ``(N,)`` int64, the face's identity: its rank in the frame for independent
            images, a stable id across frames for video (same person, same id).
    """

    frame_index: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor
    affines: torch.Tensor
    crop_size: int
    source_size: tuple[int, int]
    num_frames: int
    padding: float = 1.0
    border: str = "grey"
    track_id: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    def __post_init__(self) -> None:
        n = int(self.frame_index.shape[0])
        if self.track_id.numel() == 0 and n > 0:
            object.__setattr__(self, "track_id", torch.zeros(n, dtype=torch.int64))
        shapes = {
            "boxes": (self.boxes, (n, 4)),
            "scores": (self.scores, (n,)),
            "landmarks": (self.landmarks, (n, 5, 2)),
            "affines": (self.affines, (n, 2, 3)),
            "track_id": (self.track_id, (n,)),
        }
        for name, (t, shape) in shapes.items():
            if tuple(t.shape) != shape:
                raise ValueError(f"FaceSet.{name} has shape {tuple(t.shape)}, expected {shape}")
        if self.border not in BORDERS:
            raise ValueError(f"FaceSet.border must be one of {BORDERS}, got {self.border!r}")
        if n and (int(self.frame_index.min()) < 0 or int(self.frame_index.max()) >= self.num_frames):
            raise ValueError("FaceSet.frame_index out of range of num_frames")

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    def __repr__(self) -> str:
        h, w = self.source_size
        return (f"FaceSet({len(self)} faces in {self.num_frames} frames of {w}x{h}, crops {self.crop_size}px, "
                f"padding {self.padding:g})")

    @classmethod
    def empty(cls, num_frames: int, source_size: tuple[int, int], crop_size: int, padding: float = 1.0,
              border: str = "grey") -> FaceSet:
        """A set with no faces (every frame passes through paste-back unchanged)."""
        return cls(
            frame_index=torch.zeros(0, dtype=torch.int64), boxes=torch.zeros(0, 4), scores=torch.zeros(0),
            landmarks=torch.zeros(0, 5, 2), affines=torch.zeros(0, 2, 3, dtype=torch.float64),
            crop_size=crop_size, source_size=source_size, num_frames=num_frames, padding=padding, border=border,
            track_id=torch.zeros(0, dtype=torch.int64),
        )

    def subset(self, index: torch.Tensor | list[int]) -> FaceSet:
        """The faces at ``index`` (a list or int64 tensor of positions, or a bool mask), in that order."""
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.to(torch.int64)
        return replace(
            self, frame_index=self.frame_index[idx], boxes=self.boxes[idx], scores=self.scores[idx],
            landmarks=self.landmarks[idx], affines=self.affines[idx], track_id=self.track_id[idx],
        )

    def faces_in_frame(self, frame: int) -> torch.Tensor:
        """Positions (int64) of the faces of ``frame``."""
        return (self.frame_index == frame).nonzero().flatten()

    def frames_without_faces(self) -> list[int]:
        """Frame indices where no face was kept."""
        present = set(self.frame_index.tolist())
        return [f for f in range(self.num_frames) if f not in present]

    def inverse_affines(self) -> torch.Tensor:
        """``(N, 2, 3)`` float64 crop -> source pixel transforms."""
        from .alignment import invert_affine

        return invert_affine(self.affines)

    def face_scale(self) -> torch.Tensor:
        """``(N,)`` float64 source pixels per crop pixel (the similarity's scale)."""
        a = self.affines
        det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
        return 1.0 / det.abs().sqrt()

    def face_sizes(self) -> torch.Tensor:
        """``(N,)`` float64 side of the FFHQ face square in source pixels (crop side / padding, mapped
        to the source); masks' feather and erosion are fractions of it."""
        return self.face_scale() * (self.crop_size / self.padding)

    def rescaled(self, height: int, width: int) -> FaceSet:
        """The same faces for the frames resized to ``height x width`` (e.g. an upscaled background).

        Raises:
            ValueError: when the new size changes the aspect ratio by more than 1% (faces would no
                longer fit their crops).
        """
        h0, w0 = self.source_size
        if (height, width) == (h0, w0):
            return self
        sx, sy = width / w0, height / h0
        if abs(sx / sy - 1) > 0.01:
            raise ValueError(
                f"FaceMend: the image is {width}x{height} but the faces were found in a {w0}x{h0} image; a resized "
                "image must keep the aspect ratio. Paste back onto the image that went into 'FaceMend Detect' "
                "(or a uniformly resized copy of it)."
            )
        # Source pixel centres at integer coordinates: x' = (x + 0.5) * sx - 0.5.
        scale = torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
        from .alignment import compose_affine, invert_affine

        inv = invert_affine(scale[:2].unsqueeze(0))
        affines = compose_affine(self.affines, inv.expand(len(self), 2, 3))
        s = torch.tensor([sx, sy], dtype=torch.float32)
        off = torch.tensor([0.5 * sx - 0.5, 0.5 * sy - 0.5], dtype=torch.float32)
        boxes = self.boxes.view(-1, 2, 2) * s + off
        landmarks = self.landmarks * s + off
        return replace(self, affines=affines, boxes=boxes.view(-1, 4), landmarks=landmarks, source_size=(height, width))
