"""`artmator prepare` under faults, on real servers: an IIIF image server on 127.0.0.1 that stalls, answers 500,
drops connections or fails twice then recovers; and the moto S3 server stopped mid-prepare and restarted.
Every painting ends with one clear result (retried with backoff first), nothing hangs, and a rerun after the
outage writes one consistent manifest, report and review page."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from artmator.pipeline.errors import classify
from artmator.pipeline.prepare import PrepareConfig, prepare
from tests.pipeline.faces_fixtures import jpeg_bytes, whole_painting
from tests.reliability.conftest import moto  # noqa: F401 (fixture)

RUN_KEY = b"artmator.prepare_run"


class _FaultyImages(BaseHTTPRequestHandler):
    """/ok/* answers; /stall/* never does; /err500/* is always 500; /drop/* closes the connection; /flaky/*
    is 500 twice, then answers. `requests` counts every request per path."""

    image = b""
    requests: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):
        with self.lock:
            n = self.requests[self.path] = self.requests.get(self.path, 0) + 1
        kind = self.path.split("/")[1]
        if kind == "stall":
            time.sleep(60)
            return
        if kind == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "err500" or (kind == "flaky" and n <= 2):
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.image if self.command == "GET" else b""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


def _iiif_manifest(base: str, kinds: list[str]) -> dict:
    canvases = []
    for i, kind in enumerate(kinds):
        cid = f"{base}/canvas/{kind}"
        canvases.append({"id": cid, "type": "Canvas", "width": 1100, "height": 900, "label": {"en": [kind]},
                         "items": [{"id": f"{cid}/page", "type": "AnnotationPage", "items": [{
                             "id": f"{cid}/anno", "type": "Annotation", "motivation": "painting", "target": cid,
                             "body": {"id": f"{base}/{kind}/{i}.jpg", "type": "Image", "format": "image/jpeg",
                                      "width": 1100, "height": 900}}]}]})
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{base}/manifest.json",
            "type": "Manifest", "label": {"en": ["Faults"]}, "items": canvases}


@pytest.mark.timeout(420)
def test_iiif_server_that_stalls_errs_or_drops_gives_one_clear_error_per_painting(ray_local, tmp_path):
    _FaultyImages.image = jpeg_bytes(whole_painting())
    _FaultyImages.requests = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FaultyImages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    kinds = ["ok", "flaky", "stall", "err500", "drop"]
    (tmp_path / "manifest.json").write_text(json.dumps(_iiif_manifest(base, kinds)))
    try:
        start = time.monotonic()
        summary = prepare(str(tmp_path / "manifest.json"), str(tmp_path / "out" / "faces.parquet"),
                          PrepareConfig(fetch_timeout_s=1.5), actors=1)
        seconds = time.monotonic() - start
    finally:
        server.shutdown()
        server.server_close()
    report = pq.read_table(summary.report_uri).to_pylist()
    by_kind = {r["image_uri"].split("/")[3]: r for r in report}
    assert len(report) == len(kinds) and sorted(by_kind) == sorted(kinds)          # one result per painting
    assert by_kind["ok"]["status"] == "ok" and by_kind["flaky"]["status"] == "ok"   # retried past two 500s
    assert {by_kind[k]["status"] for k in ("stall", "err500", "drop")} == {"storage"}
    assert "no answer within 1.5 s (the server stalled)" in by_kind["stall"]["message"]
    assert "the server answered HTTP 500" in by_kind["err500"]["message"]
    assert "the connection failed" in by_kind["drop"]["message"]
    for k in ("stall", "err500", "drop"):
        assert f"/{k}/" in by_kind[k]["message"]                                      # names the image
        asked = sum(n for path, n in _FaultyImages.requests.items() if path.startswith(f"/{k}/"))
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
