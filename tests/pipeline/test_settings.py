"""JobSettings: JSON round trips, strict decoding, what the resume hash covers, config.json documents."""
from __future__ import annotations

import json
import logging

import pytest

from artmator.pipeline.config_schema import SettingsError, leaves, with_values
from artmator.pipeline.settings import (BackboneSettings, JobSettings, paper_settings, quick_settings,
                                        settings_from_document, settings_from_json, settings_json)
from artmator.pipeline.storage import redact_config
from tests.pipeline.settings_cases import other_value

LEAVES = leaves(JobSettings)


@pytest.mark.parametrize("settings", [quick_settings(), paper_settings(), JobSettings()])
def test_settings_round_trip_through_json(settings):
    assert settings_from_json(json.dumps(settings.to_dict())) == settings


def test_the_savings_settings_round_trip_and_are_options():
    from dataclasses import replace

    from artmator.model.plateau import PlateauConfig

    base = paper_settings()
    stop = PlateauConfig(patience=7, window=3, min_rel_improvement=0.03, min_steps=11)
    tune = replace(base.tune, stage1=replace(base.tune.stage1, early_stop=stop),
                   stage2=replace(base.tune.stage2, early_stop=replace(stop, patience=9), clip_view_resolution=80))
    settings = replace(base, tune=tune)
    again = settings_from_json(json.dumps(settings.to_dict()))
    assert again == settings and again.tune.stage2.early_stop.patience == 9
    assert again.result_hash("b") != base.result_hash("b")
    flags = {f for leaf in LEAVES for f in leaf.flags}
    assert {"--stage1-early-stop-patience", "--stage2-early-stop-window", "--stage2-early-stop-min-rel-improvement",
            "--stage1-early-stop-min-steps", "--stage2-clip-view-resolution"} <= flags
    bad = settings.to_dict()
    bad["tune"]["stage2"]["early_stop"]["window"] = 0
    with pytest.raises(ValueError, match="window"):
        settings_from_json(json.dumps(bad))


def test_unknown_and_mistyped_settings_are_errors():
    d = quick_settings().to_dict()
    with pytest.raises(SettingsError, match="unknown setting 'tune.stage3'"):
        settings_from_json(json.dumps({**d, "tune": {**d["tune"], "stage3": {}}}))
    bad = json.loads(json.dumps(d))
    bad["tune"]["stage1"]["steps"] = "sixty"
    with pytest.raises(ValueError, match="tune.stage1.steps: 'sixty' is not an integer"):
        settings_from_json(json.dumps(bad))


@pytest.mark.parametrize("base", [paper_settings(), quick_settings()], ids=["paper", "quick"])
@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.name)
def test_the_resume_hash_covers_exactly_the_settings_that_change_results(base, leaf):
    if leaf.name == "backbone.weights" and base.backbone.head_prior:
        # giving weights to a head-prior backbone swaps the prior out (a different backbone, a different hash);
        # moving weights keeps it: start from weights at another URI
        base = with_values(base, {leaf.path: (("generator", "/weights/generator.pth"),)})
    changed = with_values(base, {leaf.path: other_value(leaf, leaf.get(base))})
    assert leaf.get(changed) != leaf.get(base)
    same = changed.result_hash("base-sha") == base.result_hash("base-sha")
    assert same == (not leaf.result), f"{leaf.name}: {'in' if not same else 'not in'} the resume hash"
    assert base.result_hash("base-sha") != base.result_hash("other-base-sha")   # weights count by content


def test_a_head_prior_does_not_count_when_weights_are_given():
    weights = (("generator", "/w/g.pth"),)
    with_prior = BackboneSettings(preset="tiny", weights=weights, head_prior=True)
    assert with_prior == BackboneSettings(preset="tiny", weights=weights, head_prior=False)
    assert BackboneSettings(weights=(("vae_id", "b"), ("generator", "a"))).weights == (("generator", "a"),
                                                                                      ("vae_id", "b"))
    with pytest.raises(ValueError, match="its parts are"):
        BackboneSettings(weights=(("generator", "a"), ("generator", "b")))
    with pytest.raises(ValueError, match="registered backbone presets"):
        BackboneSettings(preset="stylegan9")


def test_settings_json_redacts_uris_and_reads_back():
    s = with_values(paper_settings(), {("backbone", "weights"): (("generator", "https://user:pw@host/g.pth?sig=1"),)})
    text = settings_json(s, redact_config)
    assert "pw" not in text and "sig=1" not in text
    back = settings_from_document(json.loads(text), quick_settings())
    assert back.backbone.weights == (("generator", "https://<redacted>@host/g.pth?<redacted>"),)
    assert with_values(back, {("backbone", "weights"): s.backbone.weights}) == s


def test_a_run_record_is_a_settings_document():
    s = with_values(quick_settings(), {("tune", "stage1", "steps"): 9})
    record = {"run_id": "r", "config_hash": "abc", "manifest": "m.parquet", "settings": s.to_dict()}
    assert settings_from_document(record, paper_settings()) == s
    with pytest.raises(SettingsError, match="unknown setting 'run_id'"):
        settings_from_document({"run_id": "r"}, quick_settings())


def test_the_compile_setting_reaches_the_backbone(caplog):
    from dataclasses import replace

    from artmator.pipeline.settings import load_backbone_only

    base = quick_settings()
    off = load_backbone_only(replace(base, backbone=replace(base.backbone, head_prior=False)))
    assert off.compile_backend is None
    settings = replace(base, backbone=replace(base.backbone, head_prior=False, compile=True,
                                              compile_backend="no-such-backend"))
    # caplog listens on the root logger; `configure_logging` (CLI tests in this process) stops `artmator` loggers
    # from propagating there, so listen on the logger itself.
    logger = logging.getLogger("artmator.model.compile")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="artmator.model.compile"):
            backbone = load_backbone_only(settings)
    finally:
        logger.removeHandler(caplog.handler)
    assert backbone.compile_backend == "no-such-backend"
    assert any("no-such-backend" in r.getMessage() for r in caplog.records)
