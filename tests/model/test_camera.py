from __future__ import annotations

import math

import pytest
import torch

from artmator.model.camera import as_batch, degrees_to_official, official_to_degrees, random_views, turntable_yaws


def test_degrees_round_trip_and_frontal():
    assert float(degrees_to_official(0.0)) == pytest.approx(math.pi / 2)
    assert float(official_to_degrees(degrees_to_official(17.5))) == pytest.approx(17.5, abs=1e-5)


def test_turntable_matches_official_release_sweep():
    yaws = turntable_yaws(50, math.degrees(0.35))
    assert len(yaws) == 50
    assert float(yaws[0]) == pytest.approx(-math.degrees(0.35)) and float(yaws[-1]) == pytest.approx(math.degrees(0.35))
    with pytest.raises(ValueError):
        turntable_yaws(0)


def test_as_batch_broadcasts_and_checks():
    assert as_batch(3.0, 4, "cpu").shape == (4,)
    with pytest.raises(ValueError, match="expected 2 angles"):
        as_batch(torch.zeros(3), 2, "cpu")


def test_random_views_in_range_and_seeded():
    y1, p1 = random_views(100, 30, 10, torch.Generator().manual_seed(0))
    y2, p2 = random_views(100, 30, 10, torch.Generator().manual_seed(0))
    assert torch.equal(y1, y2) and y1.abs().max() <= 30 and p1.abs().max() <= 10
