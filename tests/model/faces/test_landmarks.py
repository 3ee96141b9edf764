"""The 68-landmark port against face-api's own outputs (fixtures: tests/fixtures/faces/make_detect_reference.py).

Reference landmarks come from face-api's full pipeline `detectAllFaces(img).withFaceLandmarks()` on tensor
inputs and from hand-made boxes (fractional, past the borders), batched. Observed agreement: net outputs
~1e-7, landmarks ~4e-5 px; the limits leave wide headroom for other CPUs/BLAS.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from artmator.model.faces.detector import DetectedFace
from artmator.model.faces.landmarks import FaceLandmark68Net, crop_region
from artmator.model.faces.weights import load_face_weights
from tests.model.faces.conftest import assert_strict_loading

WITH_FACES = ["astronaut_gouache", "astronaut_poster", "cameraman_sepia", "astronaut", "astronaut_crop"]
NET_ATOL = 1e-5      # net output, relative units of the 112 px square
LANDMARK_ATOL_PX = 1e-2


def test_net_output_matches_tfjs(landmark_net, detect_images, detect_ref):
    crops, expected = [], []
    for name in WITH_FACES:
        faces = (detect_ref[f"{name}/faces/{key}"] for key in ("boxes", "crop_hw", "net_out"))
        for box, hw, out in zip(*faces):
            x, y, w, h = crop_region(tuple(box), detect_images[name].shape[:2])
            assert (h, w) == tuple(hw)                             # same floored crop as face-api
            crops.append(detect_images[name][y:y + h, x:x + w])
            expected.append(out)
    with torch.no_grad():
        got = landmark_net(landmark_net.preprocess(crops))         # (N,68,2), one batch of mixed sizes
    np.testing.assert_allclose(got.reshape(len(crops), 136).numpy(), np.stack(expected), rtol=0, atol=NET_ATOL)


def test_landmarks_match_face_api_pipeline(landmark_net, detect_images, detect_ref):
    """Same boxes as face-api's detections -> same 68 points in source pixels (all images in one batch)."""
    boxes = [[tuple(b) for b in detect_ref[f"{name}/faces/boxes"]] for name in WITH_FACES]
    got = landmark_net.detect_batch([detect_images[n] for n in WITH_FACES], boxes)
    for name, points in zip(WITH_FACES, got):
        assert points.shape == (1, 68, 2)
        np.testing.assert_allclose(points, detect_ref[f"{name}/faces/landmarks"], rtol=0, atol=LANDMARK_ATOL_PX)


def test_detector_then_landmarks_end_to_end(detect_images, detect_ref, landmark_net, detector):
    image = detect_images["astronaut_poster"]
    faces = detector.detect(image)
    points = landmark_net.detect(image, faces)                     # DetectedFace accepted as a box
    np.testing.assert_allclose(points, detect_ref["astronaut_poster/faces/landmarks"], rtol=0, atol=0.5)


def test_hand_made_boxes(landmark_net, detect_images, detect_ref):
    image = detect_images[str(detect_ref["landmark_boxes/0/image"])]
    boxes = detect_ref["landmark_boxes/0/boxes"]                   # (5,4): fractional, past right/bottom, top/left
    points = landmark_net.detect(image, [tuple(b) for b in boxes])
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0)
    np.testing.assert_allclose(points[inside], detect_ref["landmark_boxes/0/landmarks"][inside], rtol=0,
                               atol=LANDMARK_ATOL_PX)
    # Past the top-left border we shift by the clipped corner, where the crop starts (face-api would use the
    # raw negative corner; its detector never produces one).
    corner = np.maximum(boxes[~inside, :2], 0)[:, None]
    np.testing.assert_allclose(points[~inside], detect_ref["landmark_boxes/0/unshifted"][~inside] + corner,
                               rtol=0, atol=LANDMARK_ATOL_PX)


def test_batch_shapes_and_degenerate_boxes(landmark_net, detect_images):
    image = detect_images["astronaut"]
    box = (181.1, 72.9, 83.3, 101.7)
    assert landmark_net.detect(image, []).shape == (0, 68, 2)
    assert landmark_net.detect_batch([], []) == []
    out = landmark_net.detect_batch([image, detect_images["astronaut_poster"]], [[box, (600.0, 10.0, 50.0, 50.0)], []])
    assert [o.shape for o in out] == [(2, 68, 2), (0, 68, 2)]
    assert np.isnan(out[0][1]).all() and np.isfinite(out[0][0]).all()  # box wholly outside the image -> NaN
    np.testing.assert_allclose(out[0][0], landmark_net.detect(image, [DetectedFace(box, 0.9)])[0], atol=1e-4)
    with pytest.raises(ValueError, match="2 images but 1 box lists"):
        landmark_net.detect_batch([image, image], [[box]])


def test_loading_uses_every_tensor_strictly():
    weights = load_face_weights("face_landmark_68")
    assert_strict_loading(FaceLandmark68Net.from_tfjs, weights, missing="dense2/conv3/bias", parameters=49,
                          extra={"fc2/bias": torch.zeros(136)}, wrong={"fc/weights": weights["fc/weights"].T})
