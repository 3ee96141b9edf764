"""Stage 2 (stylization): gradients reach only the adapters (G_ori and z* stay frozen); ablations; PTI baseline."""
from __future__ import annotations

import pytest
import torch

from artmator.model.augment import AugmentConfig
from artmator.model.encoders import TINY_CLIP, LpipsConfig, load_clips, load_lpips
from artmator.model.lora import DeltaConfig, attach_adapters, trainable_parameters
from artmator.model.stylize import StylizeConfig, stylize


@pytest.fixture(scope="module")
def nets():
    return load_clips([TINY_CLIP]), load_lpips(LpipsConfig(net="alex", random_backbone=True))


def _setup(backbone, k=2):
    backbone.requires_grad_(False)
    latent = backbone.sample_latent(k, torch.Generator().manual_seed(0))
    ref = torch.rand(k, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    module = attach_adapters(backbone.tunable(), DeltaConfig(rank=2), k, list(range(k)))
    return latent, ref, module, backbone.with_tunable(module)


@pytest.mark.parametrize("objective,use_dir,use_spa,terms", [
    ("artmator", True, True, {"dir", "spa", "total"}),
    ("artmator", False, True, {"spa", "total"}),
    ("artmator", True, False, {"dir", "total"}),
    ("pti", True, True, {"pti", "total"}),
])
def test_stage2_trains_adapters_only(tiny_backbone, nets, objective, use_dir, use_spa, terms):
    clip, lp = nets
    latent, ref, module, g_trn = _setup(tiny_backbone)
    base = {k: v.clone() for k, v in tiny_backbone.generator.state_dict().items()}
    latent_before = {k: v.clone() for k, v in latent.items()}
    params = list(trainable_parameters(module))
    before = [p.detach().clone() for p in params]
    cfg = StylizeConfig(steps=3, objective=objective, use_directional=use_dir, use_spatial=use_spa,
                        augment=AugmentConfig(n_crops=2))
    result = stylize(tiny_backbone, g_trn, params, latent, ref, torch.zeros(2), torch.zeros(2), clip, lp, cfg,
                     lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert set(result.losses) == terms and result.losses["total"].shape == (3, 2)
    assert any(not torch.equal(b, p) for b, p in zip(before, params)), "adapters did not move"
    assert all(torch.equal(base[k], v) for k, v in tiny_backbone.generator.state_dict().items()), "G_ori changed"
    assert all(torch.equal(latent_before[k], v) for k, v in latent.items()), "z* changed"
    assert all(p.grad is None for p in tiny_backbone.parameters())


def test_spatial_loss_falls_at_the_reference_view(tiny_backbone, nets):
    clip, lp = nets
    latent, ref, module, g_trn = _setup(tiny_backbone, k=1)
    cfg = StylizeConfig(steps=12, use_directional=False)
    result = stylize(tiny_backbone, g_trn, list(trainable_parameters(module)), latent, ref, torch.zeros(1),
                     torch.zeros(1), clip, lp, cfg, lr=2e-2, generator=torch.Generator().manual_seed(0))
    assert result.losses["spa"][-1, 0] < result.losses["spa"][0, 0]


def test_config_validation():
    with pytest.raises(ValueError, match="at least one"):
        StylizeConfig(use_directional=False, use_spatial=False)
    with pytest.raises(ValueError, match="steps"):
        StylizeConfig(steps=-1)


@pytest.mark.parametrize("objective", ["artmator", "pti"])
def test_checkpointed_ray_chunks_give_the_same_adapters(tiny_backbone, nets, objective):
    """`checkpoint_rays` bounds a step's saved activations and changes nothing else (float rounding)."""
    clip, lp = nets
    finals = []
    for chunk in (None, 100):                                             # 32² = 1,024 rays -> 11 chunks
        latent, ref, module, g_trn = _setup(tiny_backbone)
        params = list(trainable_parameters(module))
        cfg = StylizeConfig(steps=3, objective=objective, augment=AugmentConfig(n_crops=2), checkpoint_rays=chunk)
        result = stylize(tiny_backbone, g_trn, params, latent, ref, torch.zeros(2), torch.zeros(2), clip, lp, cfg,
                         lr=1e-2, generator=torch.Generator().manual_seed(0))
        finals.append(([p.detach().clone() for p in params], result.losses["total"]))
    for a, b in zip(finals[0][0], finals[1][0]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(finals[1][1], finals[0][1], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="checkpoint_rays"):
        StylizeConfig(checkpoint_rays=0)
