"""CI's share of the driver-kill soak: a few rounds of `bench.soak_kill` (the full 20-round soak is a script)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_three_driver_kills_lose_and_duplicate_nothing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.soak_kill", "--rounds", "3", "--paintings", "8",
                           "--seed", "1", "--workdir", str(tmp_path / "soak")],
                          cwd=ROOT, capture_output=True, text=True, timeout=560)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for line in ("committed once each: 8/8", "lost: 0", "duplicated: 0", "partial visible: 0", "stray processes: 0"):
        assert line in out, out[-4000:]
