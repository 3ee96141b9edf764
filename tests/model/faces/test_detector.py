"""The SSD-MobileNetV1 port against face-api's own outputs (TF.js 4.22 CPU backend, fixtures made by
tests/fixtures/faces/make_detect_reference.py): raw decoded anchors, final detections, preprocessing, strict
weight loading, and speed.

Tolerances: decoded boxes and scores of all 5118 anchors agree to ~2e-6 (float32 sums in a different order
through 27 layers); final boxes to ~5e-4 px; resizing is bit-exact. Limits below leave ~20-50x headroom.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from artmator.model.faces.detector import NUM_ANCHORS, DetectedFace, FaceDetector, detections, non_max_suppression
from artmator.model.faces.tfjs_ops import square_net_input
from artmator.model.faces.weights import load_face_weights
from tests.model.faces.conftest import assert_load_refused, assert_strict_loading, best_single_thread_time

IMAGES = ["astronaut_gouache", "astronaut_oil", "astronaut_poster", "cameraman_sepia", "astronaut",
          "astronaut_oil_mirror", "astronaut_crop", "flat"]
OPTIONS = [(0.5, 100), (0.2, 100), (0.1, 3)]
RAW_ATOL = 1e-4
BOX_ATOL_PX = 0.05
SCORE_ATOL = 1e-4


@pytest.fixture(scope="module")
def outputs(detector, detect_images) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Decoded boxes (5118,4) and scores (5118,) of every image, from one batched forward pass."""
    with torch.no_grad():
        boxes, scores = detector(detector.preprocess([detect_images[n] for n in IMAGES]))
    assert boxes.shape == (len(IMAGES), NUM_ANCHORS, 4) and scores.shape == (len(IMAGES), NUM_ANCHORS)
    return {name: (boxes[i], scores[i]) for i, name in enumerate(IMAGES)}


@pytest.mark.parametrize("name", IMAGES)
def test_raw_outputs_match_tfjs(outputs, detect_ref, name):
    boxes, scores = outputs[name]
    np.testing.assert_allclose(boxes.numpy(), detect_ref[f"{name}/boxes"], rtol=0, atol=RAW_ATOL)
    np.testing.assert_allclose(scores.numpy(), detect_ref[f"{name}/scores"], rtol=0, atol=RAW_ATOL)


@pytest.mark.parametrize("name", IMAGES)
def test_detections_match_tfjs(outputs, detect_images, detect_ref, name):
    boxes, scores = outputs[name]
    for conf, limit in OPTIONS:
        faces = detections(boxes, scores, detect_images[name].shape[:2], conf, limit)
        key = f"{name}/det/{conf}_{limit}"
        assert len(faces) == len(detect_ref[f"{key}/scores"]), key
        if faces:
            np.testing.assert_allclose([f.box for f in faces], detect_ref[f"{key}/boxes"], rtol=0, atol=BOX_ATOL_PX)
            np.testing.assert_allclose([f.score for f in faces], detect_ref[f"{key}/scores"], rtol=0, atol=SCORE_ATOL)


def test_detect_api(detector, detect_images, detect_ref):
    """`detect` / `detect_batch` (preprocess + forward + NMS) give face-api's detections, as DetectedFace."""
    single = detector.detect(detect_images["cameraman_sepia"], 0.2)
    batched = detector.detect_batch([detect_images["astronaut_crop"], detect_images["cameraman_sepia"]], 0.2)
    assert all(isinstance(f, DetectedFace) and isinstance(f.score, float) for f in single)
    for faces, name in ((single, "cameraman_sepia"), (batched[0], "astronaut_crop"), (batched[1], "cameraman_sepia")):
        np.testing.assert_allclose([f.box for f in faces], detect_ref[f"{name}/det/0.2_100/boxes"], atol=BOX_ATOL_PX)
    assert detector.detect_batch([]) == []


def test_faces_found_where_expected(outputs, detect_images):
    # At face-api's default 0.5: one face in the photo, its crop, and three of the four paintings.
    counts = {name: len(detections(*outputs[name], detect_images[name].shape[:2])) for name in IMAGES}
    assert counts == {"astronaut_gouache": 1, "astronaut_oil": 0, "astronaut_poster": 1, "cameraman_sepia": 1,
                      "astronaut": 1, "astronaut_oil_mirror": 0, "astronaut_crop": 1, "flat": 0}


def test_no_face_on_flat_image(detector):
    assert detector.detect(np.full((64, 64, 3), 128, np.uint8)) == []  # the gradient "flat" image: above


@pytest.mark.parametrize("key", [k for k in ("up_23x31_64_centered", "up_23x31_64_corner",
                                             "down_61x47_40_centered", "down_61x47_40_corner")])
def test_preprocessing_is_bit_exact(detect_ref, key):
    image = detect_ref[f"resize/{key}/input"]
    expected = detect_ref[f"resize/{key}/values"]                # (S,S,3) NHWC from NetInput.toBatchTensor
    got = square_net_input([image], expected.shape[0], bool(detect_ref[f"resize/{key}/centered"]))[0]
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)


def test_nms_keeps_iou_of_exactly_half_and_breaks_ties_by_index():
    boxes = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 0, 1, 0.9], [2, 2, 3, 3], [2, 2, 3, 3]])
    scores = torch.tensor([0.9, 0.8, 0.85, 0.7, 0.7])
    # box 2 overlaps box 0 with IoU 0.9 -> dropped; box 1 has IoU exactly 0.5 -> kept; 3 and 4 tie, 3 wins.
    assert non_max_suppression(boxes, scores, 100, 0.5, 0.5) == [0, 1, 3]
    assert non_max_suppression(boxes, scores, 2, 0.5, 0.5) == [0, 1]
    assert non_max_suppression(boxes, scores, 100, 0.5, 0.95) == []


def test_invalid_options_rejected(detector, detect_images):
    for conf in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="min_confidence"):
            detector.detect(detect_images["flat"], conf)
    with pytest.raises(ValueError, match="max_results"):
        detector.detect(detect_images["flat"], 0.5, 0)


def test_loading_uses_every_tensor_strictly():
    weights = load_face_weights("ssd_mobilenetv1")
    assert_strict_loading(FaceDetector.from_tfjs, weights, missing="MobilenetV1/Conv2d_7_depthwise/BatchNorm/gamma",
                          extra={"Prediction/BoxPredictor_6/ClassPredictor/biases": torch.zeros(18)},
                          wrong={"Prediction/Conv2d_3_pointwise/weights": torch.zeros(1, 1, 128, 256)})
    # Graph constants the port hard-codes are checked too.
    assert_load_refused(FaceDetector.from_tfjs, weights, "ResizeImage/size",
                        put={"Preprocessor/ResizeImage/size": torch.tensor([300.0, 300.0])})


def test_detector_speed_on_512_input(detector, detect_images):
    """One 512x512 detection takes well under a second of CPU. Measured as CPU time of a single thread, so
    the check holds on a busy machine (wall time there depends on the neighbours, not on this code)."""
    image = detect_images["astronaut"]                           # 512x512: no resize, the full network
    best = best_single_thread_time(lambda: detector.detect(image), clock=time.process_time)
    assert best < 1.0, best
