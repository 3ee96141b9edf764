"""Early stopping on a loss plateau: the plateau test on curves, and per-painting stops inside a real batch
(stage 1 latents and stage 2 adapters): a stopped painting's parameters stay as they were at its stop while the
others go on, and it ends exactly where it would have ended alone."""
from __future__ import annotations

import math

import pytest
import torch

from artmator.model.encoders import TINY_CLIP, LpipsConfig, load_clips, load_lpips
from artmator.model.localize import LocalizeConfig, localize
from artmator.model.lora import DeltaConfig, attach_adapters, trainable_parameters
from artmator.model.plateau import NO_EARLY_STOP, EarlyStop, PlateauConfig, plateaued
from artmator.model.stylize import StylizeConfig, stylize

STOP = PlateauConfig(patience=10, window=5, min_rel_improvement=0.01, min_steps=20)


def _noise(n, seed=0, scale=0.2):
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) * 2 - 1).mul(scale).tolist()


def _first_stop(curve, config):
    return next((s for s in range(1, len(curve) + 1) if plateaued(curve[:s], config)), None)


def test_a_flat_noisy_curve_stops_soon_after_its_drop():
    # a steep drop for 30 steps, then a level with +-20 % per-step noise (one random view per step)
    curve = [2.0 - 0.03 * t + n for t, n in zip(range(30), _noise(30, 1, 0.05))] + \
            [1.1 + n for n in _noise(200, 2)]
    stop = _first_stop(curve, STOP)
    assert stop is not None and 30 < stop <= 70, stop


def test_a_steady_descent_never_counts_as_flat():
    # 0.5 % per step, well above 1 % per patience span even under +-5 % noise
    curve = [math.exp(-0.005 * t) * (1 + n) for t, n in zip(range(300), _noise(300, 3, 0.05))]
    assert _first_stop(curve, STOP) is None


def test_the_windowed_mean_keeps_a_noisy_descent_going():
    # 0.5 % per step under +-15 % per-step noise (8 seeded curves): judged on raw losses (window 1), one lucky
    # low early looks like a plateau soon after; the moving mean sees the trend and goes on in most of them
    raw = PlateauConfig(patience=20, window=1, min_rel_improvement=0.01, min_steps=20)
    smooth = PlateauConfig(patience=20, window=20, min_rel_improvement=0.01, min_steps=20)
    raw_stops, smooth_stops = [], []
    for seed in range(8):
        noise = torch.randn(200, generator=torch.Generator().manual_seed(seed)).tolist()
        curve = [math.exp(-0.005 * t) * (1 + 0.15 * n) for t, n in enumerate(noise)]
        raw_stops.append(_first_stop(curve, raw) or 200)
        smooth_stops.append(_first_stop(curve, smooth) or 200)
    assert max(raw_stops) < 90, raw_stops
    assert sum(s >= 100 for s in smooth_stops) >= 5, smooth_stops


def test_min_steps_patience_and_off():
    flat = [1.0] * 100
    assert _first_stop(flat, STOP) == 20                                   # min_steps (> window + patience = 15)
    assert _first_stop(flat, PlateauConfig(patience=30, window=5, min_steps=0)) == 35    # window + patience
    assert _first_stop(flat, NO_EARLY_STOP) is None and not NO_EARLY_STOP.enabled
    assert not plateaued([], STOP)


@pytest.mark.parametrize("kwargs,match", [({"patience": -1}, "patience"), ({"window": 0}, "window"),
                                          ({"min_steps": -2}, "min_steps"),
                                          ({"min_rel_improvement": 1.0}, "min_rel_improvement")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PlateauConfig(**kwargs)


def test_batched_parameters_must_have_one_row_per_painting():
    with pytest.raises(ValueError, match="one row per painting"):
        EarlyStop(STOP, 3, [torch.zeros(2, 4)])
    EarlyStop(STOP, 1, [torch.zeros(7, 4)])          # one painting: nothing to freeze, any shape


# ---- in a real batch ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lpips_fn():
    return load_lpips(LpipsConfig(net="alex", random_backbone=True))


def _stage1_case(backbone):
    """Painting 0: another latent's render (its loss keeps falling); painting 1: noise (flat almost at once)."""
    backbone.requires_grad_(False)
    init = backbone.sample_latent(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        other = backbone.sample_latent(1, torch.Generator().manual_seed(5))
        face = backbone.render_latent(other, torch.zeros(1), torch.zeros(1), 32, psi=1.0).image
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return torch.cat([face, noise]), init


STAGE1 = LocalizeConfig(steps=60, early_stop=PlateauConfig(patience=4, window=4, min_rel_improvement=0.02,
                                                           min_steps=6))


def test_stage1_a_flat_painting_stops_alone_and_its_latent_stays(tiny_backbone, lpips_fn):
    reference, init = _stage1_case(tiny_backbone)
    zeros = torch.zeros(2)
    batch = localize(tiny_backbone, reference, zeros, zeros, lpips_fn, STAGE1, torch.Generator().manual_seed(0),
                     init=init)
    stopped, going = batch.steps_used[1], batch.steps_used[0]
    assert stopped < going <= STAGE1.steps, batch.steps_used       # premise: painting 1 plateaus first
    assert batch.losses.shape == (going, 2)
    after = batch.losses[stopped:, 1]
    assert torch.all(after == after[0]), "the stopped painting's latent changed after its stop"
    assert len(set(batch.losses[stopped:, 0].tolist())) > 1, "the other painting stopped moving"
    # the same painting alone ends where it ended in the batch (Adam would have moved it through momentum)
    alone = localize(tiny_backbone, reference[1:], zeros[:1], zeros[:1], lpips_fn, STAGE1,
                     torch.Generator().manual_seed(0), init={k: v[1:] for k, v in init.items()})
    assert alone.steps_used == [stopped] and alone.losses.shape[0] == stopped
    for name in tiny_backbone.inverted_latents:
        torch.testing.assert_close(batch.latent[name][1:], alone.latent[name], rtol=1e-5, atol=1e-6)
    # without early stopping every step runs for both
    full = localize(tiny_backbone, reference, zeros, zeros, lpips_fn, LocalizeConfig(steps=going + 3),
                    torch.Generator().manual_seed(0), init=init)
    assert full.steps_used == [going + 3] * 2


def test_stage2_a_stopped_paintings_adapters_stay_while_the_other_tunes(tiny_backbone, lpips_fn):
    tiny_backbone.requires_grad_(False)
    clip = load_clips([TINY_CLIP])
    latent = tiny_backbone.sample_latent(2, torch.Generator().manual_seed(0))
    reference = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    module = attach_adapters(tiny_backbone.tunable(), DeltaConfig(rank=2), 2, [0, 1])
    params = list(trainable_parameters(module))
    snapshots: list[list[torch.Tensor]] = []
    cfg = StylizeConfig(steps=40, early_stop=PlateauConfig(patience=3, window=3, min_rel_improvement=0.05,
                                                           min_steps=5))
    result = stylize(tiny_backbone, tiny_backbone.with_tunable(module), params, latent, reference, torch.zeros(2),
                     torch.zeros(2), clip, lpips_fn, cfg, lr=1e-2, generator=torch.Generator().manual_seed(0),
                     on_step=lambda step: snapshots.append([p.detach().clone() for p in params]))
    first, last = sorted(range(2), key=lambda k: result.steps_used[k])
    s_first, s_last = result.steps_used[first], result.steps_used[last]
    assert s_first < s_last, f"premise: one painting stops before the other ({result.steps_used})"
    assert result.losses["total"].shape[0] == s_last == len(snapshots)
    at_stop = snapshots[s_first - 1]
    for p, row in zip(params, at_stop):
        assert torch.equal(p.detach()[first], row[first]), "stopped adapters changed after the stop"
    assert any(not torch.equal(a[first], b[first]) for a, b in zip(snapshots[0], at_stop)), "never tuned"
    assert any(not torch.equal(p.detach()[last], row[last]) for p, row in zip(params, at_stop)), \
        "the painting still running did not move after the other stopped"
