"""CI's share of the soaks (the full ones are commands in bench/): driver kills, concurrent drivers on one output,
and SIGKILLs across every stage of a catalog's life."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _soak(args: list[str], timeout_s: int) -> str:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.timeout(600)
def test_three_driver_kills_lose_and_duplicate_nothing(tmp_path):
    out = _soak(["bench.soak_kill", "--rounds", "3", "--paintings", "8", "--seed", "1", "--workdir",
                 str(tmp_path / "soak")], 560)
    for line in ("committed once each: 8/8", "lost: 0", "duplicated: 0", "partial visible: 0", "stray processes: 0"):
        assert line in out, out[-4000:]


@pytest.mark.timeout(1500)
def test_two_and_three_drivers_at_random_offsets_tune_each_painting_once(tmp_path):
    """Concurrent `artmator run` drivers on one output: claims make each painting tuned by exactly one of them."""
    out = _soak(["bench.soak_drivers", "--drivers", "2", "3", "--rounds", "1", "--paintings", "5", "--max-offset",
                 "4", "--seed", "1", "--workdir", str(tmp_path / "soak"), "--out-dir", str(tmp_path / "results")],
                1450)
    assert "tuned exactly once: 10/10; tuned twice: 0; committed: 10/10; stray processes: 0" in out, out[-4000:]
    assert out.count(": OK in") == 2, out[-4000:]


@pytest.mark.timeout(1500)
def test_kills_across_prepare_tune_refresh_render_and_gallery_lose_duplicate_and_show_nothing_partial(tmp_path):
    out = _soak(["bench.soak_stages", "--paintings", "3", "--kills", "1", "--seed", "2", "--workdir",
                 str(tmp_path / "soak"), "--out-dir", str(tmp_path / "results")], 1450)
    assert "lost 0, duplicated 0, partial visible 0, stray processes 0, claims left 0" in out, out[-4000:]
    assert out.count(": SIGKILL ") >= 3, out[-4000:]               # most stages were killed mid-work
