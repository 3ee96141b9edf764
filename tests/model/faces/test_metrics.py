"""Face metrics of renders (model.faces.metrics) on constructed cases with known answers.

Images: `skimage.data.astronaut()` (NASA photograph, public domain) cut to the backbone's face framing (an aligned
crop, as a render is framed), its mirror image, the cameraman of `skimage.data.camera()` (CC0; a different
person, seen near profile), `skimage.data.chelsea()` (a cat: no human face), flat grey frames, the demo
paintings in manifests/demo (see its README), and the procedural head (`model.anifacegan.demo_prior.reference_render`) as
a turntable with known yaws. Values observed when these tests were written are in comments.

Everything runs on one torch thread, as the other face-net tests: a multi-threaded torch sharing a small machine
with another busy process slows down many-fold in OpenMP barriers.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from artmator.model.faces.metrics import (
    FACE_FLAGS,
    FaceMetrics,
    FaceMetricThresholds,
    FaceScorer,
    cosine_threshold_for_distance,
    face_flags,
)

DEMO = Path(__file__).resolve().parents[3] / "manifests" / "demo"
SIDE = 128  # render size under test


def _square(image: Image.Image, cx: float, cy: float, side: float) -> Image.Image:
    half = side / 2
    return image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half))).resize(
        (SIDE, SIDE), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scorer(img) -> FaceScorer:
    s = FaceScorer()
    s.score([img["face"]], [0.0], img["face"], None, {})  # warm-up (oneDNN primitive creation)
    return s


@pytest.fixture(scope="module")
def img() -> dict[str, Image.Image]:
    astronaut = Image.fromarray(skimage.data.astronaut())
    camera = Image.fromarray(skimage.data.camera()).convert("RGB")
    poster = Image.open(DEMO / "astronaut_poster.png").convert("RGB")
    # Squares from FaceAnalyzer's alignment of each face (centre, side), rounded: the framing renders have.
    face = _square(astronaut, 223, 105, 157)
    return {
        "face": face,
        "mirror": face.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "cameraman": _square(camera, 232, 150, 220),
        "cat": Image.fromarray(skimage.data.chelsea()[:, 75:375]).resize((SIDE, SIDE)),
        "blank": Image.new("RGB", (SIDE, SIDE), (128, 128, 128)),
        "poster_face": _square(poster, 128, 116, 192),
        "sepia_cameraman": Image.open(DEMO / "cameraman_sepia.png").convert("RGB"),
    }


@pytest.fixture(scope="module")
def same_face_timed(scorer, img) -> tuple[FaceMetrics, float]:
    """A 24-frame turntable of one frontal face commanded at yaw 0, the reference, a `happiness` still and the
    same sitter painted: 28 images of 128 px. Returns the metrics and the CPU seconds they took."""
    start = time.process_time()
    m = scorer.score([img["face"]] * 24, [0.0] * 24, img["face"], img["poster_face"], {"happiness": img["face"]})
    return m, time.process_time() - start


@pytest.fixture(scope="module")
def same_face(same_face_timed) -> FaceMetrics:
    return same_face_timed[0]


def test_identical_frames_are_one_detected_identity(same_face):
    assert same_face.detected_fraction == 1.0
    # Not exactly 1: the detector's box (hence landmarks and crop) shifts a little with the tile position.
    assert same_face.identity_consistency == pytest.approx(1.0, abs=0.005)   # observed 0.999


def test_a_turntable_is_scored_in_about_a_second_of_cpu(same_face_timed):
    # Observed 1.6-1.8 s of CPU on one thread (4 detector canvases); CPU time, so a busy machine does not fail it.
    assert same_face_timed[1] < 4.0, same_face_timed[1]


def test_frontal_face_commanded_frontal_has_small_pose_error(same_face):
    assert same_face.pose_error_deg < 4.0                      # observed 0.8
    assert "pose_mismatch" not in face_flags(same_face)


def test_frontal_face_commanded_at_40_degrees_is_a_pose_mismatch(scorer, img):
    m = scorer.score([img["face"]] * 3, [40.0] * 3, img["face"], None, {})
    assert 38.0 < m.pose_error_deg < 44.0                      # observed 41.4: the estimate is ~-1.4
    assert face_flags(m) == ["pose_mismatch"]


def test_a_head_that_turns_with_the_camera_matches_and_a_frozen_one_does_not(scorer):
    from artmator.model.anifacegan.demo_prior import reference_render

    yaws = [-20.0, -10.0, 0.0, 10.0, 20.0]
    frames = [reference_render(y, 64)[0] * 2 - 1 for y in yaws]       # (3, 64, 64) in [-1, 1]
    turning = scorer.score(frames, yaws, frames[2], None, {})
    frozen = scorer.score([frames[2]] * len(yaws), yaws, frames[2], None, {})
    assert turning.detected_fraction == 1.0 and turning.identity_consistency > 0.98   # observed 0.995
    assert turning.pose_error_deg < 6.0                                # observed 4.3
    assert frozen.pose_error_deg > 10.0                                # observed 12.1 (mean |yaw| is 12)
    assert face_flags(turning) == [] and face_flags(frozen) == ["pose_mismatch"]


def test_blank_frames_have_no_face(scorer, img):
    m = scorer.score([img["blank"]] * 4, [-10.0, 0.0, 10.0, 20.0], img["face"], img["poster_face"], {})
    assert m.detected_fraction == 0.0
    assert m.identity_consistency is None and m.pose_error_deg is None
    assert m.likeness is not None                               # reference and painting still have faces
    assert face_flags(m) == ["no_face_in_renders"]


def test_blank_reference_leaves_identity_likeness_and_neutral_expression_empty(scorer, img):
    m = scorer.score([img["face"], img["cat"]], [0.0, 0.0], img["blank"], img["poster_face"],
                     {"happiness": img["blank"]})
    assert m.detected_fraction == 0.5                           # the cat is no face to the detector
    assert m.identity_consistency is None and m.likeness is None
    assert m.expressions == {"neutral": {}, "happiness": {}}
    assert face_flags(m) == ["no_face_in_renders", "expression_not_read"]


def test_mirror_keeps_identity_and_a_different_person_drifts(scorer, img):
    mirror = scorer.score([img["face"], img["mirror"]], [0.0, 0.0], img["face"], None, {})
    other = scorer.score([img["cameraman"]] * 2, [0.0, 0.0], img["face"], None, {})
    assert mirror.identity_consistency > 0.99                   # observed 0.995 (mirror alone: 0.991)
    assert other.identity_consistency < 0.85                    # observed 0.81
    assert other.identity_consistency < mirror.identity_consistency - 0.1
    assert "identity_drift" not in face_flags(mirror)
    assert "identity_drift" in face_flags(other)


def test_likeness_of_the_same_sitter_beats_a_different_one(scorer, img, same_face):
    other = scorer.score([img["face"]], [0.0], img["face"], img["sepia_cameraman"], {})
    assert same_face.likeness > 0.95                            # observed 0.985 (poster style vs photo)
    assert other.likeness < same_face.likeness - 0.1            # observed 0.84-0.85
    assert other.likeness < FaceMetricThresholds().min_identity_consistency


def test_smile_still_of_a_neutral_reference_is_read(scorer, img):
    m = scorer.score([img["face"]], [0.0], img["cameraman"], None, {"happiness": img["face"]})
    assert set(m.expressions) == {"neutral", "happiness"}
    assert m.expressions["neutral"]["happy"] < 0.1              # the cameraman: neutral ~1
    assert m.expressions["happiness"]["happy"] > 0.9            # the astronaut smiles
    assert sum(m.expressions["happiness"].values()) == pytest.approx(1.0, abs=1e-5)
    assert "expression_not_read" not in face_flags(m)


def test_smile_still_no_happier_than_the_reference_is_not_read(scorer, img, same_face):
    # The reference already smiles as much as the "happiness" still (the same image): the edit shows nothing.
    assert same_face.expressions["happiness"] == pytest.approx(same_face.expressions["neutral"], abs=1e-3)
    assert same_face.expressions["neutral"]["happy"] > 0.9
    assert face_flags(same_face) == ["expression_not_read"]
    # A "smile" still that is the neutral cameraman while the reference smiles: P(happy) falls.
    m = scorer.score([img["face"]], [0.0], img["face"], None, {"happiness": img["cameraman"]})
    assert m.expressions["happiness"]["happy"] < m.expressions["neutral"]["happy"]
    assert face_flags(m) == ["expression_not_read"]


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1.0  # (3, H, W) in [-1, 1]


def test_tensor_and_pil_inputs_agree(scorer, img):
    frames, yaws = [img["face"], img["mirror"], img["cameraman"]], [-5.0, 5.0, 0.0]
    stills = {"happiness": img["face"]}
    from_pil = scorer.score(frames, yaws, img["face"], img["poster_face"], stills)
    from_tensor = scorer.score([_tensor(f) for f in frames], yaws, _tensor(img["face"])[None],
                               _tensor(img["poster_face"]), {k: _tensor(v) for k, v in stills.items()})
    assert from_tensor.as_dict() == from_pil.as_dict()


def test_as_dict_is_json_with_rounded_floats_and_nones():
    m = FaceMetrics(detected_fraction=2 / 3, identity_consistency=None, likeness=0.123456789,
                    pose_error_deg=float(np.float32(3.3333333)), expressions={"neutral": {}, "happiness": {
                        "happy": float(np.float32(0.98765432))}})
    d = json.loads(json.dumps(m.as_dict(), allow_nan=False))
    assert d == {"detected_fraction": 0.6667, "identity_consistency": None, "likeness": 0.1235,
                 "pose_error_deg": 3.3333, "expressions": {"neutral": {}, "happiness": {"happy": 0.9877}}}


def test_as_dict_of_scored_metrics_is_json(same_face):
    text = json.dumps(same_face.as_dict(), allow_nan=False)
    assert json.loads(text)["detected_fraction"] == 1.0


def test_flags_follow_thresholds_and_ignore_missing_metrics():
    t = FaceMetricThresholds()
    ok = FaceMetrics(1.0, 0.95, 0.9, 2.0, {"neutral": {"happy": 0.1}, "happiness": {"happy": 0.8}})
    assert face_flags(ok, t) == []
    bad = FaceMetrics(0.5, 0.8, None, 12.0, {"neutral": {"happy": 0.5}, "happiness": {"happy": 0.52}})
    assert face_flags(bad, t) == list(FACE_FLAGS)               # +0.02 is under the 0.05 smile gain
    empty = FaceMetrics(1.0, None, None, None, {"neutral": {}})
    assert face_flags(empty, t) == []                           # nothing measured, no happiness still
    no_reference_face = FaceMetrics(1.0, None, None, None, {"neutral": {}, "happiness": {"happy": 0.9}})
    assert face_flags(no_reference_face, t) == []               # nothing to compare the smile with
    assert face_flags(ok, FaceMetricThresholds(min_smile_gain=0.8)) == ["expression_not_read"]


def test_identity_threshold_matches_face_api_distance():
    # face-api's same-person distance 0.6 on descriptors of norm ~1.3-1.5 is cosine ~0.89-0.92.
    assert cosine_threshold_for_distance(0.6, 1.3) < FaceMetricThresholds().min_identity_consistency
    assert cosine_threshold_for_distance(0.6, 1.5) > FaceMetricThresholds().min_identity_consistency


def test_turntable_and_yaws_must_match(scorer, img):
    with pytest.raises(ValueError, match="one yaw per frame"):
        scorer.score([img["face"]] * 2, [0.0], img["face"], None, {})
    with pytest.raises(ValueError, match="non-empty"):
        scorer.score([], [], img["face"], None, {})


def test_descriptor_cosine_stays_in_its_range():
    import numpy as np

    from artmator.model.faces.metrics import _cosine

    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.normal(size=128).astype(np.float32)
        d /= np.linalg.norm(d)                      # float32 unit vectors: d·d can be 1 + 3e-8
        assert _cosine(d, d) <= 1.0 and abs(_cosine(d, d) - 1.0) < 1e-12
        assert _cosine(d, -d) >= -1.0
