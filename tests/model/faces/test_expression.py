"""face-api's 7-class expression classifier in torch (model.faces.expression) against the TF.js outputs.

The reference (tests/fixtures/faces/describe_reference.npz) was computed by face-api 1.7.15 on TF.js 4.22's
CPU backend; make_describe_reference.py beside it rebuilds it. Node is not needed here.

Tolerance: input preparation is bit-exact; the net differs from TF.js only in float32 summation order. Logits
reach |24|, measured max |error| 1e-5 (a float64 torch run is 7e-6 from TF.js: TF.js's own rounding), hence 1e-4;
probabilities measured 3e-7, checked to 1e-5.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from artmator.model.faces.expression import (
    EXPRESSIONS,
    FaceExpressionNet,
    classify,
    expression_probabilities,
)
from artmator.model.faces.tfjs_ops import FaceWeightsError, TfjsWeights, faces_to_batch, pad_to_square, resize_bilinear_tf
from artmator.model.faces.weights import load_face_weights
from artmator.model.weights import WeightsError
from tests.model.faces.conftest import assert_load_refused, assert_strict_loading, best_single_thread_time


@pytest.fixture(scope="module")
def probs(describe_ref, expression_net) -> np.ndarray:
    return expression_probabilities(describe_ref["crops"], expression_net)  # (N, 7)


def test_labels_are_face_apis():
    assert EXPRESSIONS == ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


def test_fixture_labels(describe_ref):
    assert tuple(describe_ref["labels"]) == EXPRESSIONS


def test_prepared_input_is_bit_exact(describe_ref):
    crop = describe_ref["crops"][describe_ref["names"].index("oil_tall")]  # 190 x 137 -> padded 190 x 190 -> 112
    x = pad_to_square(torch.as_tensor(crop).permute(2, 0, 1)[None].float())
    mine = resize_bilinear_tf(x, 112)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(mine, describe_ref["input112_oil_tall"])


def test_logits_and_probabilities_match_tfjs(describe_ref, expression_net, probs):
    with torch.no_grad():
        logits = expression_net(faces_to_batch(describe_ref["crops"], 112)).numpy()  # (N, 7)
    assert np.abs(logits - describe_ref["expression_logits"]).max() < 1e-4
    err = np.abs(probs - describe_ref["expression_probs"]).max(axis=1)
    assert err.max() < 1e-5, dict(zip(describe_ref["names"], err))
    assert (probs.argmax(1) == describe_ref["expression_probs"].argmax(1)).all()


def test_classify_gives_distributions(describe_ref, expression_net, probs):
    out = classify(describe_ref["crops"], expression_net)
    assert len(out) == len(describe_ref["crops"])
    for row, p in zip(out, probs):
        assert tuple(row) == EXPRESSIONS
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-6)
        assert min(row.values()) >= 0.0
        np.testing.assert_allclose(list(row.values()), p, atol=1e-7)


def test_known_answers(describe_ref, probs):
    by_name = dict(zip(describe_ref["names"], probs))
    # The smiling astronaut is "happy" in the photograph, its mirror and every painted style (TF.js: > 0.999).
    for name in ("astronaut_photo", "astronaut_photo_mirror", "poster_center", "oil_center", "gouache_center"):
        assert EXPRESSIONS[by_name[name].argmax()] == "happy" and by_name[name].max() > 0.99, name
    # A flat grey square carries no expression cue: face-api calls it "neutral" (TF.js: 0.77).
    assert EXPRESSIONS[by_name["flat_150"].argmax()] == "neutral"


def test_batch_forms_agree(describe_ref, expression_net, probs):
    centres = np.stack(describe_ref["crops"][:4])  # (4, 154, 154, 3) uint8
    np.testing.assert_allclose(expression_probabilities(centres, expression_net), probs[:4], atol=1e-6)
    images = torch.as_tensor(centres).permute(0, 3, 1, 2).float() / 127.5 - 1  # (4, 3, H, W) in [-1, 1]
    np.testing.assert_allclose(expression_probabilities(images, expression_net), probs[:4], atol=1e-5)
    one = expression_probabilities([describe_ref["crops"][3]], expression_net)
    np.testing.assert_allclose(one, probs[3:4], atol=1e-6)


def test_every_weight_is_used_and_shapes_are_checked():
    weights = load_face_weights("face_expression")
    load = FaceExpressionNet.from_tfjs
    assert_strict_loading(load, weights, missing="dense2/conv3/depthwise_filter", parameters=49,
                          extra={"fc2/weights": torch.zeros(7, 7)}, wrong={"fc/weights": torch.zeros(256, 8)})
    # A landmark-net file has the same dense blocks but a 136-wide `fc`: refused, not half-loaded.
    assert_load_refused(load, load_face_weights("face_landmark_68"), r"fc/weights.*\(256, 136\)")
    assert issubclass(FaceWeightsError, WeightsError)


def test_a_parameter_the_loader_skips_is_refused():
    """`load_tfjs` also catches a net whose `load_weights` forgets a parameter the file does not have either."""
    class Forgetful(FaceExpressionNet):
        def load_weights(self, w: TfjsWeights) -> None:
            self.extractor.load(w)
            w.linear(self.fc, "fc/weights")                          # no bias taken

    weights = {k: v for k, v in load_face_weights("face_expression").items() if k != "fc/bias"}
    with pytest.raises(FaceWeightsError, match=r"\['fc\.bias'\] not filled"):
        Forgetful().load_tfjs(weights)


def test_eight_crops_are_fast(describe_ref, expression_net):
    crops = describe_ref["crops"][:8]
    best = best_single_thread_time(lambda: expression_probabilities(crops, expression_net))  # one thread, best of 3
    assert best < 0.5, best
