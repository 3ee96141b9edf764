"""Paired differentiable crops for the CLIP directions (model.augment)."""
from __future__ import annotations

import pytest
import torch

from artmator.model.augment import NO_AUGMENT, AugmentConfig, augment_pair, sample_crop_affines

CFG = AugmentConfig(n_crops=3, scale=(0.3, 0.9), ratio=(0.7, 1.4), flip_p=0.5)


def _images(b: int = 2, h: int = 24, w: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_keep_input_size_or_use_output_size():
    a, b = _images(), _images(seed=1)
    a_aug, b_aug = augment_pair(a, b, CFG, _gen(0))
    assert a_aug.shape == b_aug.shape == (6, 3, 24, 20)
    a_aug, _ = augment_pair(a, b, AugmentConfig(n_crops=2, output_size=16), _gen(0))
    assert a_aug.shape == (4, 3, 16, 16)


def test_deterministic_given_a_seeded_generator():
    a, b = _images(), _images(seed=1)
    first = augment_pair(a, b, CFG, _gen(7))
    again = augment_pair(a, b, CFG, _gen(7))
    other = augment_pair(a, b, CFG, _gen(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.allclose(first[0], other[0])


def test_both_images_of_a_pair_get_the_same_crops():
    a = _images()
    a_aug, b_aug = augment_pair(a, a.clone(), CFG, _gen(3))
    assert torch.equal(a_aug, b_aug)
    # Swapping the pair swaps the outputs: the parameters do not depend on which image comes first.
    b = _images(seed=5)
    ab = augment_pair(a, b, CFG, _gen(3))
    ba = augment_pair(b, a, CFG, _gen(3))
    assert torch.equal(ab[0], ba[1]) and torch.equal(ab[1], ba[0])


def test_crops_are_independent_across_batch_elements_and_crops():
    one = _images(b=1)
    a = one.expand(2, -1, -1, -1).contiguous()
    a_aug, _ = augment_pair(a, a, CFG, _gen(0))
    rows = a_aug.view(2 * CFG.n_crops, -1)
    for i in range(rows.shape[0]):
        for j in range(i + 1, rows.shape[0]):
            assert not torch.allclose(rows[i], rows[j])


def test_output_is_sample_major():
    # Constant images survive any crop unchanged, so each output row shows which sample it came from.
    a = torch.stack([torch.full((3, 16, 16), -0.5), torch.full((3, 16, 16), 0.25)])
    a_aug, _ = augment_pair(a, a, CFG, _gen(0))
    means = a_aug.flatten(1).mean(1)
    torch.testing.assert_close(means, torch.tensor([-0.5] * 3 + [0.25] * 3))


def test_identity_config_returns_the_input():
    a, b = _images(), _images(seed=1)
    a_aug, b_aug = augment_pair(a, b, NO_AUGMENT, _gen(0))
    torch.testing.assert_close(a_aug, a, atol=1e-5, rtol=0)
    torch.testing.assert_close(b_aug, b, atol=1e-5, rtol=0)


def test_flip_probability_one_mirrors_the_full_image():
    a = _images()
    cfg = AugmentConfig(n_crops=1, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    a_aug, _ = augment_pair(a, a, cfg, _gen(0))
    torch.testing.assert_close(a_aug, torch.flip(a, dims=[-1]), atol=1e-5, rtol=0)


def test_crop_covers_the_configured_fraction():
    # An image whose value is its x coordinate in [-1, 1]: a crop of width fraction w spans about 2w.
    w = 64
    ramp = torch.linspace(-1 + 1 / w, 1 - 1 / w, w).view(1, 1, 1, w).expand(1, 3, w, w).contiguous()
    cfg = AugmentConfig(n_crops=8, scale=(0.25, 0.25), ratio=(1.0, 1.0), flip_p=0.0)
    out, _ = augment_pair(ramp, ramp, cfg, _gen(1))
    span = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    torch.testing.assert_close(span, torch.full_like(span, 1.0 - 1.0 / w), atol=0.02, rtol=0)
    assert (out[:, 0, 0, 0] >= -1).all() and (out[:, 0, 0, -1] <= 1).all()


def test_affines_follow_the_config():
    theta = sample_crop_affines(500, AugmentConfig(scale=(0.2, 0.5), ratio=(0.5, 2.0), flip_p=0.3), _gen(0))
    sx, sy, cx, cy = theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    area = sx.abs() * sy
    assert (area >= 0.2 - 1e-5).all() and (area <= 0.5 + 1e-5).all()
    assert (cx.abs() <= 1 - sx.abs() + 1e-6).all() and (cy.abs() <= 1 - sy + 1e-6).all()
    assert 0.2 < (sx < 0).float().mean() < 0.4


def test_gradients_reach_both_images():
    a, b = _images().requires_grad_(True), _images(seed=1).requires_grad_(True)
    a_aug, b_aug = augment_pair(a, b, CFG, _gen(0))
    (a_aug.sum() + 2 * b_aug.sum()).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_global_rng_when_no_generator():
    a = _images()
    torch.manual_seed(11)
    first, _ = augment_pair(a, a, CFG)
    torch.manual_seed(11)
    again, _ = augment_pair(a, a, CFG)
    assert torch.equal(first, again)


def test_mismatched_pair_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        augment_pair(_images(), _images(h=16), CFG, _gen(0))


@pytest.mark.parametrize("kwargs", [
    {"n_crops": 0}, {"scale": (0.0, 1.0)}, {"scale": (0.8, 0.5)}, {"scale": (0.5, 1.2)},
    {"ratio": (2.0, 1.0)}, {"flip_p": 1.5}, {"output_size": 0},
])
def test_invalid_configs_are_refused(kwargs):
    with pytest.raises(ValueError, match="AugmentConfig"):
        AugmentConfig(**kwargs)
