"""Catalogs in their real forms (CSV, Parquet, IIIF 3 and 2.1 Manifests and Collections) -> manifest rows.

IIIF fixtures (tests/fixtures/iiif) are served by a real HTTP server on 127.0.0.1; `{{BASE}}` in them becomes
the server's own address at serve time. Nothing here needs the internet.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artmator.pipeline.catalog import (Catalog, CatalogError, CatalogProblem, catalog_table, painting_id_from_canvas,
                              read_catalog)
from artmator.pipeline.manifest import MANIFEST_SCHEMA, split_manifest, validate_manifest
from artmator.pipeline.storage import painting_id_problem

IIIF = Path(__file__).resolve().parents[1] / "fixtures" / "iiif"
RIGHTS = "https://creativecommons.org/publicdomain/mark/1.0/"
FAST = {"timeout_s": 5.0, "connect_timeout_s": 2.0, "backoff_s": 0.01}


# ------------------------------------------------------------------------------------------- the HTTP server


class FixtureServer:
    """A ThreadingHTTPServer on 127.0.0.1:0 serving tests/fixtures/iiif with `{{BASE}}` templated in,
    plus misbehaving routes: /status/500, /html, /stall (answers only after `release`)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.headers: dict[str, list[dict[str, str]]] = {}
        self.release = threading.Event()
        self.documents: dict[str, bytes] = {}  # extra routes a test adds
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = urlsplit(self.path).path
                server.hits[path] += 1
                server.headers.setdefault(path, []).append(dict(self.headers))
                server.respond(self, path)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def respond(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        if path in self.documents:
            return self.send(handler, 200, "application/json", self.documents[path])
        if path == "/status/500":
            return self.send(handler, 500, "text/plain", b"internal error")
        if path == "/status/503-then-ok.json":
            if self.hits[path] < 3:
                return self.send(handler, 503, "text/plain", b"busy")
            path = "/v3/portrait.json"
        if path == "/html":
            return self.send(handler, 200, "text/html; charset=utf-8",
                             b"<!DOCTYPE html>\n<html><body><h1>Sign in</h1></body></html>")
        if path == "/stall":
            self.release.wait(20)
            return self.send(handler, 200, "application/json", b"{}")
        file = (IIIF / path.lstrip("/")).resolve()
        if IIIF in file.parents and file.is_file():
            body = file.read_text("utf-8").replace("{{BASE}}", self.base).encode("utf-8")
            return self.send(handler, 200, "application/ld+json", body)
        return self.send(handler, 404, "text/html", b"<html>Not Found</html>")

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)


@contextmanager
def serving() -> Iterator[FixtureServer]:
    """A started FixtureServer, shut down (and any stalled request released) on exit."""
    server = FixtureServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(5)


@pytest.fixture
def iiif_server() -> Iterator[FixtureServer]:
    with serving() as server:
        yield server


def rows_by_canvas(catalog: Catalog) -> dict[str, dict]:
    return {row["iiif_canvas"].rsplit("/iiif", 1)[-1]: row for row in catalog.rows}


def assert_valid(catalog: Catalog) -> None:
    table = catalog_table(catalog)
    assert validate_manifest(table) == []
    for name in MANIFEST_SCHEMA.names:
        assert table.schema.field(name).type == MANIFEST_SCHEMA.field(name).type
    assert all(painting_id_problem(row["painting_id"]) is None for row in catalog.rows)


# ------------------------------------------------------------------------------------------------ CSV, Parquet


def test_csv_catalog_parses_numbers_crops_expressions_and_resolves_relative_paths(tmp_path):
    folder = tmp_path / "museum"
    folder.mkdir()
    (folder / "export.txt").write_text(  # detected by content, not by extension
        "painting_id,image_uri,yaw_deg,pitch_deg,crop,title,date,rights,expressions,accession_number\n"
        f'NG6540,img/ng6540.jpg,12.5, -3 ,"10,20,300,310","Portrait, with a comma",1650,{RIGHTS},'
        '"[""happiness"", ""exp/smile.mat""]",1923.4\n'
        'NG6541,s3://museum/ng6541.tif,,,"{""x"": 1, ""y"": 2, ""w"": 3, ""h"": 4}",,,,happiness; neutral,\n'
        "\n"
        'NG6542,../shared/ng6542.png,,,"[5, 6, 7, 8]",,,,[],007\n'
        "NG6543,img/x.png,abc,1,,,,,,\n"
        'NG6544,img/y.png,,,"1,2,3",,,,,\n', encoding="utf-8")
    catalog = read_catalog(str(folder / "export.txt"))
    assert catalog.kind == "csv" and [r["painting_id"] for r in catalog.rows] == ["NG6540", "NG6541", "NG6542"]
    a, b, c = catalog.rows
    assert a["image_uri"] == str(folder / "img" / "ng6540.jpg") and a["yaw_deg"] == 12.5 and a["pitch_deg"] == -3.0
    assert a["crop"] == {"x": 10, "y": 20, "w": 300, "h": 310} and a["title"] == "Portrait, with a comma"
    assert a["expressions"] == ["happiness", str(folder / "exp" / "smile.mat")]
    assert a["accession_number"] == "1923.4" and a["date"] == "1650"
    assert b["image_uri"] == "s3://museum/ng6541.tif" and b["yaw_deg"] is None and b["title"] is None
    assert b["crop"] == {"x": 1, "y": 2, "w": 3, "h": 4} and b["expressions"] == ["happiness", "neutral"]
    assert c["image_uri"] == str(tmp_path / "shared" / "ng6542.png") and c["crop"] == {"x": 5, "y": 6, "w": 7, "h": 8}
    assert c["expressions"] == [] and c["accession_number"] == "007"  # pass-through stays text
    bad_yaw, bad_crop = catalog.problems
    assert bad_yaw.painting_id == "NG6543" and "yaw_deg 'abc' is not a number" in bad_yaw.reason
    assert "line 6" in bad_yaw.source and bad_yaw.kind == "manifest"
    assert bad_crop.painting_id == "NG6544" and "must be 4 integers x, y, w, h" in bad_crop.reason
    assert_valid(catalog)
    assert catalog_table(catalog).schema.field("accession_number").type == pa.string()


def test_csv_with_semicolons_and_a_bom_and_bad_headers(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("\ufeffpainting_id;image_uri;title\nA1;a1.jpg;Eerste\n", encoding="utf-8")
    catalog = read_catalog(str(path))
    assert catalog.rows == [{"painting_id": "A1", "image_uri": str(tmp_path / "a1.jpg"), "title": "Eerste"}]
    path.write_text("Painting_ID,image_uri\nA1,a1.jpg\n")
    with pytest.raises(CatalogError, match=r"lacks \['painting_id'\].*case-sensitive"):
        read_catalog(str(path))
    path.write_text("painting_id,image_uri,title,title\nA1,a1.jpg,x,y\n")
    with pytest.raises(CatalogError, match="more than once"):
        read_catalog(str(path))
    path.write_bytes("painting_id,image_uri\nA1,Caf\xe9.jpg\n".encode("cp1252"))
    with pytest.raises(CatalogError, match="not UTF-8"):
        read_catalog(str(path))
    path.write_text('painting_id,image_uri\nA1,"a1.jpg\nA2,a2.jpg\n')
    with pytest.raises(CatalogError, match="not readable CSV.*unexpected end of data"):
        read_catalog(str(path))
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(str(tmp_path / "missing.csv"))


def test_parquet_catalog_is_detected_by_content_and_resolved(tmp_path):
    rows = [{"painting_id": "p0", "image_uri": "img/p0.png", "yaw_deg": 10, "pitch_deg": -5, "crop": [1, 2, 3, 4],
             "date": 1665, "on_view": True},
            {"painting_id": "p1", "image_uri": "s3://b/p1.png", "yaw_deg": None, "pitch_deg": None, "crop": None,
             "date": None, "on_view": False}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "catalog.bin")
    catalog = read_catalog(str(tmp_path / "catalog.bin"))
    assert catalog.kind == "parquet" and catalog.problems == []
    assert [r["image_uri"] for r in catalog.rows] == [str(tmp_path / "img" / "p0.png"), "s3://b/p1.png"]
    table = catalog_table(catalog)
    assert validate_manifest(table) == [] and table.column("on_view").to_pylist() == [True, False]
    assert table.column("date").to_pylist() == ["1665", None]
    (tmp_path / "folder").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "folder" / "part-0.parquet")
    assert read_catalog(str(tmp_path / "folder")).kind == "parquet"


@pytest.mark.timeout(60)
def test_csv_and_parquet_over_http_resolve_against_the_catalogs_url(iiif_server):
    iiif_server.documents["/museum/catalog.csv"] = b"painting_id,image_uri\nA1,img/a1.jpg\n"
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"painting_id": ["B1"], "image_uri": ["../img/b1.jpg"]}), buf)
    iiif_server.documents["/museum/export/manifest.parquet"] = buf.getvalue().to_pybytes()
    csv_catalog = read_catalog(iiif_server.url("museum/catalog.csv?sig=1"), **FAST)
    assert csv_catalog.kind == "csv" and csv_catalog.rows[0]["image_uri"] == iiif_server.url("museum/img/a1.jpg")
    parquet = read_catalog(iiif_server.url("museum/export/manifest.parquet"), **FAST)
    assert parquet.kind == "parquet" and parquet.rows[0]["image_uri"] == iiif_server.url("museum/img/b1.jpg")


# ---------------------------------------------------------------------------------------------------- IIIF 3


@pytest.mark.timeout(60)
def test_iiif3_manifest_maps_metadata_and_asks_for_bounded_images(iiif_server):
    url = iiif_server.url("v3/portrait.json")
    catalog = read_catalog(url, **FAST)
    assert catalog.kind == "iiif3" and catalog.problems == [] and catalog.documents == [url]
    rows = rows_by_canvas(catalog)
    assert list(rows) == [f"/SK-A-1234/canvas/p{i}" for i in (1, 2, 3, 4)]
    p1, p2, p3, p4 = rows.values()
    base = iiif_server.base
    assert p1["image_uri"] == f"{base}/image-service/SK-A-1234/full/!2048,2048/0/default.jpg"
    assert p2["image_uri"] == f"{base}/iiif2-service/SK-A-1234-irr/full/!2048,2048/0/default.jpg"  # Choice, API 2
    assert p3["image_uri"] == f"{base}/images/SK-A-1234-frame.jpg"  # no service: the image itself
    assert p4["image_uri"] == f"{base}/image-service/SK-A-1234-study/full/max/0/default.jpg"  # small already
    assert p1 == {"painting_id": p1["painting_id"], "image_uri": p1["image_uri"],
                  "title": "Portrait of a Young Woman", "artist": "Johannes Vermeer", "date": "c. 1665",
                  "rights": "http://creativecommons.org/publicdomain/mark/1.0/",
                  "credit_line": "Example Museum, Amsterdam",
                  "source_url": "https://www.example-museum.org/collection/SK-A-1234",
                  "iiif_manifest": url, "iiif_canvas": f"{base}/iiif/SK-A-1234/canvas/p1"}
    # Canvas-level values win; a label in any language (here "PAINTER", next to German) maps; values join.
    assert p2["title"] == "Portrait of a Young Woman (infrared reflectogram)"
    assert p2["artist"] == "Johannes Vermeer; workshop" and p2["date"] == "c. 1665"
    assert p2["credit_line"] == "Example Museum, conservation department"
    assert p3["title"] == "Frame detail"
    assert p1["painting_id"].startswith("SK-A-1234-p1-") and len(p1["painting_id"]) == len("SK-A-1234-p1-") + 8
    assert_valid(catalog)

    small = read_catalog(url, max_image_size=512, **FAST)
    assert rows_by_canvas(small)["/SK-A-1234/canvas/p4"]["image_uri"].endswith("/full/!512,512/0/default.jpg")


@pytest.mark.timeout(60)
def test_iiif3_collection_follows_nested_members_once_despite_cycles(iiif_server):
    catalog = read_catalog(iiif_server.url("v3/collection.json"), **FAST)
    assert catalog.kind == "iiif3"
    docs = [d.removeprefix(iiif_server.base) for d in catalog.documents]
    assert docs == ["/v3/collection.json", "/v3/portrait.json", "/v3/nested-collection.json", "/v2/manifest.json",
                    "/v3/mixed.json"]
    assert iiif_server.hits["/v3/collection.json"] == 1 and iiif_server.hits["/v3/portrait.json"] == 1
    manifests = [r["iiif_manifest"].removeprefix(iiif_server.base) for r in catalog.rows]
    assert manifests == ["/v3/portrait.json"] * 4 + ["/v2/manifest.json"] * 3 + ["/v3/mixed.json"] * 2
    withdrawn = [p for p in catalog.problems if p.kind == "catalog"]
    assert len(withdrawn) == 1 and "withdrawn.json" in withdrawn[0].source and "404" in withdrawn[0].reason
    assert {p.kind for p in catalog.problems} == {"catalog", "manifest"}
    assert_valid(catalog)


@pytest.mark.timeout(60)
def test_collection_depth_is_bounded(iiif_server):
    catalog = read_catalog(iiif_server.url("v3/collection.json"), max_depth=1, **FAST)
    too_deep = [p for p in catalog.problems if "levels below" in p.reason]
    assert [p.source.removeprefix(iiif_server.base) for p in too_deep] == [
        "/v2/manifest.json", "/v3/withdrawn.json", "/v3/mixed.json"]
    assert all(p.kind == "catalog" and "raise max_depth" in p.reason for p in too_deep)
    assert {r["iiif_manifest"] for r in catalog.rows} == {iiif_server.url("v3/portrait.json")}
    capped = read_catalog(iiif_server.url("v3/collection.json"), max_documents=2, **FAST)
    assert len(capped.documents) == 2 and "max_documents" in capped.problems[0].reason


# -------------------------------------------------------------------------------------------------- IIIF 2.1


@pytest.mark.timeout(60)
def test_iiif2_manifest_with_image_service_2_level0_and_choice(iiif_server):
    url = iiif_server.url("v2/manifest.json")
    catalog = read_catalog(url, **FAST)
    assert catalog.kind == "iiif2"
    c1, c2, c3 = rows_by_canvas(catalog).values()
    base = iiif_server.base
    assert c1["image_uri"] == f"{base}/iiif2/image/hals-1/full/!2048,2048/0/default.jpg"
    assert c2["image_uri"] == f"{base}/iiif2/static/hals-2/full/1600,/0/default.jpg"  # level 0: a listed size
    assert c3["image_uri"] == f"{base}/images/hals-xray.jpg"  # oa:Choice default
    assert c1["title"] == "Portrait of a Man"  # English picked from the @language list; "" canvas label ignored
    assert c1["artist"] == "Frans Hals; Workshop of Frans Hals" and c1["date"] == "1650"
    assert c1["rights"] == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert c1["credit_line"] == "Courtesy of the Example Museum"
    assert c1["source_url"] == "https://www.example-museum.org/object/OK-1892"
    assert c2["title"] == "Detail of the hands" and c2["rights"] == "http://rightsstatements.org/vocab/NoC-NC/1.0/"
    assert c2["credit_line"] == "Photo: Example Museum"
    assert c3["title"] == "Röntgenaufnahme"  # no English, no "none": the first language
    (empty,) = catalog.problems
    assert empty.source.endswith("/canvas/c4") and "no images" in empty.reason and empty.painting_id
    assert_valid(catalog)


@pytest.mark.timeout(60)
def test_iiif2_collection(iiif_server):
    catalog = read_catalog(iiif_server.url("v2/collection.json"), **FAST)
    assert catalog.kind == "iiif2" and len(catalog.documents) == 3
    second = catalog.rows[-1]
    assert second["title"] == "p. 1" and second["artist"] == "Unknown Dutch painter" and second["date"] == "c. 1640"
    assert second["rights"] is None  # "Public domain" is no http(s) URI
    assert second["source_url"] == "https://www.example-museum.org/object/OK-1893"
    assert_valid(catalog)


# ------------------------------------------------------------------------------------------ ids and hostility


@pytest.mark.timeout(60)
def test_ids_are_stable_safe_and_unique_and_hostile_values_stay_data(iiif_server):
    url = iiif_server.url("v3/hostile.json")
    first, second = read_catalog(url, **FAST), read_catalog(url, **FAST)
    ids = [r["painting_id"] for r in first.rows]
    assert ids == [r["painting_id"] for r in second.rows]
    assert all(painting_id_problem(i) is None for i in ids)
    assert len({i.lower() for i in ids}) == len(ids)
    passwd, dup1, dup2, upper, unicode_id, dots = first.rows
    assert passwd["painting_id"].startswith("etc-passwd-") and "/" not in passwd["painting_id"]
    assert dup2["painting_id"] == dup1["painting_id"] + "-2"  # the same canvas id twice, document order
    assert dup1["iiif_canvas"] == dup2["iiif_canvas"] and dup2["image_uri"].endswith("hostile-3.jpg")
    assert upper["painting_id"].lower() != dup1["painting_id"].lower()
    assert unicode_id["painting_id"].startswith("Meisje-met-de-parel-Madchen-frag-")
    assert dots["painting_id"].startswith("canvas-")
    # Values are data: HTML and template syntax kept verbatim, neither stripped nor unescaped nor evaluated.
    assert passwd["title"] == "<img src=x onerror=alert(1)>" and dup1["title"] == "<script>alert(1)</script>"
    assert dup1["artist"] == '<b>Rembrandt</b> &amp; <a href="javascript:alert(1)">pupils</a>'
    assert dup1["date"] == "{{7*7}} ${7*7} __import__('os')"
    assert dup1["rights"] is None and dup1["source_url"] is None  # javascript: and data: links dropped
    (local,) = first.problems
    assert "not an http(s) URL" in local.reason and local.source.endswith("/canvas/local-file")
    assert_valid(first)


def test_painting_id_from_canvas_examples():
    pid = painting_id_from_canvas("https://iiif.example.org/iiif/SK-A-1234/canvas/p1")
    assert pid.startswith("SK-A-1234-p1-") and pid == painting_id_from_canvas(
        "https://iiif.example.org/iiif/SK-A-1234/canvas/p1")
    assert pid != painting_id_from_canvas("https://other.example.org/iiif/SK-A-1234/canvas/p1")
    for hostile in ("../../etc/passwd", "/", "", ".", "..", "C:\\Windows\\system32", "a\x00b", " ", "x" * 1000,
                    "https://h/" + "é" * 300, "https://h/manifest.json#canvas-1", "urn:uuid:1234"):
        assert painting_id_problem(painting_id_from_canvas(hostile)) is None, hostile


# ---------------------------------------------------------------------------------------- per-canvas problems


@pytest.mark.timeout(60)
def test_bad_canvases_are_problems_and_the_others_go_on(iiif_server):
    catalog = read_catalog(iiif_server.url("v3/mixed.json"), **FAST)
    assert [r["title"] for r in catalog.rows] == ["Portrait of an Old Man", "Portrait of an Old Woman"]
    reasons = {p.source.rsplit("/", 1)[-1]: p for p in catalog.problems}
    assert set(reasons) == {"blank", "video", "mixed.json canvas 3", "commenting-only"}
    assert "items are empty" in reasons["blank"].reason
    assert "paints Video, not an Image" in reasons["video"].reason
    assert "has no id" in reasons["mixed.json canvas 3"].reason and reasons["mixed.json canvas 3"].painting_id is None
    assert "no painting annotation" in reasons["commenting-only"].reason
    assert all(p.kind == "manifest" for p in catalog.problems)
    assert all(isinstance(p, CatalogProblem) and str(p) for p in catalog.problems)
    assert_valid(catalog)
    tasks, problems = split_manifest(catalog_table(catalog))
    assert problems == [] and [t.extra["iiif_canvas"].rsplit("/", 1)[-1] for t in tasks] == ["good", "good-2"]


# ------------------------------------------------------------------------------------- whole-catalog errors


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path,expected", [
    ("v3/missing.json", r"HTTP 404"),
    ("html", r"returned HTML \(text/html; charset=utf-8\), not a catalog"),
    ("not-iiif.json", r"JSON but not IIIF"),
    ("v3/empty.json", r"IIIF 3 Manifest has no Canvases \(items is missing or empty\)"),
], ids=["404", "html", "not-iiif", "no-items"])
def test_unusable_catalogs_raise_naming_the_url(iiif_server, path, expected):
    url = iiif_server.url(path)
    with pytest.raises(CatalogError, match=expected) as info:
        read_catalog(url, **FAST)
    assert url in str(info.value)
    assert iiif_server.hits["/" + path] == 1  # not retried


@pytest.mark.timeout(60)
def test_server_errors_are_retried_then_reported(iiif_server):
    url = iiif_server.url("status/500")
    with pytest.raises(CatalogError, match=r"HTTP 500 Internal Server Error after 3 tries") as info:
        read_catalog(url, **FAST)
    assert url in str(info.value) and iiif_server.hits["/status/500"] == 3
    recovered = read_catalog(iiif_server.url("status/503-then-ok.json"), **FAST)
    assert len(recovered.rows) == 4 and iiif_server.hits["/status/503-then-ok.json"] == 3


@pytest.mark.timeout(60)
def test_connection_refused_is_retried_then_reported():
    url = f"http://127.0.0.1:{closed_port()}/manifest.json"
    with pytest.raises(CatalogError, match="connection failed.*after 2 tries") as info:
        read_catalog(url, tries=2, **FAST)
    assert url in str(info.value)


@pytest.mark.timeout(60)
def test_a_stalling_server_times_out(iiif_server):
    url = iiif_server.url("stall")
    start = time.monotonic()
    with pytest.raises(CatalogError, match=r"no complete answer within 0.5 s") as info:
        read_catalog(url, timeout_s=0.5, connect_timeout_s=0.5, backoff_s=0.01)
    assert time.monotonic() - start < 5 and url in str(info.value)


@pytest.mark.timeout(60)
def test_documents_over_the_size_bound_are_refused(iiif_server, tmp_path):
    url = iiif_server.url("v3/portrait.json")
    with pytest.raises(CatalogError, match="larger than 1000 bytes") as info:
        read_catalog(url, max_bytes=1000, **FAST)
    assert url in str(info.value)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"padding": "x" * 5000}))
    with pytest.raises(CatalogError, match="larger than 1000 bytes"):
        read_catalog(str(big), max_bytes=1000)


@pytest.mark.timeout(60)
def test_a_local_collection_may_list_http_manifests(iiif_server, tmp_path):
    collection = {"@context": "http://iiif.io/api/presentation/3/context.json", "type": "Collection",
                  "id": "https://example.org/collection", "items": [
                      {"id": iiif_server.url("v2/second.json"), "type": "Manifest"},
                      {"id": iiif_server.url("v3/portrait.json"), "type": "Manifest"}]}
    (tmp_path / "collection.json").write_text(json.dumps(collection))
    catalog = read_catalog(str(tmp_path / "collection.json"), **FAST)
    assert catalog.kind == "iiif3" and len(catalog.rows) == 1 + 4 and catalog.problems == []


@pytest.mark.timeout(60)
def test_storage_options_are_sent_only_to_the_catalogs_own_host(iiif_server):
    secret = {"headers": {"Authorization": "Bearer museum-token"}}
    read_catalog(iiif_server.url("v2/collection.json"), secret, **FAST)
    assert [h.get("Authorization") for h in iiif_server.headers["/v2/second.json"]] == ["Bearer museum-token"]
    with serving() as partner:  # another origin, whose collection lists a manifest of the first server
        partner.documents["/collection.json"] = json.dumps({
            "@context": "http://iiif.io/api/presentation/3/context.json", "type": "Collection",
            "id": partner.url("collection.json"),
            "items": [{"id": iiif_server.url("v3/portrait.json"), "type": "Manifest"}]}).encode()
        catalog = read_catalog(partner.url("collection.json"), secret, **FAST)
    assert len(catalog.rows) == 4
    assert partner.headers["/collection.json"][0].get("Authorization") == "Bearer museum-token"
    assert "Authorization" not in iiif_server.headers["/v3/portrait.json"][0]
