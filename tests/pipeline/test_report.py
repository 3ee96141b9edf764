"""Run reports and `artmator status` summaries, on an output folder built without Ray."""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from artmator.pipeline.actor import failed_row
from artmator.pipeline.job import report_table
from artmator.pipeline.layout import REPORT_SCHEMA
from artmator.pipeline.report import status_summary
from artmator.pipeline.storage import OutputStore


def done_row(pid: str, seconds: float) -> dict:
    return {**failed_row(pid, "", ""), "status": "done", "seconds_total": seconds, "seconds_stage1": 1.0,
            "seconds_stage2": 2.0, "lpips_ref": 0.2, "psnr_ref": 12.0, "lpips_stage1": 0.3, "delta_bytes": 900,
            "pose_estimated": False}


def build_out_folder(out: Path) -> OutputStore:
    """Two runs: p1 done, p2 failed then done, p3 failed (image) then skipped, p4 invalid; plus a partial p5."""
    store = OutputStore(str(out))
    for pid, run_id in (("p1", "20260101T000000Z-aaaaaa"), ("p2", "20260102T000000Z-bbbbbb")):
        store.write_painting(pid, {"delta.safetensors": b"d", "reference.png": b"png"},
                             {"run_id": run_id, "config_hash": "h1"})
    (out / "paintings" / "p5" / "v000001-abcdef").mkdir(parents=True)
    (out / "paintings" / "p5" / "v000001-abcdef" / "delta.safetensors").write_bytes(b"half")
    store.write_report("20260101T000000Z-aaaaaa", report_table([
        done_row("p1", 30.0),
        failed_row("p2", "storage", "ConnectionError: reset by peer"),
        failed_row("p3", "image", "empty: p3.png: the file is empty (0 bytes)"),
        {**failed_row("p4", "manifest", "yaw_deg: 500.0 is outside [-90, 90]"), "status": "invalid"},
    ], {"p1": 1, "p2": 4, "p3": 1}, "20260101T000000Z-aaaaaa", "h1"))
    store.write_report("20260102T000000Z-bbbbbb", report_table([
        done_row("p2", 60.0),
        {**failed_row("p3", "image", "empty: p3.png: the file is empty (0 bytes)"), "status": "skipped"},
        {**failed_row("p4", "manifest", "yaw_deg: 500.0 is outside [-90, 90]"), "status": "invalid"},
    ], {"p2": 1}, "20260102T000000Z-bbbbbb", "h1"))
    return store


def test_report_table_nulls_attempts_and_schema():
    table = report_table([done_row("a", 3.0), failed_row("b", "image", "empty: b.png"),
                          {**failed_row("c", "manifest", "bad"), "status": "invalid"}], {"a": 2, "b": 1}, "r", "h")
    assert table.schema.equals(REPORT_SCHEMA)
    rows = {r["painting_id"]: r for r in table.to_pylist()}
    assert rows["a"]["attempts"] == 2 and rows["a"]["error_kind"] is None and rows["a"]["message"] is None
    assert rows["b"]["attempts"] == 1 and rows["b"]["seconds_stage1"] is None and rows["b"]["delta_bytes"] is None
    assert rows["c"]["attempts"] == 0                      # never started
    assert {r["run_id"] for r in rows.values()} == {"r"} and {r["config_hash"] for r in rows.values()} == {"h"}
    assert not any(isinstance(v, float) and math.isnan(v) for r in rows.values() for v in r.values())


def test_status_summary_counts_and_groups_failures(tmp_path):
    store = build_out_folder(tmp_path)
    reports = store.read_reports()
    assert reports.num_rows == 7 and isinstance(reports, pa.Table)
    lines = status_summary(str(tmp_path)).splitlines()
    assert lines[0] == f"{tmp_path}: 2 paintings committed"
    assert lines[1] == "2 failed (latest attempt), 1 partial (no marker, no live claim; redone on rerun)"
    reasons = [line for line in lines if line.startswith("  ")]
    assert sorted(line.split(":")[0].strip() for line in reasons) == ["image", "manifest"]
    assert any("e.g. p3: empty: p3.png" in line for line in reasons)
    assert not any("storage" in line for line in lines)   # p2's storage failure was fixed by the later run
    assert "run 20260101T000000Z-aaaaaa: 1 done, 120.0 paintings/hour per actor; 2 failed, 1 invalid" in lines
    assert "run 20260102T000000Z-bbbbbb: 1 done, 60.0 paintings/hour per actor; 1 invalid" in lines


def test_status_reads_a_running_runs_partial_report(tmp_path):
    """A run rewrites its report while it goes on (state "running", unfinished rows "pending"): status shows it."""
    store = build_out_folder(tmp_path)
    rows = [done_row("p6", 10.0), {**done_row("p1", 0.5), "status": "refreshed"},
            {**done_row("p2", 2.0), "status": "rendered"}, {**failed_row("p7", "", ""), "status": "pending"},
            {**failed_row("p8", "", ""), "status": "pending"}]
    store.write_report("20260103T000000Z-cccccc", report_table(rows, {"p6": 1}, "20260103T000000Z-cccccc", "h1"),
                       "running")
    lines = status_summary(str(tmp_path)).splitlines()
    assert ("run 20260103T000000Z-cccccc (running): 1 done, 360.0 paintings/hour per actor; 1 rendered, "
            "1 refreshed, 2 pending") in lines
    assert lines[1] == "2 failed (latest attempt), 1 partial (no marker, no live claim; redone on rerun)"   # pending is no failure


def test_status_shows_live_claims_by_run_and_expired_ones(tmp_path):
    """A painting a live worker holds is "being worked on", not partial; a dead worker's claim is "expired"."""
    import time

    from artmator.pipeline.claims import Claim, Claims, atomic_create

    store = build_out_folder(tmp_path)
    claims = Claims.of_store(store, "20260104T000000Z-dddddd", ttl_s=600)
    for pid, purpose in (("p5", "tune"), ("p6", "tune"), ("p1", "render")):
        claims.take(pid, purpose)
    stale = Claim(Claims.of_store(store, "20260103T000000Z-cccccc", ttl_s=60), "p7", 1, "tune")
    atomic_create(store.fs, stale.path, stale.document(time.time() - 3600))   # last renewed an hour ago
    lines = status_summary(str(tmp_path)).splitlines()
    assert lines[1] == "3 live claims (paintings being worked on now):"
    assert lines[2].startswith("  run 20260104T000000Z-dddddd: 3 (2 tune, 1 render) on host ")
    assert "e.g. p1, p5, p6; leases until 20" in lines[2]
    assert lines[3] == "1 expired claims (their workers stopped; the next run takes them over)"
    assert "2 failed (latest attempt), 0 partial (no marker, no live claim; redone on rerun)" in lines
    claims.close()
    assert "live claims" not in status_summary(str(tmp_path))


def test_status_of_an_empty_folder(tmp_path):
    assert status_summary(str(tmp_path)).splitlines() == [f"{tmp_path}: 0 paintings committed",
                                                          "no runs recorded yet"]


def test_status_shows_mean_face_metrics_and_flag_counts(tmp_path):
    store = OutputStore(str(tmp_path))
    rows = [{**done_row("a", 3.0), "face_detected_fraction": 1.0, "face_identity_consistency": 0.9,
             "face_likeness": 0.8, "face_pose_error_deg": 4.0, "flags": "random_weights"},
            {**done_row("b", 3.0), "face_detected_fraction": 0.5, "face_identity_consistency": 0.7,
             "face_likeness": 0.6, "face_pose_error_deg": 8.0, "flags": "random_weights,no_face_in_renders"}]
    for pid in ("a", "b"):
        store.write_painting(pid, {"delta.safetensors": b"d"}, {"run_id": "r1", "config_hash": "h"})
    store.write_report("r1", report_table(rows, {"a": 1, "b": 1}, "r1", "h"))
    text = status_summary(str(tmp_path))
    assert ("face metrics (mean over 2 committed): face found in 75% of turntable frames; identity consistency "
            "0.80; likeness 0.70; pose error 6.0°") in text
    assert "quality flags: random_weights 2, no_face_in_renders 1" in text
