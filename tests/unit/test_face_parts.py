"""Face pipeline building blocks: selection, records, warps, masks, colour, tracking, model files, nodes."""

from __future__ import annotations

import inspect
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from facemend.face import color, masks, selection, tracking, warp
from facemend.face.alignment import FFHQ_TEMPLATE_512, compose_affine, face_template, invert_affine
from facemend.face.detection import Detections, detect_frames, priors
from facemend.face.records import FaceSet
from facemend.model_loaders import UnsupportedModelError
from facemend.nodes.images import is_placeholder
from facemend.runtime import ManagedModel
from fm_testing.images import RETINAFACE_MOBILENET, astronaut_image

needs_weights = pytest.mark.skipif(not RETINAFACE_MOBILENET.is_file(), reason="needs ../shared/weights")


# ------------------------------------------------------------------ selection


def test_parse_indices() -> None:
    assert selection.parse_indices("0,2") == [0, 2]
    assert selection.parse_indices("1-3") == [1, 2, 3]
    assert selection.parse_indices(" 0, 2-4 ,2") == [0, 2, 3, 4]
    for bad in ("a", "3-1", "", "1,,x", "-1"):
        with pytest.raises(ValueError, match="FaceMend"):
            selection.parse_indices(bad)


def test_rank_and_choose() -> None:
    # (x1, y1, x2, y2): a small face top-right, a big face bottom-left, a medium face in the centre
    boxes = torch.tensor([[300.0, 10, 340, 50], [10, 200, 150, 340], [170, 150, 240, 220]])
    scores = torch.tensor([0.99, 0.9, 0.95])
    assert selection.rank(boxes, scores, "area", 400, 400).tolist() == [1, 2, 0]
    assert selection.rank(boxes, scores, "left-to-right", 400, 400).tolist() == [1, 2, 0]
    assert selection.rank(boxes, scores, "top-to-bottom", 400, 400).tolist() == [0, 2, 1]
    assert selection.rank(boxes, scores, "confidence", 400, 400).tolist() == [0, 2, 1]
    assert selection.rank(boxes, scores, "center-distance", 400, 400).tolist() == [2, 1, 0]
    ordered = boxes[[0, 2, 1]]
    assert selection.choose(ordered, "largest", "", 0, 400, 400).tolist() == [2]
    assert selection.choose(ordered, "all", "", 2, 400, 400).tolist() == [0, 1]
    assert selection.choose(ordered, "indices", "1-5", 0, 400, 400).tolist() == [1, 2]
    assert selection.big_enough(boxes, 50).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="order"):
        selection.rank(boxes, scores, "random", 400, 400)


# ------------------------------------------------------------------ records and alignment


def _faceset(n: int = 2) -> FaceSet:
    lm = FFHQ_TEMPLATE_512.float().expand(n, 5, 2) * 0.3 + torch.tensor([[40.0, 20.0]])
    from facemend.face.alignment import align_landmarks

    return FaceSet(
        frame_index=torch.zeros(n, dtype=torch.int64), boxes=torch.tensor([[90.0, 80, 190, 200]]).expand(n, 4).clone(),
        scores=torch.ones(n), landmarks=lm.clone(), affines=align_landmarks(lm, 512, method="least-squares"),
        crop_size=512, source_size=(300, 400), num_frames=1,
    )


def test_faceset_validation_subset_and_rescale() -> None:
    faces = _faceset(2)
    assert len(faces.subset([1])) == 1
    with pytest.raises(ValueError, match="boxes"):
        FaceSet(frame_index=torch.zeros(1, dtype=torch.int64), boxes=torch.zeros(2, 4), scores=torch.zeros(1),
                landmarks=torch.zeros(1, 5, 2), affines=torch.zeros(1, 2, 3), crop_size=512, source_size=(4, 4), num_frames=1)
    big = faces.rescaled(600, 800)
    # a source point and its rescaled position land on the same crop pixel
    pt = torch.tensor([[[123.0, 77.0]]], dtype=torch.float64)
    pt2 = (pt + 0.5) * 2 - 0.5
    from facemend.face.alignment import transform_points

    torch.testing.assert_close(transform_points(big.affines[:1], pt2), transform_points(faces.affines[:1], pt))
    torch.testing.assert_close(big.landmarks, (faces.landmarks + 0.5) * 2 - 0.5)
    with pytest.raises(ValueError, match="aspect ratio"):
        faces.rescaled(600, 400)


def test_template_and_affine_helpers() -> None:
    torch.testing.assert_close(face_template(1024), FFHQ_TEMPLATE_512 * 2)
    padded = face_template(768, 1.5)
    torch.testing.assert_close(padded, FFHQ_TEMPLATE_512 + 128)  # a 512 face centred in 768
    with pytest.raises(ValueError):
        face_template(512, 0.9)
    a = torch.tensor([[[0.8, -0.3, 12.0], [0.3, 0.8, -4.0]]], dtype=torch.float64)
    eye = compose_affine(a, invert_affine(a))
    torch.testing.assert_close(eye, torch.eye(2, 3, dtype=torch.float64)[None])


# ------------------------------------------------------------------ warps


def test_resample_matches_opencv_convention() -> None:
    """Same matrix, same pixel-centre convention as cv2.warpAffine (bicubic, upsampling: no filter)."""
    img = astronaut_image()[0].numpy()
    m = np.array([[1.7, 0.4, -210.0], [-0.4, 1.7, -40.0]])
    ours = warp.resample(torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(m)[None], (300, 320))[0]
    ref = cv2.warpAffine(img, m, (320, 300), flags=cv2.INTER_CUBIC)
    d = (ours.permute(1, 2, 0).numpy() - ref)[10:-10, 10:-10]
    assert 10 * math.log10(1 / float((d**2).mean())) > 45
    shift = np.array([[1.0, 0, -7], [0, 1, -3]])  # integer shift: bicubic samples exactly
    ours = warp.resample(torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(shift)[None], (100, 100))[0]
    torch.testing.assert_close(ours.permute(1, 2, 0), torch.from_numpy(img[3:103, 7:107]), atol=1e-5, rtol=0)


def test_antialias_kernel_response() -> None:
    assert warp.antialias_kernels(torch.tensor([0.5, 1.0])) is None
    k = warp.antialias_kernels(torch.tensor([1.0, 4.0]))
    assert k is not None
    torch.testing.assert_close(k.sum(1), torch.ones(2))
    assert float(k[0].abs().sum()) == pytest.approx(1.0)  # identity for the non-shrinking item
    taps = k[1].double()
    x = torch.arange(taps.numel(), dtype=torch.float64) - taps.numel() // 2

    def response(cycles_per_output_px: float) -> float:
        f = cycles_per_output_px / 4  # in source pixels
        return float((taps * torch.cos(2 * math.pi * f * x)).sum())

    assert response(0.0) == pytest.approx(1.0)
    assert response(0.25) > 0.95  # the output's own band passes
    assert response(1.0) < 0.02 and abs(response(1.6)) < 0.02  # what would alias is removed


@pytest.mark.parametrize("border", ["grey", "edge", "reflect", "black"])
def test_windowed_crops_equal_full_frame_warps(border: str) -> None:
    """Cutting crops from windows is only an optimisation: identical to warping the whole frame."""
    frames = astronaut_image().permute(0, 3, 1, 2)
    affines = torch.tensor([
        [[4.0, 0.5, -700.0], [-0.5, 4.0, -250.0]],  # face upsampled
        [[0.4, 0.1, 10.0], [-0.1, 0.4, 20.0]],  # large face shrunk (antialiased)
        [[2.0, 0.0, 200.0], [0.0, 2.0, 150.0]],  # crop hanging over the top-left image corner
    ], dtype=torch.float64)
    crops = warp.extract_crops(frames.expand(3, -1, -1, -1), torch.arange(3), affines, 256, border, max_batch_pixels=2**22)
    full = warp.resample(frames.expand(3, -1, -1, -1).contiguous(), affines, (256, 256), border=border).clamp(0, 1)
    torch.testing.assert_close(crops, full, atol=2e-5, rtol=0)


# ------------------------------------------------------------------ masks


def test_box_mask_geometry() -> None:
    m = masks.box_mask(512, erode=20.0, feather=40.0)[0, 0]
    assert float(m[:20].max()) == 0.0 and float(m[:, -20:].max()) == 0.0
    assert float(m[60:452, 60:452].min()) == 1.0
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.T)
    # relative sizes: the same mask at 512 and 1024 (and padding scales it with the face)
    small = masks.build_masks(1, 512, 1.0, "box", 0.05, 0.1)
    large = masks.build_masks(1, 1024, 1.0, "box", 0.05, 0.1)
    down = torch.nn.functional.avg_pool2d(large, 2)
    assert float((down - small).abs().max()) < 0.02


def test_parsing_groups_and_labels() -> None:
    for name, labels in masks.PARSE_LABELS.items():
        assert len(labels) == 19 and labels[0] == "background"
        for parts in masks.PARSE_GROUPS.values():
            assert all(p in labels for p in parts), name
    # hand-made label map in each network's order: the same parts come out
    for name, labels in masks.PARSE_LABELS.items():
        lab = torch.zeros(1, 4, 4, dtype=torch.int64)
        lab[0, 0, 0] = labels.index("l_eye")
        lab[0, 1, 1] = labels.index("hair")
        lab[0, 2, 2] = labels.index("u_lip")
        got = masks.class_mask(lab, name, ("eyes", "mouth"))[0, 0]
        assert got[0, 0] == 1 and got[1, 1] == 0 and got[2, 2] == 1 and float(got.sum()) == 2
    assert masks.parse_class_list("Skin, eyes ,mouth") == ("skin", "eyes", "mouth")
    with pytest.raises(ValueError, match="parsing class"):
        masks.parse_class_list("skin, beard")


@pytest.mark.parametrize("parser", ["bisenet", "parsenet"])
def test_parsing_masks_with_facexlib_networks(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random-weight facexlib parsers (no released weights here) through the full mask path
    (at 128 px instead of the networks' 512 to keep the test light; both are fully convolutional)."""
    from facemend.face.models import FaceNet, build_parser

    monkeypatch.setattr(masks, "PARSE_SIZE", 128)
    torch.manual_seed(0)
    net = build_parser(parser)
    managed = ManagedModel(FaceNet(parser, net), module=net, device=torch.device("cpu"))
    crops = torch.rand(1, 3, 256, 256)
    labels = masks.parse_faces(managed, crops)
    assert labels.shape == (1, 128, 128) and int(labels.min()) >= 0 and int(labels.max()) < 19
    for mode in ("parsing", "box+parsing"):
        m = masks.build_masks(1, 256, 1.0, mode, 0.02, 0.05, labels, parser, ("skin", "hair"))
        assert m.shape == (1, 1, 256, 256) and float(m.min()) >= 0 and float(m.max()) <= 1
        assert float(m[..., 0, :].max()) == 0.0  # never a hard edge at the crop border
    box = masks.build_masks(1, 256, 1.0, "box", 0.02, 0.05)
    assert bool((masks.build_masks(1, 256, 1.0, "box+parsing", 0.02, 0.05, labels, parser) <= box + 1e-6).all())
    with pytest.raises(ValueError, match="parser"):
        masks.build_masks(1, 256, 1.0, "parsing")


# ------------------------------------------------------------------ colour


def test_color_corrections() -> None:
    g = torch.Generator().manual_seed(0)
    ref = 0.3 + 0.4 * torch.rand(2, 3, 64, 64, generator=g)
    x = (0.5 + 0.1 * torch.rand(2, 3, 64, 64, generator=g))
    assert color.correct_color(x, ref, "none") is x
    out = color.adain(x, ref)
    torch.testing.assert_close(out.mean(dim=(2, 3)), ref.mean(dim=(2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), ref.std(dim=(2, 3), unbiased=False), atol=1e-4, rtol=0)
    # wavelet: a global colour cast is removed entirely, high frequencies are kept
    smooth = torch.nn.functional.avg_pool2d(ref, 9, stride=1, padding=4, count_include_pad=False)
    shifted = (smooth + torch.tensor([0.1, -0.05, 0.08]).view(1, 3, 1, 1))
    torch.testing.assert_close(color.wavelet(shifted, smooth), smooth, atol=1e-5, rtol=0)
    levels = color.wavelet_levels(64)
    w = color.wavelet(x, ref)
    torch.testing.assert_close(w - color.low_frequency(ref, levels), x - color.low_frequency(x, levels), atol=1e-5, rtol=0)
    h = color.histogram_match(x, ref)
    torch.testing.assert_close(torch.sort(h.flatten(2)).values, torch.sort(ref.flatten(2)).values)
    order = torch.argsort(x.flatten(2), stable=True)
    assert bool((torch.gather(h.flatten(2), 2, order).diff(dim=2) >= 0).all())  # ranks of x preserved
    with pytest.raises(ValueError, match="colour"):
        color.correct_color(x, ref, "sepia")


# ------------------------------------------------------------------ tracking


def _det(boxes: list[list[float]]) -> Detections:
    b = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    return Detections(b, torch.ones(b.shape[0]), torch.zeros(b.shape[0], 5, 2))


def test_link_tracks_follows_fast_crossing_faces() -> None:
    # face A moves right 60 px/frame on top, face B left on the bottom; B is missed in frame 2
    frames = []
    for t in range(6):
        a = [20 + 60 * t, 20, 100 + 60 * t, 100]
        b = [400 - 60 * t, 200, 480 - 60 * t, 280]
        frames.append(_det([b, a] if t % 2 else ([a] if t == 2 else [a, b])))
    ids = tracking.link_tracks(frames)
    track_a = {int(ids[t][1 if t % 2 else 0]) for t in range(6)}
    track_b = {int(ids[t][0 if t % 2 else 1]) for t in range(6) if t != 2}
    assert len(track_a) == 1 and len(track_b) == 1 and track_a != track_b


def test_smooth_tracks() -> None:
    g = torch.Generator().manual_seed(1)
    truth = torch.linspace(0, 10, 30)[:, None].expand(30, 2)
    noisy = truth + torch.randn(30, 2, generator=g)
    frame = torch.arange(30)
    track = torch.zeros(30, dtype=torch.int64)
    out = tracking.smooth_tracks(frame, track, noisy, 2.0)
    assert float((out - truth).abs().mean()) < 0.6 * float((noisy - truth).abs().mean())
    assert torch.equal(tracking.smooth_tracks(frame, track, noisy, 0.0), noisy)
    # a lone frame after a gap is its own run and stays as it is
    frame2 = torch.tensor([0, 1, 2, 5])
    vals = torch.tensor([[0.0], [1.0], [2.0], [50.0]])
    out2 = tracking.smooth_tracks(frame2, torch.zeros(4, dtype=torch.int64), vals, 1.0)
    assert float(out2[3, 0]) == 50.0 and float(out2[:3].max()) < 3


# ------------------------------------------------------------------ detector internals and chunking


def test_priors_match_the_network_layout() -> None:
    p = priors(96, 160, torch.device("cpu"))
    assert p.shape == ((12 * 20 + 6 * 10 + 3 * 5) * 2, 4)
    torch.testing.assert_close(p[0], torch.tensor([4 / 160, 4 / 96, 16 / 160, 16 / 96]))
    torch.testing.assert_close(p[1], torch.tensor([4 / 160, 4 / 96, 32 / 160, 32 / 96]))
    torch.testing.assert_close(p[2, :2], torch.tensor([12 / 160, 4 / 96]))  # next position along x


@needs_weights
def test_detection_runs_in_chunks() -> None:
    from facemend.face.models import load_retinaface

    net = load_retinaface(RETINAFACE_MOBILENET, "retinaface_mobile0.25")
    calls: list[tuple[int, ...]] = []
    net.module.register_forward_pre_hook(lambda _m, args: calls.append(tuple(args[0].shape)))
    managed = ManagedModel(net, module=net.module, device=torch.device("cpu"))
    frames = torch.rand(5, 3, 64, 96)
    dets = detect_frames(managed, frames, max_chunk=2)
    assert len(dets) == 5 and [c[0] for c in calls] == [2, 2, 1]
    assert calls[0][2:] == (64, 96)  # padded to multiples of 32, not resized
    calls.clear()
    detect_frames(managed, torch.rand(1, 3, 64, 100), max_chunk=2)
    assert calls[0][2:] == (64, 128)


# ------------------------------------------------------------------ model files and downloads


def test_official_urls_are_facexlibs() -> None:
    """Our URLs and file names are the ones in facexlib's own init functions."""
    from facemend.face.models import DETECTOR_FILES, PARSER_FILES
    from facexlib.detection import init_detection_model
    from facexlib.parsing import init_parsing_model

    source = inspect.getsource(init_detection_model) + inspect.getsource(init_parsing_model)
    for f in (*DETECTOR_FILES.values(), *PARSER_FILES.values()):
        assert f"'{f.url}'" in source and f.url.endswith("/" + f.name)


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACEMEND_MODELS_DIR", str(tmp_path))
    (tmp_path / "facedetection").mkdir()
    return tmp_path / "facedetection"


@needs_weights
def test_present_file_loads_without_network(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facemend.face import models as fm

    shutil.copy(RETINAFACE_MOBILENET, models_dir / "detection_mobilenet0.25_Final.pth")

    def no_network(name: str, kind: str, url: str, **_: object) -> Path:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(fm, "download_model", no_network)
    loaded = fm.load_face_models("retinaface_mobile0.25", "none")
    assert isinstance(loaded.detector, ManagedModel) and loaded.parser is None
    assert loaded.detector_name == "retinaface_mobile0.25"
    with pytest.raises(AssertionError, match="parsing_bisenet.pth"):
        fm.load_face_models("retinaface_mobile0.25", "bisenet")  # missing parser -> download attempted


@needs_weights
def test_missing_file_is_downloaded_from_the_official_url(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facemend.face import models as fm

    asked: list[tuple[str, str, str, str | None]] = []

    def fake_download(name: str, kind: str, url: str, sha256: str | None = None) -> Path:
        asked.append((name, kind, url, sha256))
        dest = models_dir / name
        shutil.copy(RETINAFACE_MOBILENET, dest)
        return dest

    monkeypatch.setattr(fm, "download_model", fake_download)
    fm.load_face_models("retinaface_mobile0.25")
    assert asked == [(
        "detection_mobilenet0.25_Final.pth", "facedetection",
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
        "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",  # the official digest is checked
    )]
    with pytest.raises(FileNotFoundError, match="facedetection"):
        fm.model_path(fm.DETECTOR_FILES["retinaface_resnet50"], allow_download=False)


@needs_weights
def test_wrong_file_gives_a_clear_error(tmp_path: Path) -> None:
    from facemend.face import models as fm

    with pytest.raises(UnsupportedModelError, match="retinaface_resnet50"):
        fm.load_retinaface(RETINAFACE_MOBILENET, "retinaface_resnet50")
    with pytest.raises(UnsupportedModelError, match="bisenet"):
        fm.load_parsing(RETINAFACE_MOBILENET, "bisenet")
    with pytest.raises(ValueError, match="unknown face detector"):
        fm.load_face_models("yolo")


# ------------------------------------------------------------------ nodes


def test_node_schemas() -> None:
    from facemend.nodes.detect import FaceMendDetect
    from facemend.nodes.loaders import FaceMendDetectorLoader
    from facemend.nodes.paste import FaceMendPasteBack

    for node in (FaceMendDetectorLoader, FaceMendDetect, FaceMendPasteBack):
        assert node.CATEGORY.startswith("FaceMend/") and node.DESCRIPTION
        assert all(i.tooltip for i in node.inputs()) and all(o.tooltip for o in node.OUTPUTS)
        for i in node.inputs():
            if i.type == "COMBO":
                assert i.default in i.choices()


@pytest.mark.parametrize(("present", "expected"), [
    ((), "retinaface_resnet50"),  # nothing there: the accurate one is downloaded on first use
    (("detection_mobilenet0.25_Final.pth",), "retinaface_mobile0.25"),  # only the mobile one: use it
    (("detection_Resnet50_Final.pth",), "retinaface_resnet50"),
    (("detection_Resnet50_Final.pth", "detection_mobilenet0.25_Final.pth"), "retinaface_resnet50"),
])
def test_detector_default_is_a_file_that_is_present(models_dir: Path, present: tuple[str, ...], expected: str) -> None:
    from facemend.nodes.loaders import FaceMendDetectorLoader

    for name in present:
        (models_dir / name).write_bytes(b"weights")
    inputs = {i.id: i for i in FaceMendDetectorLoader.inputs()}
    assert inputs["detector"].default == expected
    assert inputs["detector"].default in inputs["detector"].choices()


def test_detector_loader_says_which_file_each_choice_needs() -> None:
    from facemend.face.models import DETECTOR_FILES, PARSER_FILES
    from facemend.nodes.loaders import FaceMendDetectorLoader

    inputs = {i.id: i for i in FaceMendDetectorLoader.inputs()}
    for choice, file in DETECTOR_FILES.items():
        assert f"{choice} (" in inputs["detector"].tooltip and f"needs {file.name}" in inputs["detector"].tooltip
        assert f"{choice}: {file.name}" in FaceMendDetectorLoader.DESCRIPTION
    for choice, file in PARSER_FILES.items():
        assert f"{choice} (needs {file.name})" in inputs["parser"].tooltip
        assert f"{choice}: {file.name}" in FaceMendDetectorLoader.DESCRIPTION


@needs_weights
def test_nodes_end_to_end(models_dir: Path) -> None:
    from facemend.nodes.detect import FaceMendDetect
    from facemend.nodes.loaders import FaceMendDetectorLoader
    from facemend.nodes.paste import FaceMendPasteBack

    shutil.copy(RETINAFACE_MOBILENET, models_dir / "detection_mobilenet0.25_Final.pth")
    (detector,) = FaceMendDetectorLoader.execute(detector="retinaface_mobile0.25", parser="none").outputs
    image = astronaut_image()
    before = image.clone()
    res = FaceMendDetect.execute(detector=detector, image=image, confidence=0.8, min_face_size=20, select="all",
                                 indices="0", order="area", max_faces=0, crop_size=512, padding=1.0, border="grey",
                                 alignment="lmeds", video=False, detect_every=1, landmark_smoothing=0.0,
                                 detect_max_side=2048)
    crops, faces, preview = res.outputs
    assert crops.shape == (1, 512, 512, 3) and len(faces) == 1 and preview.shape == (1, 512, 512, 3)
    assert "1 face" in res.ui["text"][0]
    restored = 1 - crops  # any change: paste must put it where the face is
    out, mask = FaceMendPasteBack.execute(image=image, crops=restored, faces=faces, mask="box", feather=0.1, erode=0.05,
                                          color_correction="adain", opacity=0.8, parse_classes="skin").outputs
    assert torch.equal(image, before)
    assert out.shape == image.shape and mask.shape == (1, 512, 512)
    assert float(mask.max()) == pytest.approx(0.8, abs=1e-4)
    assert torch.equal(out[mask == 0], image[mask == 0]) and float((out - image).abs()[mask > 0.5].mean()) > 0.01
    with pytest.raises(ValueError, match="parser"):
        FaceMendPasteBack.execute(image=image, crops=crops, faces=faces, mask="parsing")
    # no face at all: empty crops, pass-through
    blank = torch.full((2, 64, 64, 3), 0.5)
    crops0, faces0, _ = FaceMendDetect.execute(detector=detector, image=blank).outputs
    assert crops0.shape == (1, 512, 512, 3) and is_placeholder(crops0) and len(faces0) == 0  # Detect's no-face placeholder
    out0, mask0 = FaceMendPasteBack.execute(image=blank, crops=crops0, faces=faces0).outputs
    assert torch.equal(out0, blank) and not bool(mask0.any())
