"""Multi-node: actors asking for GPUs land on (logical) GPU nodes, fall back to CPU, and survive losing a node.

The cluster (`ray.cluster_utils.Cluster`, real raylets) cannot share the session's local Ray, so the scenario
runs in its own process (tests/pipeline/multinode_scenario.py); this test checks what it printed and wrote.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from artmator.pipeline.storage import OutputStore
from tests.pipeline.ray_fixtures import good_rows, write_images, write_manifest

ROOT = Path(__file__).resolve().parents[2]
N = 10


@pytest.mark.timeout(540)
def test_node_removed_mid_run_every_painting_committed_once(tmp_path):
    catalog = tmp_path / "catalog"
    rows = good_rows(N, prefix="mn")
    write_images(str(catalog), {r["image_uri"]: i for i, r in enumerate(rows)})
    manifest = write_manifest(str(catalog / "manifest.parquet"), rows)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("multinode_scenario.py")), str(out),
                           manifest], cwd=ROOT, env=env, capture_output=True, text=True, timeout=480)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    events = json.loads(lines[-1][len("RESULT "):])

    # a node hosting a live tuning actor was really taken away while paintings were still pending
    assert events["removed"] in events["gpu_nodes"], events
    assert events["committed_before_removal"] < N, events
    # tuning actors only ever ran on GPU nodes (never the GPU-less head), including the restarted one
    assert events["actor_nodes"] and set(events["actor_nodes"]) <= set(events["gpu_nodes"]), events
    assert events["head"] not in events["actor_nodes"]
    assert events["summary"] == {"done": N, "failed": 0, "total": N, "report": events["summary"]["report"]}

    store = OutputStore(str(out))
    ids = {r["painting_id"] for r in rows}
    assert set(store.committed()) == ids
    assert len(OutputStore(str(out)).scan().current) == N
    assert all(store.verify(pid) == [] for pid in ids) and store.partial_paintings() == []
    report = pq.read_table(events["summary"]["report"]).to_pylist()
    assert sorted(r["painting_id"] for r in report) == sorted(ids)      # one row each: no duplicates, none lost
    assert all(r["status"] == "done" and r["attempts"] >= 1 for r in report)
