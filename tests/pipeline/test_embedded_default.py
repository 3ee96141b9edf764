"""The embedded default (`artmator run` with no arguments: quick settings, the tiny backbone with its head prior)
must give heads that read as faces, judged by the pretrained face networks the product itself reports with:

* on the four demo paintings AND on a whole painting prepared by `artmator prepare`:
  - a face detected in >= 80 % of the turntable frames (result.json `face.detected_fraction`);
  - the happiness still scoring `happy` higher than the neutral still (`face.expressions`);
  - the painting's palette on the head: the tuned reference render's colours (per-channel Wasserstein-1 of
    pixel values) are much closer to the painting's than the untuned prior head's are.

Runs the real job on the session's local Ray (a few minutes on 2 cores; the head prior fit is cached).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import wasserstein_distance

from artmator.pipeline.job import RunConfig, run
from artmator.pipeline.prepare import PrepareConfig, prepare
from artmator.pipeline.run_command import DEMO_MANIFEST
from artmator.pipeline.settings import load_backbone_only, quick_settings
from artmator.pipeline.storage import OutputStore
from tests.pipeline.faces_fixtures import whole_painting

MIN_DETECTED = 0.8
# Tuned W1 / untuned prior head's W1, to the painting: below 1 for every painting (tuning always moves the head
# towards its painting's colours) and below MEAN_PALETTE_GAIN on average (observed 0.42-0.87, mean ~0.65).
MEAN_PALETTE_GAIN = 0.75
# The happiness still may read at most this much less happy than the neutral render (the product's own
# `expression_not_read` margin; "happy" can be ~1e-2 on both renders); clearly sadder is a failure.
SADDER = 0.05
# ... on average over the paintings it must read happier by at least this (P(happy) gain), and at least
# CLEAR_SHARE of the paintings by more than CLEAR_SMILE. Measured with the shipped head prior (bench/README.md,
# "demo head prior"): gains 0.0001 / 0.255 / 0.032 / 0.864 on the demo paintings and 0.469 on the whole
# painting, mean 0.32; the bust's open mouth reads "surprised" on some paintings, so not every one smiles.
MEAN_SMILE_GAIN = 0.15
CLEAR_SMILE = 0.1
CLEAR_SHARE = 0.5


def _palette_w1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over RGB of the Wasserstein-1 distance between two images' pixel values (0..255)."""
    return float(np.mean([wasserstein_distance(a[..., c].ravel(), b[..., c].ravel()) for c in range(3)]))


@pytest.fixture(scope="module")
def demo_out(ray_local, tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("embedded")
    whole = folder / "whole.png"
    whole_painting().save(whole)
    (folder / "catalog.csv").write_text(f"painting_id,image_uri,title\nwhole-astronaut,{whole},A whole painting\n")
    prepared = prepare(str(folder / "catalog.csv"), str(folder / "prepared.parquet"), PrepareConfig(), actors=1)
    out = folder / "out"
    settings = quick_settings()
    summaries = {}
    for name, manifest in (("demo", DEMO_MANIFEST), ("prepared", prepared.manifest_uri)):
        summaries[name] = run(RunConfig(manifest_uri=str(manifest), out_uri=str(out), settings=settings,
                                        cpus_per_actor=1.0, run_id=f"embedded-{name}"))
    return out, summaries


@pytest.mark.timeout(1800)
def test_every_painting_of_the_embedded_default_reads_as_a_face(demo_out):
    out, summaries = demo_out
    assert summaries["demo"].done == 4 and summaries["prepared"].done == 1, summaries
    store = OutputStore(str(out))
    ids = sorted(store.scan().current)
    assert len(ids) == 5 and "whole-astronaut" in ids
    problems, gains = {}, {}
    for pid in ids:
        face = json.loads(store.read_file(pid, "result.json"))["face"]
        exp = face["expressions"]
        gains[pid] = exp["happiness"]["happy"] - exp["neutral"]["happy"]
        if face["detected_fraction"] < MIN_DETECTED:
            problems[pid] = f"face in {face['detected_fraction']:.0%} of frames"
        elif gains[pid] < -SADDER:
            problems[pid] = f"the smile reads sadder: {exp['happiness']['happy']:.3f} vs {exp['neutral']['happy']:.3f}"
    assert problems == {}, problems
    # The smile reads happier on average and clearly so on at least half the paintings. Per painting P(happy) can
    # be ~1e-4 on both renders (the expression net reads the bust's open mouth as "surprised"): a strict
    # per-painting comparison there would compare noise.
    assert np.mean(list(gains.values())) > MEAN_SMILE_GAIN, gains
    assert np.mean([g > CLEAR_SMILE for g in gains.values()]) >= CLEAR_SHARE, gains


@pytest.mark.timeout(600)
def test_the_tuned_heads_carry_their_paintings_palette(demo_out):
    out, _ = demo_out
    store = OutputStore(str(out))
    settings = quick_settings()
    backbone = load_backbone_only(settings)
    with torch.no_grad():
        latent = backbone.sample_latent(1, torch.Generator().manual_seed(0))
        prior = backbone.render_latent(latent, 0.0, 0.0, settings.render.resolution).image[0]  # (3, H, W)
    prior = ((prior.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    gains = {}
    for pid in sorted(store.scan().current):
        result = json.loads(store.read_file(pid, "result.json"))
        painting = np.asarray(Image.open(io.BytesIO(store.read_file(pid, "input.png"))).convert("RGB"), np.float64)
        tuned = np.asarray(Image.open(io.BytesIO(store.read_file(pid, "reference.png"))).convert("RGB"), np.float64)
        gains[pid] = _palette_w1(tuned, painting) / _palette_w1(prior, painting)
        assert result["painting_id"] == pid
    assert all(g < 1.0 for g in gains.values()) and np.mean(list(gains.values())) < MEAN_PALETTE_GAIN, gains
