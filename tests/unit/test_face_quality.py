"""Per-face degradation score, the controls derived from it, per-face paste-back opacity, and the
FaceMend Face Quality node.

Real faces: the astronaut (and the 6-face group photo where ``shared/photos`` has it) found by the
real RetinaFace weights; degradations are applied to the whole source photo with OpenCV and the
crops cut again with the same alignment, as a degraded photo reaches the score in a workflow.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import cv2
import numpy as np
import pytest
import torch

from facemend.face.models import load_retinaface
from facemend.face.paste import face_opacities
from facemend.face.pipeline import detect_and_align, paste_back
from facemend.face.quality import (
    CUE_NAMES,
    DEFAULT_SETTINGS,
    QualitySettings,
    assess_faces,
    degradation_cues,
    degradation_score,
    fidelity_from_score,
    format_values,
    opacity_from_score,
    smooth_along_tracks,
    source_scale,
    strength_from_score,
)
from facemend.face.records import FaceSet
from facemend.face.warp import extract_crops
from facemend.nodes.quality import NODES, FaceMendFaceQuality
from facemend.nodes.restore import parse_fidelity_list
from facemend.runtime import ManagedModel
from fm_testing.images import RETINAFACE_MOBILENET, WEIGHTS_DIR, astronaut_rgb

needs_weights = pytest.mark.skipif(not RETINAFACE_MOBILENET.is_file(), reason="needs ../shared/weights")
GROUP_PHOTO = WEIGHTS_DIR.parent / "photos" / "insightface_t1.jpg"


def _frames(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> ``(1, 3, H, W)`` float32 in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).float().div(255).permute(2, 0, 1).unsqueeze(0)


@pytest.fixture(scope="module")
def detector() -> ManagedModel:
    net = load_retinaface(RETINAFACE_MOBILENET, "retinaface_mobile0.25")
    return ManagedModel(net, module=net.module, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def astronaut(detector: ManagedModel) -> tuple[np.ndarray, FaceSet]:
    rgb = astronaut_rgb()
    faces = detect_and_align(detector, _frames(rgb), threshold=0.97).faces
    assert len(faces) == 1
    return rgb, faces


def recut(rgb: np.ndarray, faces: FaceSet) -> torch.Tensor:
    """The crops of ``faces`` cut again from ``rgb`` (same alignment): ``(N, 3, S, S)``."""
    return extract_crops(_frames(rgb), faces.frame_index, faces.affines, faces.crop_size, faces.border)


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return rgb if sigma == 0 else cv2.GaussianBlur(rgb, (0, 0), sigma)


def noise(rgb: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.clip(rgb + rng.normal(0, sigma, rgb.shape), 0, 255).round().astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int | None) -> np.ndarray:
    if quality is None:
        return rgb
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def down_up(rgb: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return rgb
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def mixed(rgb: np.ndarray, level: int) -> np.ndarray:
    if level == 0:
        return rgb
    return jpeg(noise(down_up(rgb, 1 + 0.75 * level), 3.0 * level), max(10, 70 - 20 * level))


FAMILIES = {
    "blur": (blur, [0.0, 1.5, 3.0, 6.0]),
    "noise": (noise, [0.0, 10.0, 20.0, 35.0]),
    "jpeg": (jpeg, [None, 30, 15, 6]),
    "downscale": (down_up, [1.0, 2.0, 3.0, 5.0]),
    "mixed": (mixed, [0, 1, 2, 3]),
}


# ------------------------------------------------------------------ the score on a real face


@needs_weights
@pytest.mark.parametrize("family", list(FAMILIES))
def test_score_rises_with_every_degradation_family_on_a_real_face(astronaut: tuple[np.ndarray, FaceSet], family: str) -> None:
    rgb, faces = astronaut
    fn, levels = FAMILIES[family]
    scores = [float(degradation_score(recut(fn(rgb, lv), faces), affines=faces.affines)[0]) for lv in levels]
    assert all(b > a for a, b in itertools.pairwise(scores)), f"{family}: {scores}"
    assert scores[-1] > scores[0] + 0.3, f"{family}: the heaviest level should score far above clean: {scores}"
    assert scores[0] < 0.2  # the undegraded astronaut is a clean face


@needs_weights
def test_each_cue_answers_its_own_degradation(astronaut: tuple[np.ndarray, FaceSet]) -> None:
    rgb, faces = astronaut
    clean = degradation_cues(recut(rgb, faces), affines=faces.affines)

    def delta(other: np.ndarray) -> dict[str, float]:
        c = degradation_cues(recut(other, faces), affines=faces.affines)
        return {n: float(c.stack()[0, i] - clean.stack()[0, i]) for i, n in enumerate(CUE_NAMES)}

    assert max(delta(blur(rgb, 3.0)).items(), key=lambda kv: kv[1])[0] == "blur"
    assert max(delta(noise(rgb, 20.0)).items(), key=lambda kv: kv[1])[0] == "noise"
    assert max(delta(jpeg(rgb, 10)).items(), key=lambda kv: kv[1])[0] == "blocking"
    # the same face in a photo a third the size: only the resolution cue knows (its pixels are
    # the same face, resampled); it comes from the alignment's scale
    h, w = rgb.shape[:2]
    small_rgb = cv2.resize(rgb, (w // 3, h // 3), interpolation=cv2.INTER_AREA)
    small = faces.rescaled(h // 3, w // 3)
    assert float(source_scale(small)[0]) == pytest.approx(float(source_scale(faces)[0]) / 3, rel=0.01)
    c_small = degradation_cues(recut(small_rgb, small), affines=small.affines)
    assert float(c_small.resolution[0]) > float(clean.resolution[0]) + 0.3
    assert float(c_small.measures.face_px[0]) == pytest.approx(float(clean.measures.face_px[0]) / 3, rel=0.01)


@needs_weights
def test_a_face_larger_than_its_crop_is_judged_at_crop_resolution(astronaut: tuple[np.ndarray, FaceSet]) -> None:
    rgb, faces = astronaut
    h, w = rgb.shape[:2]
    big_rgb = cv2.resize(rgb, (4 * w, 4 * h), interpolation=cv2.INTER_CUBIC)  # 4x the pixels, no new detail
    big = faces.rescaled(4 * h, 4 * w)
    assert float(source_scale(big)[0]) > 1  # the face now has more pixels than its crop
    c_big = degradation_cues(recut(big_rgb, big), affines=big.affines)
    c = degradation_cues(recut(rgb, faces), affines=faces.affines)
    assert float(c_big.resolution[0]) < 0.01  # plenty of pixels ...
    assert float(c_big.blur[0]) > float(c.blur[0]) + 0.2  # ... but soft for their number: it needs restoring
    assert float(c_big.blocking[0]) == 0.0 and not bool(c_big.measures.block_measured[0])


@needs_weights
def test_batched_equals_per_face_and_is_deterministic(astronaut: tuple[np.ndarray, FaceSet]) -> None:
    rgb, faces = astronaut
    h, w = rgb.shape[:2]
    small = faces.rescaled(h // 2, w // 2)  # a face of another size in the same batch
    crops = torch.cat([recut(rgb, faces), recut(blur(rgb, 2.0), faces), recut(noise(rgb, 15.0), faces),
                       recut(cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA), small)])
    affines = torch.cat([faces.affines] * 3 + [small.affines])
    before = crops.clone()
    batched = degradation_score(crops, affines=affines)
    single = torch.cat([degradation_score(crops[i:i + 1], affines=affines[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    assert torch.equal(degradation_score(crops, affines=affines), batched)  # deterministic, bit for bit
    assert torch.equal(crops, before)  # inputs untouched
    assert len(set(batched.tolist())) == 4


def test_scores_stay_in_range_for_extreme_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    crops = torch.stack([
        torch.zeros(3, 128, 128), torch.ones(3, 128, 128), torch.full((3, 128, 128), 0.5),
        torch.rand(3, 128, 128, generator=g),  # pure noise
        (torch.arange(128.0) % 2).expand(3, 128, 128),  # 1-px stripes
    ])
    for kw in ({}, {"face_scale": torch.full((5,), 0.25)}, {"face_scale": torch.full((5,), 4.0)}):
        s = degradation_score(crops, **kw)
        assert s.shape == (5,) and s.dtype == torch.float32
        assert bool(torch.isfinite(s).all()) and float(s.min()) >= 0 and float(s.max()) <= 1
    assert float(degradation_score(crops[3:4])[0]) > 0.8  # white noise is a ruined face
    assert degradation_score(torch.zeros(0, 3, 64, 64)).shape == (0,)
    with pytest.raises(ValueError, match="square RGB"):
        degradation_score(torch.zeros(1, 3, 64, 32))


# ------------------------------------------------------------------ mappings and smoothing


def test_mappings_follow_the_score() -> None:
    s = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(fidelity_from_score(s, 1.0, 0.3), torch.tensor([1.0, 0.825, 0.65, 0.3]))
    torch.testing.assert_close(fidelity_from_score(s, 0.2, 0.8), torch.tensor([0.2, 0.35, 0.5, 0.8]))  # adjustable
    st = strength_from_score(s)
    assert float(st[0]) == pytest.approx(DEFAULT_SETTINGS.clean_strength)
    assert float(st[-1]) == pytest.approx(DEFAULT_SETTINGS.ruined_strength)
    assert bool((st[1:] < st[:-1]).all())  # clean faces: more of their own features
    op = opacity_from_score(torch.tensor([0.0, 0.1, 0.2, 0.3, 0.9]), 0.1, 0.3)
    assert op.tolist()[:2] == [0.0, 0.0] and op.tolist()[3:] == [1.0, 1.0] and 0 < float(op[2]) < 1
    assert opacity_from_score(s, 0.0, 0.0).tolist() == [1.0] * 4  # leave nobody alone
    assert format_values(torch.tensor([0.123, 0.8])) == "0.12, 0.80" and format_values([]) == ""
    from facemend.nodes.inputs import parse_per_face

    assert parse_per_face(format_values(torch.tensor([0.0, 0.5, 1.0])), "x", "N") == [0.0, 0.5, 1.0]
    assert parse_per_face("  ", "x", "N") is None and parse_per_face("1.2; 2.9", "s", "N", high=3) == [1.2, 2.9]
    with pytest.raises(ValueError, match="FaceMend Paste Back: per_face_opacity entry 2 is 1.5"):
        parse_per_face("0.2, 1.5", "per_face_opacity", "FaceMend Paste Back")
    with pytest.raises(ValueError, match="entry 1 is nan"):
        parse_per_face("nan", "x", "N")


def test_track_smoothing_reduces_flicker_without_mixing_tracks() -> None:
    g = torch.Generator().manual_seed(3)
    frames = torch.arange(40).repeat_interleave(2)  # two faces in each of 40 frames
    tracks = torch.tensor([0, 1] * 40)
    values = torch.where(tracks == 0, 0.3 + 0.2 * torch.randn(80, generator=g).clamp(-1, 1), torch.tensor(0.8))
    out = smooth_along_tracks(values, frames, tracks, sigma=2.0)

    def flicker(v: torch.Tensor) -> float:
        return float((v[tracks == 0][1:] - v[tracks == 0][:-1]).abs().mean())

    assert flicker(out) < 0.4 * flicker(values)
    torch.testing.assert_close(out[tracks == 1], values[tracks == 1])  # the steady track is not pulled
    assert abs(float(out[tracks == 0].mean()) - float(values[tracks == 0].mean())) < 0.02
    assert torch.equal(smooth_along_tracks(values, frames, tracks, 0.0), values)


# ------------------------------------------------------------------ per-face opacity in paste-back


@pytest.fixture(scope="module")
def group(detector: ManagedModel) -> tuple[torch.Tensor, torch.Tensor, FaceSet]:
    """The 6-face group photo (or, without it, the astronaut and its mirror image side by side)."""
    if GROUP_PHOTO.is_file():
        rgb = cv2.cvtColor(cv2.imread(str(GROUP_PHOTO), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    else:
        a = astronaut_rgb()
        rgb = np.concatenate([a, a[:, ::-1]], axis=1)
    frames = _frames(rgb)
    result = detect_and_align(detector, frames, threshold=0.9)
    assert len(result.faces) >= 2
    return frames, result.crops, result.faces


@needs_weights
def test_per_face_opacity_zero_is_the_same_as_leaving_the_face_out(group: tuple[torch.Tensor, torch.Tensor, FaceSet]) -> None:
    frames, crops, faces = group
    restored = 1 - crops  # unmistakably different pixels
    n = len(faces)
    opacity = torch.tensor([float(i % 2) for i in range(n)])  # every other face left alone
    image, mask = paste_back(frames, restored, faces, opacity=opacity)
    kept = (opacity > 0).nonzero().flatten()
    ref_image, ref_mask = paste_back(frames, restored[kept], faces.subset(kept), opacity=1.0)
    assert torch.equal(image, ref_image) and torch.equal(mask, ref_mask)  # bit for bit
    # all faces at 0: the output is the input, bit for bit, and the mask is empty
    image0, mask0 = paste_back(frames, restored, faces, opacity=[0.0] * n)
    assert torch.equal(image0, frames) and float(mask0.abs().max()) == 0.0
    # somewhere a left-alone face would have changed pixels, they are the input's
    _, full_mask = paste_back(frames, restored, faces, opacity=1.0)
    alone = (mask == 0) & (full_mask > 0)
    assert bool(alone.any())
    assert torch.equal(image.permute(0, 2, 3, 1)[alone], frames.permute(0, 2, 3, 1)[alone])


@needs_weights
def test_per_face_opacity_one_equals_the_old_scalar_behaviour(group: tuple[torch.Tensor, torch.Tensor, FaceSet]) -> None:
    frames, crops, faces = group
    restored = 1 - crops
    n = len(faces)
    for scalar in (1.0, 0.6):
        ref = paste_back(frames, restored, faces, opacity=scalar)
        for per_face in ([scalar] * n, torch.full((n,), scalar), torch.tensor(scalar)):
            got = paste_back(frames, restored, faces, opacity=per_face)
            assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_face_opacities_validation() -> None:
    assert face_opacities(0.5, 3).tolist() == [0.5] * 3
    assert face_opacities([0, 1], 2).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="3 opacity value"):
        face_opacities([0.5, 0.5, 0.5], 2)
    with pytest.raises(ValueError, match="face 1 must be between 0 and 1, got nan"):
        face_opacities([0.5, math.nan], 2)
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        face_opacities(1.5, 4)


# ------------------------------------------------------------------ the node


def test_node_schema() -> None:
    assert NODES == [FaceMendFaceQuality]
    node = FaceMendFaceQuality
    assert (node.NODE_ID, node.DISPLAY_NAME, node.CATEGORY) == ("FaceMendFaceQuality", "FaceMend Face Quality",
                                                                "FaceMend/face")
    widgets = [i.id for i in node.inputs() if i.type not in ("IMAGE", "FACEMEND_FACES")]
    assert widgets == ["clean_fidelity", "ruined_fidelity", "video_smoothing"]
    assert [i.id for i in node.inputs() if i.optional] == ["faces"]
    assert [o.name for o in node.OUTPUTS] == ["scores", "fidelity", "strength", "opacity"]
    assert all(o.type == "STRING" for o in node.OUTPUTS)


@needs_weights
def test_node_fidelity_plugs_into_codebook_restore(astronaut: tuple[np.ndarray, FaceSet]) -> None:
    rgb, faces = astronaut
    batch = torch.cat([recut(rgb, faces), recut(blur(rgb, 1.5), faces), recut(blur(rgb, 5.0), faces)])
    three = dataclasses.replace(faces, frame_index=torch.tensor([0, 1, 2]), num_frames=3, boxes=faces.boxes.repeat(3, 1),
                                scores=faces.scores.repeat(3), landmarks=faces.landmarks.repeat(3, 1, 1),
                                affines=faces.affines.repeat(3, 1, 1), track_id=torch.zeros(3, dtype=torch.int64))
    out = FaceMendFaceQuality.execute(crops=batch.permute(0, 2, 3, 1), clean_fidelity=0.9, ruined_fidelity=0.2,
                                      video_smoothing=0.0, faces=three)
    scores_text, fidelity_text, strength_text, opacity_text = out.outputs
    fid = parse_fidelity_list(fidelity_text)  # Codebook Restore's own parser accepts it
    scores = [float(v) for v in scores_text.split(",")]
    assert len(fid) == len(scores) == 3 and scores == sorted(scores)
    assert fid == sorted(fid, reverse=True)  # the more degraded, the less fidelity
    for s, f in zip(scores, fid):
        assert f == pytest.approx(0.9 + (0.2 - 0.9) * s, abs=0.01)  # both rounded to 2 decimals
    assert len(strength_text.split(", ")) == 3 and len(opacity_text.split(", ")) == 3
    assert float(opacity_text.split(", ")[0]) == 0.0  # the clean face is left alone
    assert float(opacity_text.split(", ")[-1]) == 1.0
    assert len(out.ui["text"]) == 3 and out.ui["text"][0].startswith("face 0: score")


@needs_weights
def test_node_video_smoothing_steadies_a_flickering_face(astronaut: tuple[np.ndarray, FaceSet]) -> None:
    rgb, faces = astronaut
    clean, blurred = recut(rgb, faces), recut(blur(rgb, 2.5), faces)
    frames = 12
    batch = torch.cat([clean if t % 2 else blurred for t in range(frames)])
    video = dataclasses.replace(
        faces, frame_index=torch.arange(frames), num_frames=frames, boxes=faces.boxes.repeat(frames, 1),
        scores=faces.scores.repeat(frames), landmarks=faces.landmarks.repeat(frames, 1, 1),
        affines=faces.affines.repeat(frames, 1, 1), track_id=torch.zeros(frames, dtype=torch.int64))

    def scores(sigma: float) -> list[float]:
        out = FaceMendFaceQuality.execute(crops=batch.permute(0, 2, 3, 1), video_smoothing=sigma, faces=video)
        return [float(v) for v in out.outputs[0].split(",")]

    raw, smooth = scores(0.0), scores(2.0)
    def swing(v: list[float]) -> float:
        return float(np.abs(np.diff(v)).mean())

    assert swing(raw) > 0.1 and swing(smooth) < 0.25 * swing(raw)


def test_node_without_faces_gives_empty_strings() -> None:
    empty = torch.zeros(0, 512, 512, 3)
    for kw in ({}, {"faces": FaceSet.empty(1, (256, 256), 512)}):
        out = FaceMendFaceQuality.execute(crops=empty, clean_fidelity=1.0, ruined_fidelity=0.3, **kw)
        assert out.outputs == ("", "", "", "")
        assert parse_fidelity_list(out.outputs[1]) is None  # Codebook Restore then uses its own fidelity
    # crops without the faces input still score (taken as native resolution)
    g = torch.Generator().manual_seed(0)
    crops = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 256, 256, generator=g), 3, 1, 1).permute(0, 2, 3, 1)
    out = FaceMendFaceQuality.execute(crops=crops)
    assert len(parse_fidelity_list(out.outputs[1])) == 2
    assert "native resolution" in out.ui["text"][0]


@pytest.mark.parametrize(("name", "value"), [
    ("clean_fidelity", math.nan), ("clean_fidelity", 1.5), ("ruined_fidelity", -0.1),
    ("video_smoothing", -1.0), ("video_smoothing", math.inf),
])
def test_node_rejects_bad_numbers_with_its_name_and_the_value(name: str, value: float) -> None:
    crops = torch.full((1, 64, 64, 3), 0.5)
    with pytest.raises(ValueError, match=rf"FaceMend Face Quality: {name} must be between .* got {value}"):
        FaceMendFaceQuality.execute(crops=crops, **{name: value})


def test_node_rejects_mismatched_faces_and_nan_crops() -> None:
    crops = torch.full((2, 64, 64, 3), 0.5)
    with pytest.raises(ValueError, match="2 crop\\(s\\) for 0 face\\(s\\)"):
        FaceMendFaceQuality.execute(crops=crops, faces=FaceSet.empty(1, (64, 64), 64))
    with pytest.raises(ValueError, match="must come from 'FaceMend Detect'"):
        FaceMendFaceQuality.execute(crops=crops, faces="faces")
    bad = crops.clone()
    bad[1, 3, 3, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        FaceMendFaceQuality.execute(crops=bad)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="w_blur"):
        QualitySettings(w_blur=1.5)
    with pytest.raises(ValueError, match="noise_clean"):
        QualitySettings(noise_clean=math.nan)
    with pytest.raises(ValueError, match="full_opacity_at"):
        QualitySettings(leave_alone_below=0.5, full_opacity_at=0.2)


def test_assess_faces_chunks_like_one_batch() -> None:
    g = torch.Generator().manual_seed(5)
    crops = torch.nn.functional.avg_pool2d(torch.rand(5, 3, 128, 128, generator=g), 3, 1, 1)
    whole = assess_faces(crops, None, DEFAULT_SETTINGS, chunk=64)
    chunked = assess_faces(crops, None, DEFAULT_SETTINGS, chunk=2)
    torch.testing.assert_close(whole.score, chunked.score, atol=1e-5, rtol=0)
    assert len(whole) == 5 and whole.cues.shape == (5, 4)
