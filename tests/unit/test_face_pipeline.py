"""Face pipeline accuracy with the real RetinaFace MobileNet-0.25 weights on the astronaut photo.

Expected values are derived independently in each test: from facexlib's own ``RetinaFace.detect_faces``
run here, from OpenCV (``cv2.estimateAffinePartial2D`` / ``cv2.warpAffine``, the official alignment
calls), from the stored official crop ``tests/data/astronaut_face_512.png``, or from the known
geometry of synthetic images built here with OpenCV (scaled, rotated and mirrored copies).
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings

import cv2
import numpy as np
import pytest
import torch

from torchvision.ops import box_iou

from facemend.face.alignment import align_landmarks, face_template
from facemend.face.models import load_retinaface
from facemend.face.pipeline import detect_and_align, paste_back
from facemend.nodes.images import rgb_view
from facemend.face.warp import resample
from facemend.runtime import ManagedModel
from fm_testing.images import RETINAFACE_MOBILENET, astronaut_rgb, face_crop_512

pytestmark = pytest.mark.skipif(not RETINAFACE_MOBILENET.is_file(), reason="needs ../shared/weights")


def as_image(rgb_u8: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> ComfyUI IMAGE ``(1, H, W, 3)`` float32."""
    return torch.from_numpy(np.ascontiguousarray(rgb_u8)).float().div(255).unsqueeze(0)


def psnr_over(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    """PSNR (peak 1.0) between IMAGEs ``a`` and ``b`` over pixels where ``where`` (B, H, W) is true."""
    d = (a - b)[where]
    return 10 * math.log10(1.0 / float(d.pow(2).mean()))


class MemoNet(torch.nn.Module):
    """Test speed-up: remembers the network's outputs per input (many tests detect the same photo)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.seen: dict[tuple, tuple] = {}

    def forward(self, x: torch.Tensor) -> tuple:
        key = (tuple(x.shape), hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest())
        if key not in self.seen:
            self.seen[key] = self.net(x)
        return self.seen[key]


@pytest.fixture(scope="module")
def detector() -> ManagedModel:
    net = load_retinaface(RETINAFACE_MOBILENET, "retinaface_mobile0.25")
    return ManagedModel(net, module=MemoNet(net.module), device=torch.device("cpu"))


@pytest.fixture(scope="module")
def facexlib_reference() -> np.ndarray:
    """facexlib's own detector (its class, its detect_faces) on the astronaut: ``(k, 15)`` rows."""
    from facexlib.detection.retinaface import RetinaFace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = RetinaFace(network_name="mobile0.25", device=torch.device("cpu"))
    sd = torch.load(RETINAFACE_MOBILENET, map_location="cpu", weights_only=True)
    net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()}, strict=True)
    net.eval()
    with torch.no_grad():
        return net.detect_faces(cv2.cvtColor(astronaut_rgb(), cv2.COLOR_RGB2BGR), 0.8)


# ------------------------------------------------------------------ detection and landmarks


def test_landmarks_match_facexlib_detector_on_astronaut(detector, facexlib_reference) -> None:
    result = detect_and_align(detector, rgb_view(as_image(astronaut_rgb())))
    faces = result.faces
    assert len(faces) == 1 and len(facexlib_reference) == 1
    expected_lm = torch.from_numpy(facexlib_reference[0, 5:15].reshape(5, 2)).float()
    err = (faces.landmarks[0] - expected_lm).norm(dim=1)
    assert float(err.max()) < 3.0  # the bar; in practice ~1e-4 px
    assert float(err.max()) < 0.01
    torch.testing.assert_close(faces.boxes[0], torch.from_numpy(facexlib_reference[0, :4]).float(), atol=0.01, rtol=0)
    assert abs(float(faces.scores[0]) - float(facexlib_reference[0, 4])) < 1e-4
    # the README's figures for this photo
    assert float(faces.scores[0]) > 0.99
    torch.testing.assert_close(faces.boxes[0], torch.tensor([178.0, 60.0, 273.0, 180.0]), atol=1.5, rtol=0)


def test_mirrored_photo_gives_mirrored_landmarks(detector) -> None:
    img = astronaut_rgb()
    direct = detect_and_align(detector, rgb_view(as_image(img))).faces.landmarks[0]
    mirrored = detect_and_align(detector, rgb_view(as_image(img[:, ::-1]))).faces.landmarks[0]
    back = mirrored.clone()
    back[:, 0] = img.shape[1] - 1 - back[:, 0]
    back = back[[1, 0, 2, 4, 3]]  # image-left eye/mouth corner swap sides in the mirror
    assert float((back - direct).norm(dim=1).max()) < 3.0


def test_batched_detection_equals_single_frames(detector) -> None:
    img = astronaut_rgb()
    single = detect_and_align(detector, rgb_view(as_image(img))).faces
    blank = np.full_like(img, 128)
    batch = torch.cat([as_image(blank), as_image(img), as_image(img[:, ::-1])])
    faces = detect_and_align(detector, rgb_view(batch)).faces
    assert faces.frame_index.tolist() == [1, 2]
    torch.testing.assert_close(faces.landmarks[0], single.landmarks[0], atol=1e-3, rtol=0)
    assert faces.frames_without_faces() == [0]


def test_huge_frame_detection_is_shrunk_and_mapped_back(detector) -> None:
    """A frame larger than ``max_side`` is detected at reduced size; coordinates come back in full-size pixels."""
    img = astronaut_rgb()
    big = cv2.resize(img, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    direct = detect_and_align(detector, rgb_view(as_image(img))).faces
    shrunk = detect_and_align(detector, rgb_view(as_image(big)), max_side=512).faces
    assert len(shrunk) == 1
    expected = (direct.landmarks[0] + 0.5) * 3 - 0.5
    assert float((shrunk.landmarks[0] - expected).norm(dim=1).max()) < 3 * 1.5  # 1.5 px at detection scale


# ------------------------------------------------------------------ alignment


def test_alignment_is_the_official_lmeds_fit_and_reproduces_the_official_crop(detector) -> None:
    """Our matrix equals cv2.estimateAffinePartial2D(LMEDS); cv2.warpAffine with it reproduces the stored
    official crop (made with facexlib + LMEDS + warpAffine) exactly; our bicubic crop is close to it."""
    img = astronaut_rgb()
    result = detect_and_align(detector, rgb_view(as_image(img)))
    lm = result.faces.landmarks[0].double().numpy()
    official = cv2.estimateAffinePartial2D(lm, face_template(512).numpy(), method=cv2.LMEDS)[0]
    np.testing.assert_allclose(result.faces.affines[0].numpy(), official, atol=1e-9)
    stored = face_crop_512()
    bilinear = cv2.warpAffine(img, official, (512, 512), borderValue=(132, 133, 135))
    same = torch.from_numpy(bilinear).permute(2, 0, 1).float().div(255).unsqueeze(0) - stored
    # identical up to uint8 rounding flips (landmarks agree with facexlib's to ~1e-4 px, not bit for bit)
    assert float(same.abs().max()) <= 1.01 / 255 and float((same != 0).float().mean()) < 0.01
    d = result.crops - stored
    assert 10 * math.log10(1 / float(d.pow(2).mean())) > 38  # bicubic vs bilinear sampling only


def test_least_squares_alignment_recovers_a_known_similarity() -> None:
    tpl = face_template(512)
    angle, scale, t = math.radians(17), 0.37, torch.tensor([123.4, -56.7], dtype=torch.float64)
    r = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    # landmarks = inverse similarity applied to the template: aligning them must give back that similarity
    pts = ((tpl - t) @ r) / scale
    for method, tol in (("least-squares", 1e-9), ("lmeds", 1e-6)):  # LMEDS ends in an iterative refinement
        a = align_landmarks(pts[None], 512, method=method)[0]
        torch.testing.assert_close(a[:, :2], scale * r, atol=tol, rtol=0)
        torch.testing.assert_close(a[:, 2], t, atol=tol * 1000, rtol=0)


def test_padding_is_facexlib_crop_ratio(detector) -> None:
    """A 768 crop with padding 1.5 holds the 512 FFHQ crop in its centre (facexlib crop_ratio=(1.5, 1.5))."""
    frames = rgb_view(as_image(astronaut_rgb()))
    plain = detect_and_align(detector, frames, crop_size=512).crops
    padded = detect_and_align(detector, frames, crop_size=768, padding=1.5).crops
    torch.testing.assert_close(padded[:, :, 128:640, 128:640], plain, atol=1e-4, rtol=0)


# ------------------------------------------------------------------ identity round trip


@pytest.mark.parametrize(("side", "crop_size"), [(512, 512), (1024, 512), (512, 1024)])
def test_identity_round_trip(detector, side: int, crop_size: int) -> None:
    """detect -> paste back unmodified crops: untouched outside the mask, >= 45 dB where pixels changed."""
    img = astronaut_rgb() if side == 512 else cv2.resize(astronaut_rgb(), (side, side), interpolation=cv2.INTER_CUBIC)
    image = as_image(img)
    before = image.clone()
    frames = rgb_view(image)
    result = detect_and_align(detector, frames, crop_size=crop_size)
    out, mask = paste_back(frames, result.crops, result.faces)
    out = out.permute(0, 2, 3, 1)
    assert torch.equal(image, before)
    assert out.shape == image.shape and mask.shape == image.shape[:3]
    outside = mask == 0
    assert torch.equal(out[outside], image[outside])
    changed = mask > 0
    assert int(changed.sum()) > 0.05 * side * side  # the face region was really pasted
    psnr = psnr_over(out, image, changed)
    assert psnr >= 45.0, psnr


def test_paste_back_antialiases_detail_finer_than_the_image(detector) -> None:
    """A crop holding a fine grating (finer than the image's pixels at the face's scale) must paste as a
    flat grey, not as moire; the same warp without antialiasing shows the moire (the test is sensitive)."""
    frames = rgb_view(as_image(astronaut_rgb()))
    result = detect_and_align(detector, frames, crop_size=1024)
    x = torch.arange(1024, dtype=torch.float32)
    grating = (0.5 + 0.4 * torch.sin(2 * math.pi * 0.31 * (x[None, :] + 0.7 * x[:, None]))).expand(1, 3, 1024, 1024)
    out, mask = paste_back(frames, grating.contiguous(), result.faces, feather=0.0, erode=0.1)
    inside = (mask[0] == 1).expand(3, -1, -1)
    pasted = out[0][inside]
    assert float((pasted - 0.5).abs().max()) < 0.03
    inverse = result.faces.inverse_affines()
    aliased = resample(grating.contiguous(), inverse, tuple(mask.shape[1:]), antialias=False)[0][inside]
    assert float((aliased - 0.5).abs().max()) > 0.15


def test_paste_onto_resized_background(detector) -> None:
    """Faces found at 512 paste onto a 2x upscaled copy of the frame at the right place."""
    img = astronaut_rgb()
    frames = rgb_view(as_image(img))
    result = detect_and_align(detector, frames)
    big = as_image(cv2.resize(img, (1024, 1024), interpolation=cv2.INTER_CUBIC))
    out, mask = paste_back(rgb_view(big), result.crops, result.faces)
    changed = mask > 0
    assert psnr_over(out.permute(0, 2, 3, 1), big, changed) > 30  # the upscaled crop lands on the face
    with pytest.raises(ValueError, match="aspect ratio"):
        paste_back(rgb_view(as_image(cv2.resize(img, (1024, 512)))), result.crops, result.faces)


# ------------------------------------------------------------------ synthetic multi-face images

PATCH = (120, 10, 330, 250)  # x0, y0, x1, y1 of the astronaut's head and shoulders
#: copies: (scale, angle in degrees, mirrored, face centre x, face centre y)
COPIES = [
    (1.0, 0, False, 170, 190),
    (0.75, 8, False, 520, 160),
    (1.5, 0, True, 1040, 240),
    (1.15, -10, True, 240, 640),
    (0.8, 0, False, 600, 520),
    (2.0, -5, False, 950, 780),
]


def build_canvas(reference: np.ndarray, copies: list[tuple], size: tuple[int, int] = (1024, 1280)) -> tuple[np.ndarray, list[np.ndarray]]:
    """A canvas (``size`` = (H, W)) with copies of the astronaut's head placed with OpenCV.

    Returns:
        The canvas (uint8 RGB) and each copy's expected landmarks (``reference`` moved by the copy's
        known transform; mirrored copies swap the image-left/right points).
    """
    src = astronaut_rgb()
    x0, y0, x1, y1 = PATCH
    patch = np.ascontiguousarray(src[y0:y1, x0:x1]).astype(np.float32)
    h, w = size
    canvas = np.full((h, w, 3), 90.0, np.float32)
    occupied = np.zeros((h, w), bool)
    expected = []
    for scale, angle, mirror, cx, cy in copies:
        m = np.eye(3)
        if mirror:
            m = np.array([[-1.0, 0, x1 - x0 - 1], [0, 1, 0], [0, 0, 1]])
        centre = m[:2, :2] @ (reference.mean(0) - [x0, y0]) + m[:2, 2]
        a = math.radians(angle)
        rot = np.array([[scale * math.cos(a), -scale * math.sin(a), 0], [scale * math.sin(a), scale * math.cos(a), 0], [0, 0, 1]])
        m = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]]) @ rot @ np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]]) @ m
        flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        warped = cv2.warpAffine(patch, m[:2], (w, h), flags=flags)
        alpha = cv2.warpAffine(np.ones(patch.shape[:2], np.float32), m[:2], (w, h))
        assert not (occupied & (alpha > 0)).any(), "copies must not overlap"
        occupied |= alpha > 0
        canvas = canvas * (1 - alpha[..., None]) + warped * alpha[..., None]
        pts = (reference - [x0, y0]) @ m[:2, :2].T + m[:2, 2]
        expected.append(pts[[1, 0, 2, 4, 3]] if mirror else pts)
    return np.clip(canvas.round(), 0, 255).astype(np.uint8), expected


@pytest.fixture(scope="module")
def reference_landmarks(detector) -> np.ndarray:
    return detect_and_align(detector, rgb_view(as_image(astronaut_rgb()))).faces.landmarks[0].double().numpy()


@pytest.fixture(scope="module")
def multi_face(reference_landmarks):
    return build_canvas(reference_landmarks, COPIES)


def _match(landmarks: torch.Tensor, expected: list[np.ndarray]) -> list[int]:
    """For each expected copy, the detected face closest to it."""
    lm = landmarks.double().numpy()
    return [int(np.linalg.norm(lm - e[None], axis=-1).mean(1).argmin()) for e in expected]


def _rotation_and_scale(a: torch.Tensor) -> tuple[float, float]:
    """Angle (degrees) and scale of a similarity matrix."""
    return math.degrees(math.atan2(float(a[1, 0]), float(a[0, 0]))), math.hypot(float(a[0, 0]), float(a[1, 0]))


def test_synthetic_copies_found_with_known_geometry(detector, multi_face) -> None:
    canvas, expected = multi_face
    faces = detect_and_align(detector, rgb_view(as_image(canvas)), alignment="least-squares").faces
    assert len(faces) == len(COPIES)
    match = _match(faces.landmarks, expected)
    assert sorted(match) == list(range(len(COPIES)))
    img = astronaut_rgb()
    refs = {
        mirror: _rotation_and_scale(
            detect_and_align(detector, rgb_view(as_image(img[:, ::-1] if mirror else img)), alignment="least-squares").faces.affines[0]
        )
        for mirror in (False, True)
    }
    for (scale, angle, mirror, *_), e, i in zip(COPIES, expected, match):
        eye = float(np.linalg.norm(e[0] - e[1]))
        err = np.linalg.norm(faces.landmarks[i].double().numpy() - e, axis=1)
        assert err.mean() < 0.08 * eye and err.max() < 0.15 * eye, (scale, angle, mirror, err, eye)
        # the alignment undoes the copy's rotation and scale: angle_ref - angle, scale_ref / scale
        fitted_angle, fitted_scale = _rotation_and_scale(faces.affines[i])
        ref_angle, ref_scale = refs[mirror]
        assert abs(fitted_angle - (ref_angle - angle)) < 5.0, (scale, angle, mirror, fitted_angle, ref_angle)
        assert abs(fitted_scale * scale / ref_scale - 1) < 0.06, (scale, angle, mirror, fitted_scale, ref_scale)


def test_synthetic_copies_order_and_selection(detector, multi_face) -> None:
    canvas, expected = multi_face
    frames = rgb_view(as_image(canvas))
    centres = np.array([e.mean(0) for e in expected])
    known = {
        "left-to-right": list(np.argsort(centres[:, 0], kind="stable")),
        "top-to-bottom": list(np.argsort(centres[:, 1], kind="stable")),
        "area": list(np.argsort([-c[0] for c in COPIES], kind="stable")),
        "center-distance": list(np.argsort(np.hypot(centres[:, 0] - 639.5, centres[:, 1] - 511.5), kind="stable")),
    }
    for order, copy_order in known.items():
        faces = detect_and_align(detector, frames, order=order).faces
        match = _match(faces.landmarks, expected)  # copy -> face position
        assert [match[c] for c in copy_order] == list(range(len(COPIES))), order
    by_conf = detect_and_align(detector, frames, order="confidence").faces
    assert torch.all(by_conf.scores[:-1] >= by_conf.scores[1:])

    ltr = known["left-to-right"]
    picked = detect_and_align(detector, frames, order="left-to-right", select="indices", indices="0,2-3").faces
    assert _match(picked.landmarks, [expected[ltr[i]] for i in (0, 2, 3)]) == [0, 1, 2]
    assert picked.track_id.tolist() == [0, 2, 3]
    largest = detect_and_align(detector, frames, order="left-to-right", select="largest").faces
    assert len(largest) == 1 and _match(largest.landmarks, [expected[known["area"][0]]]) == [0]
    capped = detect_and_align(detector, frames, order="area", max_faces=2).faces
    assert _match(capped.landmarks, [expected[i] for i in known["area"][:2]]) == [0, 1]
    big_only = detect_and_align(detector, frames, min_size=130).faces  # only the 1.5x and 2x copies' boxes are that big
    assert sorted(_match(big_only.landmarks, [expected[2], expected[5]])) == [0, 1] and len(big_only) == 2
    out_of_range = detect_and_align(detector, frames, select="indices", indices="9").faces
    assert len(out_of_range) == 0


def test_multi_face_round_trip_and_blend_order(detector, multi_face) -> None:
    canvas, _ = multi_face
    image = as_image(canvas)
    frames = rgb_view(image)
    result = detect_and_align(detector, frames)
    out, mask = paste_back(frames, result.crops, result.faces)
    out = out.permute(0, 2, 3, 1)
    assert torch.equal(out[mask == 0], image[mask == 0])
    assert psnr_over(out, image, mask > 0) >= 45.0
    # paint every crop a flat colour by face: where two masks overlap, the larger face must win
    n = len(result.faces)
    flat = torch.linspace(0.1, 0.9, n).view(n, 1, 1, 1).expand(n, 3, 512, 512).contiguous()
    painted, _ = paste_back(frames, flat, result.faces, feather=0.0, erode=0.0)
    sizes = result.faces.face_sizes()
    largest = int(sizes.argmax())
    inv = result.faces.inverse_affines()[largest]
    cx, cy = (inv[:, :2] @ torch.tensor([255.5, 255.5], dtype=torch.float64) + inv[:, 2]).round().long().tolist()
    assert abs(float(painted[0, 0, cy, cx]) - float(flat[largest, 0, 0, 0])) < 1e-3


# ------------------------------------------------------------------ video


def moving_faces(reference: np.ndarray, frames: int = 7) -> tuple[torch.Tensor, list[list[np.ndarray]]]:
    """Two copies passing each other: A (top) moves right, B (bottom, mirrored) moves left, 45 px a frame."""
    images, expected = [], []
    for t in range(frames):
        copies = [(0.8, 0, False, 120 + 45 * t, 150), (0.8, 5, True, 420 - 45 * t, 370)]
        canvas, exp = build_canvas(reference, copies, size=(512, 544))
        images.append(as_image(canvas))
        expected.append(exp)
    return torch.cat(images), expected


def test_video_keeps_face_numbers_across_frames(detector, reference_landmarks) -> None:
    batch, expected = moving_faces(reference_landmarks)
    frames = rgb_view(batch)
    # independent images, numbered left to right: the numbers swap when the faces pass each other
    per_image = detect_and_align(detector, frames, order="left-to-right").faces
    video = detect_and_align(detector, frames, order="left-to-right", video=True).faces
    for faces in (per_image, video):
        assert faces.frame_index.tolist() == [t for t in range(7) for _ in range(2)]
    first_a = []
    for faces in (per_image, video):
        ids = []
        for t in range(7):
            pos = faces.faces_in_frame(t)
            a = _match(faces.landmarks[pos], [expected[t][0]])[0]  # which of the frame's faces is copy A
            ids.append(int(faces.track_id[pos[a]]))
        first_a.append(ids)
    assert len(set(first_a[0])) == 2  # per-image numbering changes with position
    assert len(set(first_a[1])) == 1  # video numbering follows the person
    picked = detect_and_align(detector, frames, order="left-to-right", video=True, select="indices", indices="0").faces
    assert len(picked) == 7
    for t in range(7):  # the same person in every frame
        assert _match(picked.landmarks[t:t + 1], [expected[t][first_a[1][0]], expected[t][1 - first_a[1][0]]])[0] == 0


def test_video_detect_every_n_tracks_in_between(detector, reference_landmarks) -> None:
    batch, expected = moving_faces(reference_landmarks)
    frames = rgb_view(batch)
    every = detect_and_align(detector, frames, video=True, detect_every=3).faces
    assert every.frame_index.tolist() == [t for t in range(7) for _ in range(2)]
    for t in range(7):
        pos = every.faces_in_frame(t)
        for copy in range(2):
            e = expected[t][copy]
            eye = float(np.linalg.norm(e[0] - e[1]))
            i = _match(every.landmarks[pos], [e])[0]
            err = np.linalg.norm(every.landmarks[pos[i]].double().numpy() - e, axis=1)
            assert err.mean() < 0.1 * eye, (t, copy, err)
    # both faces keep their identity through the tracked frames
    ids_a = {int(every.track_id[every.faces_in_frame(t)][_match(every.landmarks[every.faces_in_frame(t)], [expected[t][0]])[0]])
             for t in range(7)}
    assert len(ids_a) == 1


def test_video_landmark_smoothing_reduces_jitter(detector, reference_landmarks) -> None:
    """A face that moves by sub-pixel steps: smoothed landmarks follow the known path more closely."""
    images, expected = [], []
    for t in range(8):
        canvas, exp = build_canvas(reference_landmarks, [(0.9, 0, False, 200 + 0.7 * t, 200 + 0.4 * t)], size=(400, 400))
        images.append(as_image(canvas))
        expected.append(exp[0])
    frames = rgb_view(torch.cat(images))
    exp = torch.from_numpy(np.stack(expected)).float()
    raw = detect_and_align(detector, frames, video=True).faces.landmarks
    smooth = detect_and_align(detector, frames, video=True, smoothing=2.0).faces.landmarks
    err_raw = (raw - exp).norm(dim=-1).mean()
    err_smooth = (smooth - exp).norm(dim=-1).mean()
    assert float(err_smooth) < float(err_raw)
    jitter = lambda lm: float((lm[1:] - lm[:-1] - (exp[1:] - exp[:-1])).norm(dim=-1).mean())  # noqa: E731
    assert jitter(smooth) < 0.6 * jitter(raw)


# ------------------------------------------------------------------ bad input


def test_tiny_image_passes_through(detector, caplog) -> None:
    image = torch.rand(1, 16, 16, 3)
    frames = rgb_view(image)
    with caplog.at_level(logging.WARNING, logger="facemend"):
        result = detect_and_align(detector, frames)
        out, mask = paste_back(frames, result.crops, result.faces)
    assert len(result.faces) == 0 and result.crops.shape == (0, 3, 512, 512)
    assert torch.equal(out.permute(0, 2, 3, 1), image) and not bool(mask.any())
    assert "no face" in caplog.text


def test_mixed_batch_grey_and_rgba_inputs_are_not_modified(detector, caplog) -> None:
    img = astronaut_rgb()
    rgba = torch.cat([as_image(img), torch.full((1, 512, 512, 1), 0.5)], dim=-1)
    empty = torch.cat([torch.full((1, 512, 512, 3), 0.3), torch.ones(1, 512, 512, 1)], dim=-1)
    batch = torch.cat([rgba, empty])
    before = batch.clone()
    frames = rgb_view(batch)
    with caplog.at_level(logging.WARNING, logger="facemend"):
        result = detect_and_align(detector, frames)
        out, mask = paste_back(frames, result.crops, result.faces)
    assert torch.equal(batch, before)
    assert result.faces.frame_index.tolist() == [0]
    assert torch.equal(out[1].permute(1, 2, 0), batch[1, ..., :3]) and not bool(mask[1].any())
    assert "no face" in caplog.text and "1" in caplog.text
    rgb_only = detect_and_align(detector, rgb_view(as_image(img))).faces
    torch.testing.assert_close(result.faces.landmarks[0], rgb_only.landmarks[0], atol=1e-4, rtol=0)
    grey = as_image(img).mean(dim=-1, keepdim=True)
    grey_faces = detect_and_align(detector, rgb_view(grey)).faces
    assert len(grey_faces) == 1


def test_nan_input_is_refused(detector) -> None:
    image = as_image(astronaut_rgb())
    image[0, 5, 5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        detect_and_align(detector, rgb_view(image))


def test_crops_that_do_not_match_the_faces_are_refused(detector) -> None:
    frames = rgb_view(as_image(astronaut_rgb()))
    result = detect_and_align(detector, frames)
    with pytest.raises(ValueError, match="1 detected face"):
        paste_back(frames, torch.cat([result.crops, result.crops]), result.faces)
    with pytest.raises(ValueError, match="512x512"):
        paste_back(frames, result.crops[..., :256, :256], result.faces)
    with pytest.raises(ValueError, match="frame"):
        paste_back(rgb_view(torch.zeros(2, 512, 512, 3)), result.crops, result.faces)
    bad = result.crops.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        paste_back(frames, bad, result.faces)


def test_8000px_image_is_handled(detector) -> None:
    """An 8000x8000 grey (1-channel) photo: detection runs on a shrunk copy made strip by strip, crops and
    paste-back read and write windows only; the face is found and round-trips."""
    grey = torch.from_numpy(astronaut_rgb()).float().mean(-1).div(255)[None, None]
    big = torch.nn.functional.interpolate(grey, size=(8000, 8000), mode="bilinear", align_corners=False)
    image = big.permute(0, 2, 3, 1)  # (1, 8000, 8000, 1)
    del big
    frames = rgb_view(image)
    result = detect_and_align(detector, frames)
    assert len(result.faces) == 1
    box = (result.faces.boxes[:1] + 0.5) / (8000 / 512) - 0.5
    assert float(box_iou(box, torch.tensor([[178.0, 60.0, 273.0, 180.0]]))) > 0.75  # blurred grey copy: boxes wobble
    out, mask = paste_back(frames, result.crops, result.faces)
    assert out.shape == (1, 3, 8000, 8000)
    rows = mask[0].amax(dim=1).nonzero().flatten()
    cols = mask[0].amax(dim=0).nonzero().flatten()
    ys, xs = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)  # measure in the face box
    window = out.permute(0, 2, 3, 1)[:, ys, xs]
    assert psnr_over(window, image[:, ys, xs].expand(-1, -1, -1, 3), mask[:, ys, xs] > 0) > 45
    assert torch.equal(out[0, :, : int(rows[0])], image[0, : int(rows[0])].permute(2, 0, 1).expand(3, -1, -1))
