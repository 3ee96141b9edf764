"""`pipeline.job.run` end to end on a real local Ray and a local output folder.

One run over good paintings (one needing pose search), a zero-byte image and an invalid manifest row, then the
reruns a museum would do: same settings (nothing redone), --retry-failed, and a changed setting that matters.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from artmator.pipeline.job import RunConfig, count_attempts, run
from artmator.pipeline.layout import REPORT_SCHEMA
from artmator.pipeline.storage import OutputStore
from tests.pipeline.ray_fixtures import tiny_settings, write_images, write_manifest

GOOD = ("fixed-a", "fixed-b", "searched")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    write_images(str(folder), {"fixed-a.png": 1, "fixed-b.png": 2, "searched.png": 3, "valid-but-odd.png": 4})
    (folder / "empty.png").write_bytes(b"")
    write_manifest(str(folder / "manifest.parquet"), [
        {"painting_id": "fixed-a", "image_uri": "fixed-a.png", "yaw_deg": 0.0, "pitch_deg": 0.0},
        {"painting_id": "fixed-b", "image_uri": "fixed-b.png", "yaw_deg": 20.0, "pitch_deg": -5.0},
        {"painting_id": "searched", "image_uri": "searched.png"},                       # null pose: pose search
        {"painting_id": "empty-image", "image_uri": "empty.png", "yaw_deg": 0.0, "pitch_deg": 0.0},
        {"painting_id": "bad-yaw", "image_uri": "valid-but-odd.png", "yaw_deg": 500.0, "pitch_deg": 0.0},
    ])
    return folder


def _markers(out: Path) -> dict[str, bytes]:
    """The current commit marker of each painting, as bytes."""
    store = OutputStore(str(out))
    return {pid: store.fs.cat_file(ref.path) for pid, ref in sorted(store.scan().current.items())}


def _report(summary) -> dict[str, dict]:
    table = pq.read_table(summary.report_path)
    assert table.schema.equals(REPORT_SCHEMA), table.schema
    rows = table.to_pylist()
    ids = [r["painting_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"duplicate report rows: {ids}"
    return {r["painting_id"]: r for r in rows}


@pytest.mark.timeout(300)
def test_run_rerun_retry_and_changed_settings(ray_local, catalog, tmp_path):
    out = tmp_path / "out"
    config = RunConfig(manifest_uri=str(catalog / "manifest.parquet"), out_uri=str(out), settings=tiny_settings(),
                       cpus_per_actor=1.0, run_id="run-1")
    seen = []
    s1 = run(config, progress=lambda done, total: seen.append((done, total)))

    # -- first run: the good ones committed once each; each failure has its own specific reason
    assert not s1.ok
    assert (s1.total, s1.done, s1.skipped, s1.failed) == (5, 3, 0, 2)
    assert s1.failures == {"image": 1, "manifest": 1}
    assert seen and seen[-1] == (4, 4)                    # progress over the 4 valid rows that were tuned
    report = _report(s1)
    assert set(report) == {*GOOD, "empty-image", "bad-yaw"}
    for pid in GOOD:
        r = report[pid]
        assert (r["status"], r["error_kind"], r["message"]) == ("done", None, None), r
        assert r["attempts"] >= 1 and r["delta_bytes"] > 0 and r["seconds_total"] > 0
        assert r["lpips_ref"] is not None and r["run_id"] == "run-1"
    assert report["searched"]["pose_estimated"] is True
    assert report["fixed-a"]["pose_estimated"] is False
    bad = report["empty-image"]
    assert (bad["status"], bad["error_kind"], bad["attempts"]) == ("failed", "image", 1)
    assert bad["message"].startswith("empty:") and "empty.png" in bad["message"]
    invalid = report["bad-yaw"]
    assert (invalid["status"], invalid["error_kind"], invalid["attempts"]) == ("invalid", "manifest", 0)
    assert "yaw_deg" in invalid["message"] and "500" in invalid["message"]

    store = OutputStore(str(out))
    committed = store.committed(report["fixed-a"]["config_hash"])
    assert set(committed) == set(GOOD) and store.committed_ids() == set(GOOD)
    assert list(_markers(out)) == sorted(GOOD)
    for pid in GOOD:
        assert store.verify(pid) == []
        assert committed[pid]["run_id"] == "run-1"
    assert committed["searched"]["pose_estimated"] is True
    assert store.partial_paintings() == []
    run_config = json.loads((out / "runs" / "run-1" / "config.json").read_text())
    assert run_config["config_hash"] == report["fixed-a"]["config_hash"]
    assert run_config["settings"]["tune"]["stage2"]["steps"] == 2
    marker_bytes = _markers(out)

    # -- rerun, same settings: nothing tuned again, the deterministic failure is skipped with its reason
    s2 = run(replace(config, run_id="run-2"))
    assert (s2.total, s2.done, s2.skipped, s2.failed) == (5, 0, 4, 1)
    assert s2.failures == {"manifest": 1} and not s2.ok
    report2 = _report(s2)
    assert set(report2) == {*GOOD, "empty-image", "bad-yaw"}          # one row per manifest row
    assert all(report2[pid]["status"] == "skipped" and report2[pid]["error_kind"] is None for pid in GOOD)
    assert report2["empty-image"]["status"] == "skipped" and report2["empty-image"]["error_kind"] == "image"
    assert report2["empty-image"]["message"] == bad["message"]
    assert count_attempts(store, "run-2") == {}
    assert _markers(out) == marker_bytes     # markers untouched

    # -- --retry-failed: the failed painting is tried again (and fails again), committed ones still skipped
    s3 = run(replace(config, run_id="run-3", retry_failed=True))
    assert (s3.done, s3.skipped, s3.failed) == (0, 3, 2)
    report3 = _report(s3)
    assert report3["empty-image"]["status"] == "failed" and report3["empty-image"]["attempts"] == 1
    assert count_attempts(store, "run-3") == {"empty-image": 1}

    # -- a setting that changes results (stage-2 steps): new config hash, every good painting re-tuned
    s4 = run(replace(config, run_id="run-4", settings=tiny_settings(stage2=3)))
    report4 = _report(s4)
    # earlier failures are remembered per config hash too, so the bad image is tried again under the new one
    assert (s4.done, s4.skipped, s4.failed) == (3, 0, 2)
    assert report4["empty-image"]["status"] == "failed" and report4["empty-image"]["attempts"] == 1
    assert report4["fixed-a"]["config_hash"] != report["fixed-a"]["config_hash"]
    assert {pid for pid, r in report4.items() if r["status"] == "done"} == set(GOOD)
    new = store.committed(report4["fixed-a"]["config_hash"])
    assert set(new) == set(GOOD) and all(m["run_id"] == "run-4" for m in new.values())
    assert store.committed(report["fixed-a"]["config_hash"]) == {}
    assert len(_markers(out)) == 3 and all(store.verify(pid) == [] for pid in GOOD)


SECRET = "artmator-FAKE-SECRET-5b7c2e91"
KEY_ID = "artmator-fake-key-id-77"
TOKEN = "artmator-FAKE-TOKEN-0d4a"


@pytest.mark.timeout(300)
def test_run_on_s3_commits_and_writes_no_credentials(ray_local, s3_endpoint, s3_bucket):
    """Manifest, images and outputs on a real S3 API (moto server); credentials only in storage options."""
    import s3fs

    options = {"key": KEY_ID, "secret": SECRET, "token": TOKEN, "client_kwargs": {"endpoint_url": s3_endpoint},
               "config_kwargs": {"connect_timeout": 2, "retries": {"max_attempts": 2}}}
    write_images(f"{s3_bucket}/catalog/img", {"a.png": 11, "b.png": 12}, options)
    write_images(f"{s3_bucket}/elsewhere", {"c.png": 13}, options)
    manifest = write_manifest(f"{s3_bucket}/catalog/manifest.parquet", [
        {"painting_id": "s3-a", "image_uri": "img/a.png", "yaw_deg": 0.0, "pitch_deg": 0.0},   # relative to manifest
        {"painting_id": "s3-b", "image_uri": "img/b.png", "yaw_deg": -10.0, "pitch_deg": 5.0},
        {"painting_id": "s3-c", "image_uri": f"{s3_bucket}/elsewhere/c.png", "yaw_deg": 10.0, "pitch_deg": 0.0},
    ], options)
    out = f"{s3_bucket}/out"
    config = RunConfig(manifest_uri=manifest, out_uri=out, settings=tiny_settings(), storage_options=options,
                       run_id="s3-run")
    summary = run(config)

    assert summary.ok and (summary.total, summary.done, summary.failed) == (3, 3, 0)
    store = OutputStore(out, options)
    assert set(store.committed()) == {"s3-a", "s3-b", "s3-c"}
    assert all(store.verify(pid) == [] for pid in ("s3-a", "s3-b", "s3-c"))
    report = store.read_reports().to_pylist()
    assert sorted((r["painting_id"], r["status"]) for r in report) == [("s3-a", "done"), ("s3-b", "done"),
                                                                        ("s3-c", "done")]
    assert {r["run_state"] for r in report} == {"finished"}
    assert all(r["attempts"] >= 1 for r in report)
    written = store.read_run_config("s3-run")
    assert written["storage_options"]["secret"] == "***" and written["storage_options"]["key"] == "***"
    assert written["storage_options"]["token"] == "***"

    fs = s3fs.S3FileSystem(**options)
    fs.invalidate_cache()
    objects = fs.find(s3_bucket)
    outputs = [p for p in objects if p.startswith(f"{s3_bucket[5:]}/out/")]
    assert any(p.endswith("/report.parquet") for p in outputs) and any(p.endswith("/config.json") for p in outputs)
    assert sum("/out/commits/" in p for p in outputs) == 3
    for path, data in fs.cat(objects).items():
        for secret in (SECRET, KEY_ID, TOKEN):
            assert secret.encode() not in data, f"{secret} written to s3://{path}"
    assert SECRET not in json.dumps(written) and SECRET not in json.dumps(report, default=str)

    # rerun against S3: every painting skipped, nothing re-attempted
    again = run(replace(config, run_id="s3-run-2"))
    assert again.ok and (again.done, again.skipped) == (0, 3)
    assert count_attempts(store, "s3-run-2") == {}
