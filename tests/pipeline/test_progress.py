"""Progress where overnight jobs run: `artmator run` with stderr captured to a file (no terminal, as under
`ray job submit` or in a pod log) logs progress lines, rewrites a partial report that is readable while it runs,
and greets with no token-authentication warning or error-level line from its embedded Ray."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from artmator.pipeline.layout import REPORT_STATE_KEY, STATUSES
from artmator.pipeline.progress import RunProgress, configure_logging, duration
from tests.pipeline.ray_fixtures import good_rows, write_images, write_manifest
from tests.reliability.conftest import kill_tree, supervise  # noqa: F401 - process-tree helpers

ROOT = Path(__file__).resolve().parents[2]
RUN_ARGS = ["--stage1-steps", "12", "--stage2-steps", "8", "--frames", "3", "--render-resolution", "32",
            "--resolution", "32", "--expressions", "happiness", "--no-head-prior", "--no-gallery", "--actors", "1",
            "--no-find-faces", "--no-face-metrics", "--progress-every", "0.5"]


@pytest.mark.timeout(420)
def test_run_logs_progress_and_writes_a_partial_report_without_a_terminal(tmp_path):
    rows = good_rows(4, prefix="g")
    write_images(str(tmp_path / "catalog"), {r["image_uri"]: 200 + i for i, r in enumerate(rows)})
    manifest = write_manifest(str(tmp_path / "catalog" / "manifest.parquet"), rows)
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="rp", dir="/tmp")       # Ray's socket paths are length-limited
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["RAY_TMPDIR"] = ray_tmp
    stderr_path = tmp_path / "stderr.log"
    partial = None
    with open(stderr_path, "wb") as err, open(tmp_path / "stdout.log", "wb") as std:
        child = subprocess.Popen([sys.executable, "-c", "from artmator.pipeline.cli import main; main()", "run",
                                  manifest, "--out", str(out), *RUN_ARGS], cwd=tmp_path, env=env, stdout=std,
                                 stderr=err, start_new_session=True)
        family: set[int] = set()
        try:
            deadline = time.time() + 360
            while child.poll() is None and time.time() < deadline:
                for report in out.glob("runs/*/report.parquet"):
                    table = pq.read_table(report)        # a partial report is a whole, readable file
                    if table.schema.metadata.get(REPORT_STATE_KEY) == b"running" and partial is None:
                        partial = table.to_pylist()
                time.sleep(0.2)
        finally:
            code, family = supervise(child, timeout_s=max(1.0, deadline - time.time()))
    log = stderr_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert partial is not None, "no partial report was seen while the run went on"
    assert sorted(r["painting_id"] for r in partial) == sorted(r["painting_id"] for r in rows)
    assert {r["status"] for r in partial} <= set(STATUSES) and "pending" in {r["status"] for r in partial}
    final = pq.read_table(next(out.glob("runs/*/report.parquet")))
    assert final.schema.metadata[REPORT_STATE_KEY] == b"finished"
    assert {r["status"] for r in final.to_pylist()} == {"done"}

    lines = [line for line in log.splitlines() if " artmator.run: " in line]
    assert any("plan: tune 4, render 0, refresh 0, skip 0, invalid 0, failed_before 0" in line for line in lines)
    assert any("tuning 4 paintings on 1 actors" in line for line in lines)
    progress = [line for line in lines if "finished (" in line and "ETA" in line]
    assert progress, log[-3000:]
    assert any("paintings/h" in line for line in progress)
    assert any("finished: 4 tuned, 0 re-rendered, 0 refreshed, 0 skipped, 0 failed" in line for line in lines)
    assert "Token authentication" not in log            # artmator chooses the embedded cluster's auth mode
    # nothing a newcomer could take for a failure: no error-level line from Ray's core (ray#53727 is dropped by
    # pipeline.console), no notice that progress bars are off (artmator's log lines are the progress)
    assert not re.search(r"^\[[^]]* E \d+ \d+\]", log, re.M), log[-3000:]
    assert "Progress bars disabled" not in log and " ERROR " not in log


def test_json_log_lines(capsys):
    configure_logging("info", "json")
    try:
        logging.getLogger("artmator.run").info("run %s: %d paintings", "r1", 3)
        logging.getLogger("artmator.run").debug("not shown at info")
    finally:
        configure_logging("info", "text")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    assert lines[0]["message"] == "run r1: 3 paintings" and lines[0]["level"] == "INFO"
    assert lines[0]["name"] == "artmator.run" and lines[0]["time"]


def test_eta_uses_history_until_this_run_measures():
    progress = RunProgress("r", {"tune": 10, "refresh": 100}, {"tune": 60.0, "refresh": 0.5}, interval_s=0)
    progress.begin("refresh", 4)
    progress.begin("tune", 2)
    assert progress.eta_seconds() == pytest.approx(10 * 60 / 2 + 100 * 0.5 / 4)
    for _ in range(100):
        progress.add("refresh", {"status": "refreshed", "seconds_total": 0.1})
    progress.add("tune", {"status": "done", "seconds_total": 30.0})
    assert progress.eta_seconds() == pytest.approx(9 * 30 / 2)
    assert "101/110 finished (done 1, refreshed 100, failed 0)" in progress.line()
    assert duration(3725) == "1h02m" and duration(None) == "unknown" and duration(75) == "1m15s"
