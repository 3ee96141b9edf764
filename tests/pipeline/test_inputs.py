"""The shared row -> tuning-input step (`pipeline.inputs`): which face square and which pose each row gets."""
from __future__ import annotations

from dataclasses import replace

import pytest

from artmator.model.faces.analyzer import FaceError
from artmator.model.images import ImageConfig
from artmator.pipeline.inputs import LazyFaceAnalyzer, painting_input
from artmator.pipeline.manifest import Crop, FaceAlign, PaintingTask
from tests.pipeline.faces_fixtures import jpeg_bytes, no_face_painting, whole_painting


class CountingAnalyzer(LazyFaceAnalyzer):
    """The real analyzer, counting how often a row needed it."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return super().__call__()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "whole.jpg").write_bytes(jpeg_bytes(whole_painting()))
    (d / "landscape.jpg").write_bytes(jpeg_bytes(no_face_painting()))
    return d


@pytest.fixture(scope="module")
def faces():
    return CountingAnalyzer()


def _task(path, **kw) -> PaintingTask:
    return PaintingTask(row=0, painting_id="p", image_uri=str(path), **kw)


def test_a_whole_painting_is_detected_aligned_and_posed_from_landmarks(images, faces):
    tune_input, face = painting_input(_task(images / "whole.jpg"), 64, ImageConfig(), faces)
    assert tune_input.image.shape == (1, 3, 64, 64)
    assert face.alignment_source == "detected" and face.pose_source == "landmarks" and face.faces_found == 1
    assert abs(face.alignment["cx"] - 555) < 25 and tune_input.yaw_deg is not None and abs(tune_input.yaw_deg) < 15


def test_given_pose_wins_and_a_given_square_needs_no_analysis(images, faces):
    before = faces.calls
    align = FaceAlign(cx=555.0, cy=375.0, size=160.0, angle_deg=3.0)
    tune_input, face = painting_input(_task(images / "whole.jpg", face_align=align, yaw_deg=10.0, pitch_deg=-2.0),
                                      64, ImageConfig(), faces)
    assert faces.calls == before                                      # no network ran
    assert (tune_input.yaw_deg, tune_input.pitch_deg, face.pose_source) == (10.0, -2.0, "given")
    assert face.alignment_source == "face_align" and face.alignment["angle_deg"] == 3.0
    _, face = painting_input(_task(images / "whole.jpg", face_align=align, pose_source="search"), 64,
                             ImageConfig(), faces)
    assert face.pose_source == "search" and faces.calls == before    # prepare decided: search, nothing else


def test_a_crop_without_pose_gets_landmarks_pose_inside_the_box(images, faces):
    tune_input, face = painting_input(_task(images / "whole.jpg", crop=Crop(400, 220, 320, 320)), 64,
                                      ImageConfig(), faces)
    assert face.alignment_source == "crop" and face.pose_source == "landmarks" and tune_input.yaw_deg is not None


def test_a_whole_painting_without_a_face_is_no_face_not_a_blob(images, faces):
    with pytest.raises(FaceError) as info:
        painting_input(_task(images / "landscape.jpg"), 64, ImageConfig(), faces)
    assert info.value.kind == "no_face" and "landscape.jpg" in str(info.value)
    # Catalogs of ready-made face crops switch detection off: the whole image is the face.
    tune_input, face = painting_input(_task(images / "landscape.jpg", yaw_deg=0.0, pitch_deg=0.0), 64,
                                      replace(ImageConfig(), find_faces=False), faces)
    assert face.alignment_source == "whole_image" and tune_input.image.shape == (1, 3, 64, 64)


def test_face_errors_are_classified_as_face_and_never_retried():
    from artmator.pipeline.errors import classify, is_transient

    exc = FaceError("face_too_small", "s3://b/p.jpg", "the face's aligned crop is 40 px wide")
    assert classify(exc) == ("face", "face_too_small: s3://b/p.jpg: the face's aligned crop is 40 px wide")
    assert not is_transient(exc)
    import pickle
    assert pickle.loads(pickle.dumps(exc)).kind == "face_too_small"
