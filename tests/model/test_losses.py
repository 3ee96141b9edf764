"""The 3DArtmator losses (model.losses): hand-computed values, per-sample independence, gradient paths."""
from __future__ import annotations

import pytest
import torch

from artmator.model.augment import NO_AUGMENT, AugmentConfig, augment_pair
from artmator.model.encoders import TINY_CLIP, LpipsConfig, load_clip, load_clips, load_lpips
from artmator.model.losses import clip_direction, content_loss, directional_loss, l2_loss, spatial_loss

AUG = AugmentConfig(n_crops=3, scale=(0.5, 1.0), flip_p=0.5)


def _images(b: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mean_abs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A stand-in perceptual distance with a value computable by hand: mean |x − y| per sample."""
    return (x - y).abs().flatten(1).mean(1)


@pytest.fixture(scope="module")
def tiny_clip():
    return load_clip(TINY_CLIP, seed=0)


@pytest.fixture(scope="module")
def tiny_lpips():
    return load_lpips(LpipsConfig(net="alex", random_backbone=True), seed=0)


# ------------------------------------------------------------------------------------ L_dir (stage 2)


def test_directional_loss_of_parallel_orthogonal_opposite_and_scaled_vectors():
    guide = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 2.0]])
    opt = torch.tensor([[3.0, 0.0, 0.0], [0.0, 5.0, 0.0], [-0.1, 0.0, 0.0], [0.0, 0.0, 1.0]])
    loss = directional_loss(guide, opt)
    torch.testing.assert_close(loss, torch.tensor([0.0, 1.0, 2.0, 1.0 - 2 ** -0.5]))


def test_directional_loss_is_finite_when_a_direction_is_zero():
    # First stage-2 step: G_trn == G_ori, so δ_opt is exactly 0.
    guide = torch.tensor([[0.3, -0.4]])
    opt = torch.zeros(1, 2, requires_grad=True)
    loss = directional_loss(guide, opt)
    torch.testing.assert_close(loss, torch.ones(1))
    loss.sum().backward()
    assert torch.isfinite(opt.grad).all()
    # Descending moves δ_opt along δ_guide.
    assert torch.sign(-opt.grad).tolist() == [[1.0, -1.0]]


def test_directional_loss_averages_over_an_ensemble():
    g = (torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    o = (torch.tensor([[-1.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]]))
    torch.testing.assert_close(directional_loss(g, o), torch.tensor([1.5]))
    with pytest.raises(ValueError, match="same encoder"):
        directional_loss(g, o[0])


def test_directional_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        directional_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ------------------------------------------------------------------------------------ L_cr (stage 1)


def test_content_loss_with_a_known_distance():
    pred = torch.zeros(2, 3, 4, 4)
    target = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), -1.0)])
    # sample 0: |d| = 0.5, d² = 0.25; sample 1: |d| = 1, d² = 1
    torch.testing.assert_close(content_loss(pred, target, mean_abs), torch.tensor([0.75, 2.0]))
    torch.testing.assert_close(content_loss(pred, target, mean_abs, lambda_lpips=2.0, lambda_l2=0.5),
                               torch.tensor([1.125, 2.5]))
    torch.testing.assert_close(l2_loss(pred, target), torch.tensor([0.25, 1.0]))


def test_content_loss_with_the_real_tiny_lpips(tiny_lpips):
    x, y = _images(), _images(seed=1)
    loss = content_loss(x, y, tiny_lpips)
    assert loss.shape == (2,) and (loss > 0).all()
    torch.testing.assert_close(loss, tiny_lpips(x, y) + ((x - y) ** 2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(loss, content_loss(y, x, tiny_lpips))
    torch.testing.assert_close(content_loss(x, x, tiny_lpips), torch.zeros(2))


def test_content_loss_is_per_sample_and_reaches_the_prediction(tiny_lpips):
    x, y = _images().requires_grad_(True), _images(seed=1)
    loss = content_loss(x, y, tiny_lpips)
    loss[0].backward()
    assert x.grad[0].abs().sum() > 0 and torch.equal(x.grad[1], torch.zeros_like(x.grad[1]))


def test_losses_refuse_mismatched_images():
    with pytest.raises(ValueError, match="content_loss"):
        content_loss(_images(), _images(h=32), mean_abs)
    with pytest.raises(ValueError, match="one value per sample"):
        spatial_loss(_images(), _images(seed=1), lambda x, y: (x - y).mean())


# ------------------------------------------------------------------------------------ L_spa (stage 2)


def test_spatial_loss_is_lpips_to_the_reference(tiny_lpips):
    pred, ref = _images().requires_grad_(True), _images(seed=1)
    loss = spatial_loss(pred, ref, tiny_lpips)
    torch.testing.assert_close(loss, tiny_lpips(pred, ref))
    torch.testing.assert_close(spatial_loss(pred, pred, mean_abs), torch.zeros(2))
    loss.sum().backward()
    assert pred.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ CLIP directions


def test_clip_direction_without_augmentation_is_the_embedding_difference(tiny_clip):
    a, b = _images(), _images(seed=1)
    delta = clip_direction(tiny_clip, a, b, NO_AUGMENT, _gen())
    assert delta.shape == (2, 64)
    torch.testing.assert_close(delta, tiny_clip(a) - tiny_clip(b), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(clip_direction(tiny_clip, a, a, AUG, _gen()), torch.zeros(2, 64))


def test_clip_direction_averages_per_crop_differences(tiny_clip):
    a, b = _images(), _images(seed=1)
    delta = clip_direction(tiny_clip, a, b, AUG, _gen(4))
    a_aug, b_aug = augment_pair(a, b, AUG, _gen(4))
    expected = (tiny_clip(a_aug) - tiny_clip(b_aug)).view(2, AUG.n_crops, -1).mean(1)
    torch.testing.assert_close(delta, expected)
    assert torch.equal(delta, clip_direction(tiny_clip, a, b, AUG, _gen(4)))
    assert not torch.allclose(delta, clip_direction(tiny_clip, a, b, AUG, _gen(5)))


def test_clip_direction_with_an_ensemble_gives_one_direction_per_encoder():
    ensemble = load_clips([TINY_CLIP, TINY_CLIP], seed=0)
    a, b = _images(), _images(seed=1)
    deltas = clip_direction(ensemble, a, b, AUG, _gen())
    assert isinstance(deltas, tuple) and len(deltas) == 2
    torch.testing.assert_close(deltas[0], clip_direction(ensemble.encoders[0], a, b, AUG, _gen()))
    loss = directional_loss(deltas, deltas)
    torch.testing.assert_close(loss, torch.zeros(2), atol=1e-6, rtol=0)


def test_stage2_gradients_reach_g_trn_images_only(tiny_clip, tiny_lpips):
    reference = _images(seed=2).requires_grad_(True)     # I_ref: data, must not receive gradients
    ori_at_pose, ori_at_view = _images(seed=3), _images(seed=4)
    trn_at_view = _images(seed=5).requires_grad_(True)   # G_trn(z*, θ_i)
    trn_at_pose = _images(seed=6).requires_grad_(True)   # G_trn(z*, θ)
    with torch.no_grad():
        delta_guide = clip_direction(tiny_clip, reference, ori_at_pose, AUG, _gen(0))
    assert not delta_guide.requires_grad
    delta_opt = clip_direction(tiny_clip, trn_at_view, ori_at_view, AUG, _gen(1))
    loss = directional_loss(delta_guide, delta_opt) + spatial_loss(trn_at_pose, reference.detach(), tiny_lpips)
    assert loss.shape == (2,)
    loss[0].backward()
    assert reference.grad is None
    for image in (trn_at_view, trn_at_pose):
        assert torch.isfinite(image.grad).all() and image.grad[0].abs().sum() > 0
        assert torch.equal(image.grad[1], torch.zeros_like(image.grad[1]))  # sample 1 is independent
