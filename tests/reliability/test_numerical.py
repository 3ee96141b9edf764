"""Numerical faults: a painting whose loss turns NaN/inf, or whose tuned delta is not finite, fails alone.

Faults are injected in-process around the real actor step (`tune_and_commit`, batch of 2 = paintings_per_batch 2):
a NaN/inf image after loading (stage 1 diverges), a NaN stage-2 loss term for one painting from step 1, and a
tuned delta holding NaN although every loss stayed finite. Each time: the bad painting is reported `numerical`
with a clear message, nothing of it is committed (no folder at all), and its batch mate commits a finite delta
that verifies.
"""
from __future__ import annotations

import dataclasses

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from artmator.model import stylize
from artmator.pipeline import flow
from artmator.model.delta import Delta, load_delta
from artmator.pipeline.actor import ActorSpec, tune_and_commit
from artmator.pipeline.manifest import PaintingTask
from artmator.pipeline.flow import context_of
from artmator.pipeline.storage import OutputStore
from tests.pipeline.ray_fixtures import png_bytes, tiny_settings

GOOD, BAD = "calm", "diverges"


@pytest.fixture(scope="module")
def settings():
    s = tiny_settings(stage1=2, stage2=2)                         # two stage-2 steps: the fault starts at step 1
    return replace(s, render=replace(s.render, turntable_frames=2, expressions=()))


@pytest.fixture(scope="module")
def models(settings):
    from artmator.pipeline.settings import load_models

    return load_models(settings)


def _batch(tmp_path: Path, settings, models) -> tuple[list[dict], OutputStore]:
    for i, pid in enumerate((GOOD, BAD)):
        (tmp_path / f"{pid}.png").write_bytes(png_bytes(50 + i))
    tasks = [PaintingTask(row=i, painting_id=pid, image_uri=str(tmp_path / f"{pid}.png"), yaw_deg=5.0 * i,
                          pitch_deg=0.0) for i, pid in enumerate((GOOD, BAD))]
    out = str(tmp_path / "out")
    store = OutputStore(out)
    spec = ActorSpec(settings_json=json.dumps(settings.to_dict()), out_uri=out, storage_options={}, run_id="num",
                     config_hash="cfg")
    rows = tune_and_commit(tasks, context_of(settings, models), store, spec)
    return rows, store


def _assert_only_good_committed(rows, store: OutputStore, fragment: str) -> None:
    by_id = {r["painting_id"]: r for r in rows}
    bad = by_id[BAD]
    assert (bad["status"], bad["error_kind"]) == ("failed", "numerical"), bad
    assert fragment in bad["message"] and "no delta was written" in bad["message"], bad["message"]
    assert by_id[GOOD]["status"] == "done", by_id[GOOD]
    assert store.committed_ids() == {GOOD}
    assert store.partial_paintings() == [], "the diverged painting left files behind"
    assert store.verify(GOOD) == []
    _assert_finite(load_delta(store.read_commit(GOOD).path_of("delta.safetensors")))


def _assert_finite(delta: Delta) -> None:
    for name, t in {**delta.tensors, **delta.metadata.latent}.items():
        assert torch.isfinite(t.float()).all(), f"committed delta tensor {name} is not finite"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_image_stops_that_painting_in_stage_1(tmp_path, settings, models, monkeypatch, value):
    real = flow.painting_input

    def load(task, *args, **kwargs):
        tune_input, face = real(task, *args, **kwargs)
        if BAD in task.image_uri:
            tune_input = dataclasses.replace(tune_input, image=torch.full_like(tune_input.image, value))
        return tune_input, face

    monkeypatch.setattr(flow, "painting_input", load)
    rows, store = _batch(tmp_path, settings, models)
    _assert_only_good_committed(rows, store, "non-finite loss in stage 1 at step 0")


@pytest.mark.timeout(120)
def test_non_finite_stage_2_loss_stops_that_painting(tmp_path, settings, models, monkeypatch):
    real = stylize.artmator_terms
    calls = {"n": 0}

    def terms(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 2:                                       # step 1 onwards: painting #1 (BAD) diverges
            poison = torch.tensor([1.0, float("nan")], device=out["dir"].device)
            out["dir"] = out["dir"] * poison
        return out

    monkeypatch.setattr(stylize, "artmator_terms", terms)
    rows, store = _batch(tmp_path, settings, models)
    assert calls["n"] == settings.tune.stage2.steps
    _assert_only_good_committed(rows, store, "non-finite loss in stage 2 at step 1")


@pytest.mark.timeout(120)
def test_non_finite_delta_with_finite_losses_is_never_committed(tmp_path, settings, models, monkeypatch):
    """An adapter that overflowed in the very last optimiser step: every recorded loss is finite, the delta is not."""
    real = flow.tune_paintings

    def tune(*args, **kwargs):
        results = real(*args, **kwargs)
        for r in results:
            if r.painting_id == BAD:
                name = sorted(r.delta.tensors)[0]
                broken = dict(r.delta.tensors)
                broken[name] = torch.full_like(broken[name], float("nan"))
                r.delta = replace(r.delta, tensors=broken)
        assert all(torch.isfinite(torch.tensor(v)).all() for r in results for v in r.losses.values())
        return results

    monkeypatch.setattr(flow, "tune_paintings", tune)
    rows, store = _batch(tmp_path, settings, models)
    _assert_only_good_committed(rows, store, "not finite")
