"""face-api's 128-d face descriptor in torch (model.faces.descriptor) against the TF.js implementation's outputs.

The reference (tests/fixtures/faces/describe_reference.npz) was computed by face-api 1.7.15 on TF.js 4.22's
CPU backend; make_describe_reference.py beside it rebuilds it. Node is not needed here.

Tolerance: input preparation is bit-exact (same float64 interpolation, same float32 rounding). The net then
differs only in float32 summation order (TF.js's CPU conv adds products one by one in (kh, kw, c_in) order; torch
uses blocked SIMD sums): measured max |error| 3e-7 on descriptors of norm ~1.4, and a float64 torch run is the
same 3e-7 from TF.js, i.e. it is TF.js's own rounding. 5e-6 leaves room for other BLAS/SIMD orders.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from artmator.model.faces.descriptor import (
    DESCRIPTOR_DIM,
    SAME_PERSON_DISTANCE,
    FaceDescriptorNet,
    describe,
    descriptor_distance,
    descriptor_similarity,
)
from artmator.model.faces.tfjs_ops import faces_to_batch, pad_to_square, resize_bilinear_tf
from artmator.model.faces.weights import load_face_weights
from tests.model.faces.conftest import assert_strict_loading, best_single_thread_time

ATOL = 5e-6


@pytest.fixture(scope="module")
def ours(describe_ref, descriptor_net) -> np.ndarray:
    return describe(describe_ref["crops"], descriptor_net)  # (N, 128)


def _crop(ref: dict, name: str) -> np.ndarray:
    return ref["crops"][ref["names"].index(name)]


def test_prepared_input_is_bit_exact(describe_ref):
    crop = _crop(describe_ref, "oil_tall")  # 190 x 137: odd zero-padding split, downscale to 150
    x = torch.as_tensor(crop).permute(2, 0, 1)[None].float()
    padded = pad_to_square(x)
    assert padded.shape[-2:] == (190, 190)
    assert padded[..., :26].abs().sum() == 0 and padded[..., 26 + 137:].abs().sum() == 0  # 26 before, 27 after
    mine = resize_bilinear_tf(padded, 150)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(mine, describe_ref["input150_oil_tall"])


def test_descriptors_match_tfjs(describe_ref, ours):
    assert ours.shape == (len(describe_ref["names"]), DESCRIPTOR_DIM) and ours.dtype == np.float32
    err = np.abs(ours - describe_ref["descriptor"]).max(axis=1)
    assert err.max() < ATOL, dict(zip(describe_ref["names"], err))


def test_input_forms_agree(describe_ref, ours, descriptor_net):
    centres = [_crop(describe_ref, n) for n in ("poster_center", "oil_center", "gouache_center", "cameraman_center")]
    stacked = np.stack(centres)  # (4, 154, 154, 3) uint8
    np.testing.assert_allclose(describe(stacked, descriptor_net), ours[:4], atol=1e-6)
    # The repo's image convention: (N, 3, H, W) float in [-1, 1]; differentiable with respect to the pixels.
    images = (torch.as_tensor(stacked[:2]).permute(0, 3, 1, 2).float() / 127.5 - 1).requires_grad_(True)
    desc = descriptor_net(faces_to_batch(images, 150))  # (2, 128)
    desc.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    np.testing.assert_allclose(desc.detach().numpy(), ours[:2], atol=1e-5)
    # One crop alone equals the same crop in a batch.
    np.testing.assert_allclose(describe([centres[2]], descriptor_net), ours[2:3], atol=1e-6)


def test_mirror_is_near_and_other_people_far(describe_ref, ours):
    d = dict(zip(describe_ref["names"], ours))
    mirror = descriptor_distance(d["astronaut_photo"], d["astronaut_photo_mirror"])
    painted_mirror = descriptor_distance(d["gouache_center"], d["gouache_center_mirror"])
    assert mirror < 0.3 and painted_mirror < 0.3  # TF.js: 0.235 and 0.270
    assert descriptor_similarity(d["astronaut_photo"], d["astronaut_photo_mirror"]) > 0.98  # TF.js: 0.988
    # A painting of the astronaut matches her photograph; the cameraman is a different person.
    assert descriptor_distance(d["poster_center"], d["astronaut_photo"]) < SAME_PERSON_DISTANCE  # 0.259
    for name in ("astronaut_photo", "poster_center", "gouache_center"):
        other = descriptor_distance(d[name], d["cameraman_center"])
        assert other > SAME_PERSON_DISTANCE and other > 2 * mirror, (name, other)  # 0.65..0.68


def test_distance_and_similarity():
    a = np.array([3.0, 4.0], np.float32)
    assert descriptor_distance(a, a) == 0.0 and descriptor_similarity(a, a) == pytest.approx(1.0)
    assert descriptor_distance(a, np.zeros(2)) == pytest.approx(5.0)
    assert descriptor_similarity(a, np.array([-4.0, 3.0])) == pytest.approx(0.0)
    assert descriptor_similarity(a, -a) == pytest.approx(-1.0)


def test_every_weight_is_used_and_shapes_are_checked():
    weights = load_face_weights("face_recognition")
    assert_strict_loading(lambda m: FaceDescriptorNet().load_tfjs(m), weights, parameters=117,
                          missing="conv128_2/conv2/scale/biases",
                          extra={"conv512/conv/filters": torch.zeros(3, 3, 256, 512)},
                          wrong={"conv64_down/conv1/conv/filters": torch.zeros(3, 3, 64, 64), "fc": weights["fc"].T})


def test_bad_inputs_are_refused(descriptor_net):
    with pytest.raises(ValueError, match="empty"):
        describe([np.zeros((0, 10, 3), np.uint8)], descriptor_net)
    with pytest.raises(ValueError, match="uint8"):
        describe([np.zeros((10, 10, 3), np.float32)], descriptor_net)
    with pytest.raises(ValueError, match="no face crops"):
        describe([], descriptor_net)


def test_eight_crops_are_fast(describe_ref, descriptor_net):
    crops = describe_ref["crops"][:8]
    best = best_single_thread_time(lambda: describe(crops, descriptor_net))  # one thread, best of 3
    assert best < 0.5, best
