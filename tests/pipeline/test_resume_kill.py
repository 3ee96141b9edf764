"""SIGKILL the driver of `artmator run` mid-run, then rerun: nothing committed is redone or duplicated.

The killed run gets its own local Ray (address="local", own temp dir) in its own process group, so killing it
(and every process it started) never touches the test session's Ray, which the rerun then uses.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from bench.proctree import alive, descendants
from artmator.pipeline.cli import main
from artmator.pipeline.storage import OutputStore
from tests.pipeline.ray_fixtures import good_rows, write_images, write_manifest

ROOT = Path(__file__).resolve().parents[2]
N = 6
RUN_ARGS = ["--stage1-steps", "12", "--stage2-steps", "8", "--frames", "3", "--render-resolution", "32",
            "--resolution", "32", "--expressions", "happiness", "--no-head-prior", "--no-gallery", "--actors", "1", "--no-find-faces", "--no-face-metrics"]
CHILD = """
import sys, ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=sys.argv[1])
from artmator.pipeline.cli import main
main(sys.argv[2:])
"""


def _markers(out: Path) -> dict[str, bytes]:
    store = OutputStore(str(out))
    return {pid: store.fs.cat_file(ref.path) for pid, ref in sorted(store.scan().current.items())}


@pytest.mark.timeout(400)
def test_sigkilled_driver_then_rerun_commits_each_painting_once(ray_local, tmp_path):
    catalog = tmp_path / "catalog"
    rows = good_rows(N, prefix="k")
    write_images(str(catalog), {r["image_uri"]: 100 + i for i, r in enumerate(rows)})
    manifest = write_manifest(str(catalog / "manifest.parquet"), rows)
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="rk", dir="/tmp")          # short: Ray's socket paths are length-limited
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    log = open(tmp_path / "child.log", "wb")
    child = subprocess.Popen([sys.executable, "-c", CHILD, ray_tmp, "run", manifest, "--out", str(out), *RUN_ARGS],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    family: set[int] = set()
    try:
        deadline = time.time() + 240
        while time.time() < deadline and child.poll() is None and not _markers(out):
            family |= descendants(child.pid)
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before it could be killed:\n" + (tmp_path / "child.log").read_text()
        assert _markers(out), "no painting committed within 240 s:\n" + (tmp_path / "child.log").read_text()
        family |= descendants(child.pid)
        os.killpg(child.pid, signal.SIGKILL)                      # the driver and its process group
        for pid in family:                                        # Ray processes that left the group, by id
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        assert child.wait(timeout=30) == -signal.SIGKILL
        end = time.time() + 30
        while time.time() < end and any(alive(p) for p in family):
            time.sleep(0.2)
        assert not [p for p in family if alive(p)], "processes of the killed run survive"
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)

    store = OutputStore(str(out))
    before = _markers(out)
    assert 1 <= len(before) < N, f"killed too late to test resuming: {sorted(before)}"
    killed = [pq.read_table(p) for p in out.glob("runs/*/report.parquet")]   # a partial report, if any
    assert all(t.schema.metadata[b"artmator.state"] == b"running" for t in killed)
    assert set(store.committed()) == set(before)                   # a partial folder never counts as committed

    result = CliRunner().invoke(main, ["run", manifest, "--out", str(out), *RUN_ARGS])
    assert result.exit_code == 0, result.output
    assert f"{N - len(before)} committed, 0 re-rendered, 0 refreshed, {len(before)} skipped" in result.output, \
        result.output

    after = _markers(out)
    assert sorted(after) == sorted(r["painting_id"] for r in rows)
    assert {pid: after[pid] for pid in before} == before            # finished work was not redone
    assert all(store.verify(pid) == [] for pid in after) and store.partial_paintings() == []
    reports = [t for p in out.glob("runs/*/report.parquet")
               if (t := pq.read_table(p)).schema.metadata[b"artmator.state"] == b"finished"]
    assert len(reports) == 1
    report = {r["painting_id"]: r for r in reports[0].to_pylist()}
    assert sorted(pid for pid, r in report.items() if r["status"] == "done") == sorted(set(after) - set(before))
    assert all(report[pid]["status"] == "skipped" for pid in before)
    assert all(r["attempts"] == 1 for r in report.values() if r["status"] == "done")
