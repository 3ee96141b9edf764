"""OutputStore on a local folder, file://, memory:// and a real S3 API (moto server + s3fs)."""
from __future__ import annotations

import json
import time
import uuid

import pyarrow as pa
import pytest

from artmator.pipeline import storage
from artmator.pipeline.storage import (MARKER_NAME, OutputStore, StoreError, atomic_write, file_digest, redact_config,
                              redact_options, redact_text, redact_uri)

MARKER = {"run_id": "run-1", "config_hash": "cfg-a"}
FILES = {"delta.safetensors": b"\x00weights", "reference.png": b"png", "renders/turntable/000.png": b"frame0",
         "result.json": b"{}"}
BACKENDS = ["local", "file", "memory", pytest.param("s3", marks=pytest.mark.s3)]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path) -> OutputStore:
    kind = request.param
    if kind == "local":
        return OutputStore(str(tmp_path / "out"))
    if kind == "file":
        return OutputStore(f"file://{tmp_path}/out")
    if kind == "memory":
        return OutputStore(f"memory://{uuid.uuid4().hex}/out")
    bucket = request.getfixturevalue("s3_bucket")
    return OutputStore(f"{bucket}/out", request.getfixturevalue("s3_options"))


def files_of(store: OutputStore, pid: str) -> list[str]:
    folder = store.painting_dir(pid)
    store.fs.invalidate_cache(folder)
    return sorted(p[len(folder) + 1:] for p in store.fs.find(folder))


@pytest.mark.timeout(60)
def test_commit_then_listing(store):
    written = store.write_painting("p1", FILES, MARKER)
    store.write_painting("p2", {"reference.png": b"other"}, {**MARKER, "config_hash": "cfg-b"})

    listed = store.committed()
    assert sorted(listed) == ["p1", "p2"]
    assert listed["p1"] == written
    assert written["painting_id"] == "p1" and written["run_id"] == "run-1" and written["committed_at"]
    assert written["files"]["renders/turntable/000.png"] == file_digest(b"frame0")
    assert set(written["files"]) == set(FILES)
    assert sorted(store.committed("cfg-b")) == ["p2"]
    assert store.is_committed("p1") and store.is_committed("p1", "cfg-a") and not store.is_committed("p1", "cfg-b")
    assert not store.is_committed("p3")
    assert files_of(store, "p1") == sorted([*FILES, MARKER_NAME])
    assert store.verify("p1") == [] and store.partial_paintings() == []


@pytest.mark.timeout(60)
def test_empty_store_lists_nothing(store):
    assert store.committed() == {} and store.partial_paintings() == []
    assert store.read_reports().num_rows == 0


@pytest.mark.timeout(60)
def test_partial_painting_is_not_listed_and_is_cleaned_on_rewrite(store):
    folder = store.painting_dir("p1")
    atomic_write(store.fs, f"{folder}/renders/turntable/007.png", b"stale")
    atomic_write(store.fs, f"{folder}/delta.safetensors", b"stale")
    assert store.committed() == {} and store.partial_paintings() == ["p1"]
    assert store.verify("p1")  # not committed

    store.write_painting("p1", {"reference.png": b"new"}, MARKER)
    assert files_of(store, "p1") == [MARKER_NAME, "reference.png"]
    assert store.partial_paintings() == [] and list(store.committed()) == ["p1"]

    store.write_painting("p1", {"result.json": b"{}"}, MARKER)  # a rewrite drops the earlier commit's files
    assert files_of(store, "p1") == [MARKER_NAME, "result.json"]


@pytest.mark.timeout(60)
def test_marker_is_written_last(store, monkeypatch):
    order = []
    real = storage.atomic_write

    def recording(fs, path, data):
        order.append(path.rsplit("/", 1)[1])
        real(fs, path, data)

    monkeypatch.setattr(storage, "atomic_write", recording)
    store.write_painting("p1", FILES, MARKER)
    assert order[-1] == MARKER_NAME and len(order) == len(FILES) + 1


@pytest.mark.timeout(60)
def test_failure_before_marker_leaves_painting_uncommitted(store, monkeypatch):
    store.write_painting("p1", FILES, MARKER)  # an earlier successful attempt
    real = storage.atomic_write
    calls = []

    def failing(fs, path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        real(fs, path, data)

    monkeypatch.setattr(storage, "atomic_write", failing)
    with pytest.raises(OSError, match="injected"):
        store.write_painting("p1", {**FILES, "result.json": b'{"v": 2}'}, MARKER)
    assert store.committed() == {} and not store.is_committed("p1")
    assert store.partial_paintings() == ["p1"]

    monkeypatch.setattr(storage, "atomic_write", real)
    store.write_painting("p1", FILES, MARKER)
    assert store.verify("p1") == [] and store.partial_paintings() == []


@pytest.mark.timeout(60)
def test_verify_detects_damage(store):
    store.write_painting("p1", FILES, MARKER)
    folder = store.painting_dir("p1")
    store.fs.pipe_file(f"{folder}/reference.png", b"pnG")  # same size, altered
    store.fs.pipe_file(f"{folder}/result.json", b"{}\n")  # resized
    store.fs.rm_file(f"{folder}/delta.safetensors")
    store.fs.pipe_file(f"{folder}/stray.txt", b"?")
    problems = store.verify("p1")
    assert len(problems) == 4, problems
    assert any("delta.safetensors: missing" in p for p in problems)
    assert any("reference.png: sha256 differs" in p for p in problems)
    assert any("result.json: 3 bytes, marker says 2" in p for p in problems)
    assert any("stray.txt: not listed" in p for p in problems)


@pytest.mark.timeout(60)
def test_unreadable_or_foreign_markers_do_not_count(store):
    store.write_painting("p1", FILES, MARKER)
    store.write_painting("p2", FILES, MARKER)
    store.fs.pipe_file(store.marker_path("p1"), b"{not json")
    marker = json.loads(store.fs.cat_file(store.marker_path("p2")))
    store.fs.pipe_file(store.marker_path("p2"), json.dumps({**marker, "painting_id": "p9"}).encode())
    assert store.committed() == {}
    assert not store.is_committed("p1")


@pytest.mark.timeout(60)
def test_run_config_and_reports(store):
    config = {"manifest": "https://museum.example/m.parquet?X-Amz-Signature=deadbeef",
              "storage_options": {"key": "AKIAIOSFODNN7EXAMPLE", "secret": "wJalrXUtnFEMI", "anon": False},
              "steps": 300}
    written = store.write_run_config("run-1", config)
    raw = store.fs.cat_file(f"{store.run_dir('run-1')}/config.json").decode()
    for secret in ("deadbeef", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI"):
        assert secret not in raw
    assert json.loads(raw) == written == store.read_run_config("run-1")
    assert written["steps"] == 300 and written["storage_options"]["anon"] is False

    store.write_report("run-1", pa.table({"painting_id": ["a", "b"], "status": ["ok", "failed"]}))
    store.write_report("run-2", pa.table({"painting_id": ["b"], "status": ["ok"], "seconds": [1.5]}))
    reports = store.read_reports().sort_by([("run_id", "ascending"), ("painting_id", "ascending")])
    assert reports.column("run_id").to_pylist() == ["run-1", "run-1", "run-2"]
    assert reports.column("seconds").to_pylist() == [None, None, 1.5]
    with pytest.raises(StoreError):
        store.write_report("../run", pa.table({"a": [1]}))


UNSAFE_IDS = ["../x", "a/b", "/abs", "a\x00b", ".", "..", "", "a\\b", "C:\\x", " lead", ".hidden", "x" * 129,
              "é", None]


@pytest.mark.parametrize("pid", UNSAFE_IDS)
def test_unsafe_ids_are_refused(tmp_path, pid):
    store = OutputStore(str(tmp_path / "out"))
    with pytest.raises(StoreError):
        store.painting_dir(pid)
    with pytest.raises(StoreError):
        store.write_painting(pid, {"a.png": b"x"}, MARKER)
    with pytest.raises(StoreError):
        store.write_run_config(pid, {})
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize("rel", ["../x.png", "/abs.png", "a\\b.png", "a//b.png", "./a.png", "a/../../b", "",
                                 MARKER_NAME, "C:/x.png", "a\nb"])
def test_unsafe_relpaths_are_refused_before_anything_is_touched(tmp_path, rel):
    store = OutputStore(str(tmp_path / "out"))
    store.write_painting("p1", FILES, MARKER)
    with pytest.raises(StoreError):
        store.write_painting("p1", {"ok.png": b"x", rel: b"x"}, MARKER)
    assert store.verify("p1") == []  # the committed painting is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_marker_needs_run_and_config(tmp_path):
    store = OutputStore(str(tmp_path / "out"))
    with pytest.raises(StoreError, match="config_hash"):
        store.write_painting("p1", {"a.png": b"x"}, {"run_id": "r"})
    with pytest.raises(StoreError, match="does not match"):
        store.write_painting("p1", {"a.png": b"x"}, {**MARKER, "painting_id": "p2"})
    assert store.partial_paintings() == []


def test_atomic_write_on_local_disk_never_leaves_torn_or_temp_files(tmp_path, monkeypatch):
    store = OutputStore(str(tmp_path))
    path = f"{store.root}/a/b.bin"
    atomic_write(store.fs, path, b"old")

    def broken_mv(*args, **kwargs):
        raise OSError("crash during rename (injected)")

    monkeypatch.setattr(store.fs, "mv", broken_mv)
    with pytest.raises(OSError):
        atomic_write(store.fs, path, b"new")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_committed_uses_one_listing_on_s3(s3_bucket, s3_options):
    store = OutputStore(f"{s3_bucket}/out", s3_options)
    n = 50
    objects = {}
    for i in range(n):
        folder = store.painting_dir(f"p{i:04d}")
        objects[f"{folder}/reference.png"] = b"png"
        marker = {**MARKER, "painting_id": f"p{i:04d}", "committed_at": "2024-01-01T00:00:00+00:00",
                  "files": {"reference.png": file_digest(b"png")}}
        objects[f"{folder}/{MARKER_NAME}"] = json.dumps(marker).encode()
    objects[f"{store.painting_dir('partial')}/reference.png"] = b"png"
    store.fs.pipe(objects)

    calls = []
    real = store.fs._call_s3

    async def counting(method, *args, **kwargs):
        calls.append(method)
        return await real(method, *args, **kwargs)

    store.fs._call_s3 = counting
    try:
        start = time.perf_counter()
        listed = store.committed()
        elapsed = time.perf_counter() - start
    finally:
        del store.fs._call_s3
    assert len(listed) == n and "partial" not in listed
    assert calls.count("list_objects_v2") == 1, calls
    assert calls.count("get_object") == n
    print(f"committed() of {n} paintings on moto: {elapsed:.3f} s")


PRESIGNED = ("https://museum-bucket.s3.eu-west-1.amazonaws.com/images/p1.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240101%2Feu-west-1%2Fs3%2Faws4_request"
             "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
             "&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")


def test_redact_presigned_url_and_userinfo():
    red = redact_uri(PRESIGNED)
    assert red == "https://museum-bucket.s3.eu-west-1.amazonaws.com/images/p1.jpg?<redacted>"
    assert redact_uri("https://alice:hunter2@host:8443/x.png#frag") == "https://<redacted>@host:8443/x.png#<redacted>"
    for unchanged in ("s3://bucket/out/paintings", "/data/out", "relative/dir", "memory://x/y"):
        assert redact_uri(unchanged) == unchanged
    text = redact_text(f"GET {PRESIGNED} failed: 403 (key AKIAIOSFODNN7EXAMPLE)")
    assert "Signature" not in text and "AKIA" not in text and "images/p1.jpg" in text


def test_redact_options_masks_secrets_without_mutating():
    options = {"key": "AKIAIOSFODNN7EXAMPLE", "secret": "wJalrXUtnFEMI/K7MDENG", "token": "FwoGZXIvYXdzE",
               "anon": False, "client_kwargs": {"endpoint_url": "https://u:p@minio.local:9000", "region_name": "x"},
               "account_key": "abc", "sas_token": "sv=2020&sig=abc", "password": "", "profile": "museum"}
    red = redact_options(options)
    assert red["key"] == red["secret"] == red["token"] == red["account_key"] == red["sas_token"] == "***"
    assert red["anon"] is False and red["profile"] == "museum" and red["password"] == ""
    assert red["client_kwargs"] == {"endpoint_url": "https://<redacted>@minio.local:9000", "region_name": "x"}
    assert options["key"] == "AKIAIOSFODNN7EXAMPLE"  # the caller's dict is untouched
    assert redact_options(None) == {}
    assert redact_config([{"secret": 1}, "s3://b/k?versionId=3"]) == [{"secret": "***"}, "s3://b/k?<redacted>"]


def test_store_repr_and_uri_are_redacted(tmp_path):
    store = OutputStore(f"file://{tmp_path}/out?token=abc")
    assert "abc" not in repr(store) and "abc" not in store.uri
    with pytest.raises(StoreError):
        OutputStore("  ")
