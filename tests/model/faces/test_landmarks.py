"""The 68-landmark port against face-api's own outputs (fixtures: tests/fixtures/faces/make_detect_reference.py).

Reference landmarks come from face-api's full pipeline `detectAllFaces(img).withFaceLandmarks()` on tensor
inputs and from hand-made boxes (fractional, past the borders), batched. Observed agreement: net outputs
~1e-7, landmarks ~4e-5 px; the limits leave wide headroom for other CPUs/BLAS.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.faces.detector import DetectedFace, FaceDetector
from model.faces.landmarks import FaceLandmark68Net, crop_region
from model.faces.tfjs_ops import FaceWeightsError
from model.faces.weights import load_face_weights

REF_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "faces"
WITH_FACES = ["astronaut_gouache", "astronaut_poster", "cameraman_sepia", "astronaut", "astronaut_crop"]
NET_ATOL = 1e-5      # net output, relative units of the 112 px square
LANDMARK_ATOL_PX = 1e-2


def _image(name: str) -> np.ndarray:
    return np.asarray(Image.open(REF_DIR / "detect_inputs" / f"{name}.png").convert("RGB"))


@pytest.fixture(scope="module")
def ref():
    with np.load(REF_DIR / "detect_reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def net() -> FaceLandmark68Net:
    return FaceLandmark68Net.pretrained()


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return {name: _image(name) for name in WITH_FACES}


def test_net_output_matches_tfjs(net, images, ref):
    crops, expected = [], []
    for name in WITH_FACES:
        for box, hw, out in zip(ref[f"{name}/faces/boxes"], ref[f"{name}/faces/crop_hw"], ref[f"{name}/faces/net_out"]):
            x, y, w, h = crop_region(tuple(box), images[name].shape[:2])
            assert (h, w) == tuple(hw)                             # same floored crop as face-api
            crops.append(images[name][y:y + h, x:x + w])
            expected.append(out)
    with torch.no_grad():
        got = net(net.preprocess(crops))                           # (N,68,2), one batch of mixed sizes
    np.testing.assert_allclose(got.reshape(len(crops), 136).numpy(), np.stack(expected), rtol=0, atol=NET_ATOL)


def test_landmarks_match_face_api_pipeline(net, images, ref):
    """Same boxes as face-api's detections -> same 68 points in source pixels (all images in one batch)."""
    boxes = [[tuple(b) for b in ref[f"{name}/faces/boxes"]] for name in WITH_FACES]
    got = net.detect_batch([images[n] for n in WITH_FACES], boxes)
    for name, points in zip(WITH_FACES, got):
        assert points.shape == (1, 68, 2)
        np.testing.assert_allclose(points, ref[f"{name}/faces/landmarks"], rtol=0, atol=LANDMARK_ATOL_PX)


def test_detector_then_landmarks_end_to_end(images, ref, net):
    detector = FaceDetector.pretrained()
    image = images["astronaut_poster"]
    faces = detector.detect(image)
    points = net.detect(image, faces)                              # DetectedFace accepted as a box
    np.testing.assert_allclose(points, ref["astronaut_poster/faces/landmarks"], rtol=0, atol=0.5)


def test_hand_made_boxes(net, ref):
    image = _image(str(ref["landmark_boxes/0/image"]))
    boxes = ref["landmark_boxes/0/boxes"]                          # (5,4): fractional, past right/bottom, top/left
    points = net.detect(image, [tuple(b) for b in boxes])
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0)
    np.testing.assert_allclose(points[inside], ref["landmark_boxes/0/landmarks"][inside], rtol=0, atol=LANDMARK_ATOL_PX)
    # Past the top-left border we shift by the clipped corner, where the crop starts (face-api would use the
    # raw negative corner; its detector never produces one).
    corner = np.maximum(boxes[~inside, :2], 0)[:, None]
    np.testing.assert_allclose(points[~inside], ref["landmark_boxes/0/unshifted"][~inside] + corner,
                               rtol=0, atol=LANDMARK_ATOL_PX)


def test_batch_shapes_and_degenerate_boxes(net, images):
    image = images["astronaut"]
    box = (181.1, 72.9, 83.3, 101.7)
    assert net.detect(image, []).shape == (0, 68, 2)
    assert net.detect_batch([], []) == []
    out = net.detect_batch([image, images["astronaut_poster"]], [[box, (600.0, 10.0, 50.0, 50.0)], []])
    assert [o.shape for o in out] == [(2, 68, 2), (0, 68, 2)]
    assert np.isnan(out[0][1]).all() and np.isfinite(out[0][0]).all()  # box wholly outside the image -> NaN
    np.testing.assert_allclose(out[0][0], net.detect(image, [DetectedFace(box, 0.9)])[0], atol=1e-4)
    with pytest.raises(ValueError, match="2 images but 1 box lists"):
        net.detect_batch([image, image], [[box]])


def test_loading_uses_every_tensor_strictly():
    weights = load_face_weights("face_landmark_68")
    FaceLandmark68Net.from_tfjs(weights)

    missing = {k: v for k, v in weights.items() if k != "dense2/conv3/bias"}
    with pytest.raises(FaceWeightsError, match="missing tensor 'dense2/conv3/bias'"):
        FaceLandmark68Net.from_tfjs(missing)

    with pytest.raises(FaceWeightsError, match="unexpected tensors.*fc2/bias"):
        FaceLandmark68Net.from_tfjs({**weights, "fc2/bias": torch.zeros(136)})

    with pytest.raises(FaceWeightsError, match=r"'fc/weights' has shape \(136, 256\), expected \(256, 136\)"):
        FaceLandmark68Net.from_tfjs({**weights, "fc/weights": weights["fc/weights"].T})
