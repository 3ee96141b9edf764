"""The whole method on a batch: per-painting seeds, deltas, metrics, batched = one-at-a-time in distribution."""
from __future__ import annotations

import pytest
import torch

from artmator.model.delta import apply_delta, encode_delta, decode_delta
from artmator.model.encoders import TINY_CLIP, LpipsConfig
from artmator.model.localize import LocalizeConfig, PoseSearchConfig
from artmator.model.lora import DeltaConfig
from artmator.model.stylize import StylizeConfig
from artmator.model.tune import EncoderConfig, PaintingInput, TuneConfig, load_encoders, painting_seed, tune_paintings

CFG = TuneConfig(stage1=LocalizeConfig(steps=3), stage2=StylizeConfig(steps=2),
                 pose_search=PoseSearchConfig(yaws_deg=(-15.0, 15.0), pitches_deg=(0.0,), steps=1),
                 encoders=EncoderConfig(clip=(TINY_CLIP,), lpips=LpipsConfig(net="alex", random_backbone=True)))


@pytest.fixture(scope="module")
def encoders():
    return load_encoders(CFG.encoders)


def _paintings(n, pose=(0.0, 0.0)):
    g = torch.Generator().manual_seed(0)
    return [PaintingInput(f"p{i}", torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, *pose) for i in range(n)]


def test_tune_batch_returns_deltas_metrics_and_curves(tiny_backbone, encoders):
    out = tune_paintings(tiny_backbone, _paintings(2) + [PaintingInput("q", torch.zeros(1, 3, 32, 32))], CFG, encoders)
    assert [t.painting_id for t in out] == ["p0", "p1", "q"]
    assert out[2].pose_estimated and out[2].yaw_deg in (-15.0, 15.0) and not out[0].pose_estimated
    for t in out:
        assert t.error is None and len(t.losses["stage1"]) == 3 and len(t.losses["total"]) == 2
        assert {"lpips_stage1", "psnr_stage1", "lpips_ref", "psnr_ref"} <= set(t.metrics)
        again = decode_delta(encode_delta(t.delta.tensors, t.delta.metadata))
        assert again.metadata.base_sha256 == tiny_backbone.base_hash()
        apply_delta(tiny_backbone, again)


def test_paintings_start_identically_alone_or_batched(tiny_backbone, encoders):
    cfg = TuneConfig(stage1=LocalizeConfig(steps=2), stage2=StylizeConfig(steps=0), encoders=CFG.encoders)
    ps = _paintings(2)
    batched = tune_paintings(tiny_backbone, ps, cfg, encoders)
    alone = tune_paintings(tiny_backbone, ps[1:], cfg, encoders)
    assert torch.allclose(torch.tensor(batched[1].losses["stage1"]), torch.tensor(alone[0].losses["stage1"]), atol=1e-5)
    assert painting_seed(0, "p1") != painting_seed(0, "p0") and painting_seed(0, "p1") == painting_seed(0, "p1")


def test_full_mode_one_copy_per_painting(tiny_backbone, encoders):
    cfg = TuneConfig(stage1=LocalizeConfig(steps=1), stage2=StylizeConfig(steps=1), delta=DeltaConfig(mode="full"),
                     encoders=CFG.encoders)
    out = tune_paintings(tiny_backbone, _paintings(2), cfg, encoders)
    assert all(t.delta.metadata.mode == "full" for t in out)


def test_without_localization_skips_stage1(tiny_backbone, encoders):
    cfg = TuneConfig(stage1=LocalizeConfig(steps=5), stage2=StylizeConfig(steps=1), use_localization=False,
                     encoders=CFG.encoders)
    [t] = tune_paintings(tiny_backbone, _paintings(1), cfg, encoders)
    assert t.losses["stage1"] == [] and t.timings["stage1"] < 5


def test_bad_batches_are_refused(tiny_backbone, encoders):
    with pytest.raises(ValueError, match="at least one"):
        tune_paintings(tiny_backbone, [], CFG, encoders)
    with pytest.raises(ValueError, match="unique"):
        tune_paintings(tiny_backbone, _paintings(1) * 2, CFG, encoders)
    with pytest.raises(ValueError, match="both yaw and pitch"):
        tune_paintings(tiny_backbone, [PaintingInput("x", torch.zeros(1, 3, 8, 8), 1.0, None)], CFG, encoders)
    with pytest.raises(ValueError, match=r"\(1, 3, R, R\)"):
        tune_paintings(tiny_backbone, [PaintingInput("x", torch.zeros(3, 8, 8), 0.0, 0.0)], CFG, encoders)


def test_config_hash_is_stable_and_sensitive():
    assert CFG.hash() == TuneConfig(**{f: getattr(CFG, f) for f in CFG.__dataclass_fields__}).hash()
    assert CFG.hash() != TuneConfig(stage1=LocalizeConfig(steps=4), stage2=CFG.stage2, encoders=CFG.encoders,
                                    pose_search=CFG.pose_search).hash()
