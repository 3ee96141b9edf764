"""`artmator prepare` under faults, on real servers: an IIIF image server on 127.0.0.1 that stalls, answers 500,
drops connections or fails twice then recovers; and the moto S3 server stopped mid-prepare and restarted.
Every painting ends with one clear result (retried with backoff first), nothing hangs, and a rerun after the
outage writes one consistent manifest, report and review page."""
from __future__ import annotations

import json
import threading
import time

import pyarrow.parquet as pq
import pytest

from artmator.pipeline.errors import classify
from bench.soak_outage import FaultyImages, iiif_manifest, serve_faulty
from artmator.pipeline.prepare import PrepareConfig, prepare
from tests.pipeline.faces_fixtures import jpeg_bytes, whole_painting
from tests.reliability.conftest import moto  # noqa: F401 (fixture)

RUN_KEY = b"artmator.prepare_run"


@pytest.mark.timeout(420)
def test_iiif_server_that_stalls_errs_or_drops_gives_one_clear_error_per_painting(ray_local, tmp_path):
    server, base = serve_faulty(jpeg_bytes(whole_painting()))
    kinds = ["ok", "flaky", "stall", "err500", "drop"]
    (tmp_path / "manifest.json").write_text(json.dumps(iiif_manifest(base, kinds)))
    try:
        start = time.monotonic()
        summary = prepare(str(tmp_path / "manifest.json"), str(tmp_path / "out" / "faces.parquet"),
                          PrepareConfig(fetch_timeout_s=1.5), actors=1)
        seconds = time.monotonic() - start
    finally:
        server.shutdown()
        server.server_close()
    report = pq.read_table(summary.report_uri).to_pylist()
    by_kind = {r["image_uri"].split("/")[3]: r for r in report}        # .../<kind>/<i>.jpg
    assert len(report) == len(kinds) and sorted(by_kind) == sorted(kinds)          # one result per painting
    assert by_kind["ok"]["status"] == "ok" and by_kind["flaky"]["status"] == "ok"   # retried past two 500s
    assert {by_kind[k]["status"] for k in ("stall", "err500", "drop")} == {"storage"}
    assert "no answer within 1.5 s (the server stalled)" in by_kind["stall"]["message"]
    assert "the server answered HTTP 500" in by_kind["err500"]["message"]
    assert "the connection failed" in by_kind["drop"]["message"]
    for k in ("stall", "err500", "drop"):
        assert f"/{k}/" in by_kind[k]["message"]                                      # names the image
        asked = sum(n for path, n in FaultyImages.requests.items() if path.startswith(f"/{k}/"))
        assert asked >= 4, (k, asked)                                                  # retried with backoff
    assert summary.ok == 2 and len(pq.read_table(summary.manifest_uri)) == 2
    assert seconds < 300, seconds                                                      # bounded, never a hang


@pytest.mark.timeout(600)
def test_object_store_outage_during_prepare_then_a_rerun_writes_one_consistent_output(ray_local, moto, tmp_path):
    import s3fs

    options = moto.options
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("prep-bucket")
    n = 12
    image = jpeg_bytes(whole_painting())
    fs.pipe({f"prep-bucket/img/{i:02d}.jpg": image for i in range(n)})
    rows = "\n".join(f"s{i:02d},s3://prep-bucket/img/{i:02d}.jpg" for i in range(n))
    (tmp_path / "catalog.csv").write_text("painting_id,image_uri\n" + rows + "\n")
    out = "s3://prep-bucket/prep/faces.parquet"
    outcome: dict = {}

    def first():
        try:
            outcome["summary"] = prepare(str(tmp_path / "catalog.csv"), out, PrepareConfig(), options, actors=1)
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    thread = threading.Thread(target=first, daemon=True)
    thread.start()
    deadline = time.time() + 240
    while time.time() < deadline and thread.is_alive():
        fs.invalidate_cache()
        if [p for p in fs.find("prep-bucket/prep") if p.endswith(".jpg")]:
            break                                                  # the analysis is under way
        time.sleep(0.2)
    assert thread.is_alive(), f"prepare ended before the outage could start: {outcome}"
    moto.stop()                                                    # ---- the object store is gone
    time.sleep(8)
    moto.start_again()                                             # ---- back, same data
    thread.join(timeout=300)
    assert not thread.is_alive(), "prepare hangs after the object store came back"
    fs.invalidate_cache()
    if "error" in outcome:                                         # the outputs could not be written: one
        assert classify(outcome["error"])[0] == "storage", repr(outcome["error"])   # storage error, clear
        print(f"outage: the first prepare stopped with {classify(outcome['error'])[1][:200]}")
    else:
        report = pq.read_table(_key(outcome["summary"].report_uri), filesystem=fs).to_pylist()
        print("outage: the first prepare finished:", outcome["summary"].by_status)
        assert len(report) == n and {r["status"] for r in report} <= {"ok", "storage"}
        assert all("s3://prep-bucket/img/" in r["message"] for r in report if r["status"] == "storage")

    second = prepare(str(tmp_path / "catalog.csv"), out, PrepareConfig(), options, actors=1)
    assert second.ok == n and second.by_status == {"ok": n}
    fs.invalidate_cache()
    run_id = pq.read_schema(_key(out), filesystem=fs).metadata[RUN_KEY]
    assert pq.read_schema(_key(second.report_uri), filesystem=fs).metadata[RUN_KEY] == run_id
    page = fs.cat_file(_key(second.review_uri)).decode()
    assert f'content="{run_id.decode()}"' in page
    runs = {p.split("/")[3] for p in fs.find("prep-bucket/prep/faces.review")}
    assert runs == {run_id.decode(), "_claims"}                    # the earlier run's images are gone
    assert all(f"faces.review/{run_id.decode()}/" in src for src in _img_sources(page))


def _img_sources(page: str) -> list[str]:
    import re

    return re.findall(r'<img[^>]+src="([^"]+)"', page)


def _key(uri: str) -> str:
    return uri.removeprefix("s3://")
