"""Stage 1 (localization): only the latent is optimized, losses fall, batching keeps paintings independent."""
from __future__ import annotations

import pytest
import torch

from artmator.model.encoders import LpipsConfig, load_lpips
from artmator.model.localize import LocalizeConfig, PoseSearchConfig, finite_total, localize, search_pose


def _lpips():
    return load_lpips(LpipsConfig(net="alex", random_backbone=True))


def _target(backbone, seed, yaw=0.0):
    latent = backbone.sample_latent(1, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return backbone.render_latent(latent, yaw, 0.0, 32).image


def test_localization_reduces_content_loss_and_leaves_generator_frozen(tiny_backbone):
    tiny_backbone.requires_grad_(False)
    before = {k: v.clone() for k, v in tiny_backbone.state_dict().items()}
    target = _target(tiny_backbone, 7)
    result = localize(tiny_backbone, target, torch.zeros(1), torch.zeros(1), _lpips(), LocalizeConfig(steps=25),
                      torch.Generator().manual_seed(0))
    assert result.losses.shape == (25, 1)
    assert result.final_loss[0] < result.losses[0, 0]
    assert all(torch.equal(before[k], v) for k, v in tiny_backbone.state_dict().items())
    assert all(p.grad is None for p in tiny_backbone.parameters())
    assert all(not v.requires_grad for v in result.latent.values())


def test_batched_localization_equals_one_at_a_time(tiny_backbone):
    lp = _lpips()
    targets = torch.cat([_target(tiny_backbone, s) for s in (1, 2)])
    inits = [tiny_backbone.sample_latent(1, torch.Generator().manual_seed(s)) for s in (10, 11)]
    cfg = LocalizeConfig(steps=4)
    both = localize(tiny_backbone, targets, torch.zeros(2), torch.zeros(2), lp, cfg, torch.Generator(),
                    init={k: torch.cat([i[k] for i in inits]) for k in inits[0]})
    for k in range(2):
        one = localize(tiny_backbone, targets[k:k + 1], torch.zeros(1), torch.zeros(1), lp, cfg, torch.Generator(),
                       init=inits[k])
        assert torch.allclose(one.losses[:, 0], both.losses[:, k], atol=1e-5)
        for name in one.latent:
            assert torch.allclose(one.latent[name][0], both.latent[name][k], atol=1e-4)


def test_pose_search_finds_the_rendered_yaw(tiny_backbone):
    target = _target(tiny_backbone, 3, yaw=30.0)
    yaw, pitch, latent = search_pose(tiny_backbone, target, _lpips(),
                                     PoseSearchConfig(yaws_deg=(-30.0, 0.0, 30.0), pitches_deg=(0.0,), steps=0,
                                                      downsample=1),
                                     LocalizeConfig(), torch.Generator().manual_seed(3))
    # With zero steps every candidate starts from the latent that rendered the target, so the true pose wins.
    assert (yaw, pitch) == (30.0, 0.0)
    assert latent["z_id"].shape == (1, 80)


def test_non_finite_loss_drops_only_that_painting():
    failed = [None, None, None]
    loss = torch.tensor([1.0, float("nan"), 2.0], requires_grad=True)
    total = finite_total(loss, failed, step=5)
    assert failed == [None, 5, None] and total.item() == 3.0
    total.backward()
    assert loss.grad.tolist() == [1.0, 0.0, 1.0]


def test_autocast_is_cuda_only_cpu_tunes_in_float32(tiny_backbone):
    # The autocast settings of both stages promise float32 on CPU: the same steps give the same latent, bit for bit.
    lp = _lpips()
    target = _target(tiny_backbone, 3)
    runs = [localize(tiny_backbone, target, torch.zeros(1), torch.zeros(1), lp, LocalizeConfig(steps=3, autocast=a),
                     torch.Generator().manual_seed(0)) for a in (False, True)]
    assert all(torch.equal(runs[0].latent[k], runs[1].latent[k]) for k in runs[0].latent)
    assert runs[1].losses.dtype == torch.float32


def test_checkpointed_ray_chunks_give_the_same_latent(tiny_backbone):
    """`checkpoint_rays` trades compute for memory only: the same steps reach the same latent (float rounding)."""
    lp = _lpips()
    target = _target(tiny_backbone, 5)                                   # 32² = 1,024 rays -> 8 chunks of 128
    runs = [localize(tiny_backbone, target, torch.zeros(1), torch.zeros(1), lp,
                     LocalizeConfig(steps=4, checkpoint_rays=c), torch.Generator().manual_seed(0))
            for c in (None, 128)]
    for k in runs[0].latent:
        torch.testing.assert_close(runs[1].latent[k], runs[0].latent[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(runs[1].losses, runs[0].losses, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="checkpoint_rays"):
        LocalizeConfig(checkpoint_rays=0)
