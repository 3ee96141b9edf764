"""OutputStore on a local folder, file://, memory:// and a real S3 API (moto server + s3fs): versioned commits,
markers written last, what a commit supersedes removed, every crash point between two writes safe."""
from __future__ import annotations

import json
import time
import uuid

import pyarrow as pa
import pytest

from artmator.pipeline import layout, storage
from artmator.pipeline.layout import Fingerprints
from artmator.pipeline.storage import (OutputStore, StoreError, atomic_write, file_digest, redact_config,
                                       redact_options, redact_text, redact_uri)

MARKER = {"run_id": "run-1", "config_hash": "cfg-a"}
FILES = {"delta.safetensors": b"\x00weights", "reference.png": b"png", "renders/turntable/000.png": b"frame0",
         "result.json": b"{}"}
BACKENDS = ["local", "file", "memory", pytest.param("s3", marks=pytest.mark.s3)]
FP1 = Fingerprints(*(f"{i:x}" * 16 for i in range(1, 6)))
FP2 = FP1._replace(render="f" * 16)


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
    """Every file under paintings/<pid>/, relative to it (version folders included)."""
    folder = store.painting_dir(pid)
    store.fs.invalidate_cache(folder)
    try:
        return sorted(p[len(folder) + 1:] for p in store.fs.find(folder))
    except FileNotFoundError:
        return []


def markers_of(store: OutputStore, pid: str) -> list[str]:
    folder = store.commit_dir(pid)
    store.fs.invalidate_cache(folder)
    try:
        return sorted(p.rsplit("/", 1)[1] for p in store.fs.find(folder))
    except FileNotFoundError:
        return []


@pytest.mark.timeout(60)
def test_commit_then_listing(store):
    written = store.commit("p1", FILES, MARKER, FP1)
    store.write_painting("p2", {"reference.png": b"other"}, {**MARKER, "config_hash": "cfg-b"})

    listed = store.committed()
    assert sorted(listed) == ["p1", "p2"]
    assert listed["p1"] == written
    assert written["painting_id"] == "p1" and written["run_id"] == "run-1" and written["committed_at"]
    version = written["version"]
    assert layout.version_order(version) == (1, version[-6:])
    assert written["files"]["renders/turntable/000.png"] == {"path": f"{version}/renders/turntable/000.png",
                                                              **file_digest(b"frame0")}
    assert set(written["files"]) == set(FILES) and written["fingerprints"] == FP1._asdict()
    assert sorted(store.committed("cfg-b")) == ["p2"]
    assert store.is_committed("p1") and store.is_committed("p1", "cfg-a") and not store.is_committed("p1", "cfg-b")
    assert not store.is_committed("p3")
    assert files_of(store, "p1") == sorted(f"{version}/{rel}" for rel in FILES)
    assert markers_of(store, "p1") == [layout.marker_name(version, FP1)]
    scan = store.scan()                                  # the listing alone gives every fingerprint
    assert scan.current["p1"].fingerprints == FP1 and scan.current["p1"].version == version
    assert store.read_file("p1", "reference.png") == b"png"
    assert store.verify("p1") == [] and store.partial_paintings() == []


@pytest.mark.timeout(60)
def test_empty_store_lists_nothing(store):
    assert store.committed() == {} and store.partial_paintings() == []
    assert store.read_reports().num_rows == 0 and store.scan().current == {}


@pytest.mark.timeout(60)
def test_new_version_refers_to_kept_files_and_removes_what_it_superseded(store):
    first = store.commit("p1", FILES, MARKER, FP1)
    old = store.read_commit("p1")
    keep = {rel: old.files[rel] for rel in ("delta.safetensors",)}
    renders = {"reference.png": b"png2", "renders/turntable/000.png": b"f0", "renders/turntable/001.png": b"f1",
               "result.json": b'{"v": 2}'}
    second = store.commit("p1", renders, {**MARKER, "run_id": "run-2"}, FP2, keep)
    v1, v2 = first["version"], second["version"]
    assert layout.version_order(v2)[0] == 2
    assert second["files"]["delta.safetensors"] == first["files"]["delta.safetensors"]   # still in v1's folder
    assert second["files"]["reference.png"]["path"] == f"{v2}/reference.png"
    assert files_of(store, "p1") == sorted([f"{v1}/delta.safetensors", *(f"{v2}/{rel}" for rel in renders)])
    assert markers_of(store, "p1") == [layout.marker_name(v2, FP2)]          # the old marker is gone
    assert store.read_file("p1", "delta.safetensors") == FILES["delta.safetensors"]
    assert store.verify("p1") == [] and store.scan().current["p1"].fingerprints == FP2

    third = store.commit("p1", {"result.json": b'{"v": 3}'}, {**MARKER, "run_id": "run-3"}, FP2,
                         {rel: e for rel, e in store.read_commit("p1").files.items() if rel != "result.json"})
    assert store.verify("p1") == [] and third["files"]["result.json"]["path"].startswith(third["version"])
    assert not any(f.startswith(f"{v2}/result.json") for f in files_of(store, "p1"))
    with pytest.raises(StoreError, match="earlier version"):
        store.commit("p1", {}, MARKER, FP1, {"x.png": layout.FileEntry("v999999-aaaaaa/x.png", 1, "0" * 64)})


@pytest.mark.timeout(60)
def test_attempt_that_crashed_before_its_marker_is_not_listed_and_is_cleaned(store):
    store.commit("p1", FILES, MARKER, FP1)
    crashed = f"{store.painting_dir('p1')}/v000002-abcdef"
    atomic_write(store.fs, f"{crashed}/renders/turntable/007.png", b"stale")
    atomic_write(store.fs, f"{store.painting_dir('p9')}/v000001-abcdef/delta.safetensors", b"stale")
    assert store.committed_ids() == {"p1"} and store.partial_paintings() == ["p9"]
    assert store.verify("p9") and any("not listed" in p for p in store.verify("p1"))

    written = store.commit("p1", {"reference.png": b"new"}, MARKER, FP1)
    assert layout.version_order(written["version"])[0] == 3           # past the crashed attempt's number
    assert files_of(store, "p1") == [f"{written['version']}/reference.png"]
    assert store.verify("p1") == []


@pytest.mark.timeout(60)
def test_marker_is_written_last(store, monkeypatch):
    order = []
    real = storage.atomic_write

    def recording(fs, path, data):
        order.append(path)
        real(fs, path, data)

    monkeypatch.setattr(storage, "atomic_write", recording)
    store.commit("p1", FILES, MARKER, FP1)
    assert order[-1].startswith(store.commit_dir("p1")) and len(order) == len(FILES) + 1
    assert all(p.startswith(store.painting_dir("p1") + "/") for p in order[:-1])


@pytest.mark.timeout(120)
def test_a_crash_between_any_two_writes_leaves_the_old_commit_or_the_new_one(store, monkeypatch):
    """Every write and removal of a re-commit is a crash point: before the marker the old commit is current and
    whole (its files readable and verified), after it the new one is; never a mix, never no commit."""
    store.commit("p1", FILES, MARKER, FP1)
    before = store.read_commit("p1")
    new_files = {"reference.png": b"new-ref", "renders/turntable/000.png": b"new0", "result.json": b'{"v": 2}'}
    keep = {"delta.safetensors": before.files["delta.safetensors"]}
    real_write, real_rm_file, real_rm = storage.atomic_write, store.fs.rm_file, store.fs.rm
    steps = len(new_files) + 1 + 2                      # files, marker, old marker removal, old folder removal
    for crash_at in range(steps):
        calls = []

        def counted(kind, fn):
            def call(*args, **kwargs):
                calls.append(kind)
                if len(calls) == crash_at + 1:
                    raise OSError(f"crash at step {crash_at} ({kind}, injected)")
                return fn(*args, **kwargs)
            return call

        monkeypatch.setattr(storage, "atomic_write", counted("write", real_write))
        monkeypatch.setattr(store.fs, "rm_file", counted("rm_file", real_rm_file))
        monkeypatch.setattr(store.fs, "rm", counted("rm", real_rm))
        current = store.read_commit("p1")
        with pytest.raises(OSError, match="injected"):
            store.commit("p1", new_files, {**MARKER, "run_id": f"crash-{crash_at}"}, FP2,
                         {"delta.safetensors": current.files["delta.safetensors"]})
        monkeypatch.undo()
        after = store.read_commit("p1")
        marker_written = crash_at >= len(new_files) + 1
        assert (after.doc["run_id"] == f"crash-{crash_at}") is marker_written, (crash_at, calls)
        assert after.fingerprints == (FP2 if marker_written else current.fingerprints)
        assert store.scan().current["p1"].version == after.version
        for rel in after.files:                                   # the current commit is whole
            layout.read_verified(store.fs, after, rel)
        # reset to a clean single commit for the next crash point
        store.commit("p1", FILES, MARKER, FP1)
    assert store.verify("p1") == [] and len(markers_of(store, "p1")) == 1


@pytest.mark.timeout(60)
def test_superseded_marker_left_by_a_crash_loses_to_the_newer_one(store):
    store.commit("p1", FILES, MARKER, FP1)
    old = markers_of(store, "p1")[0]
    old_doc = store.read_marker("p1")
    store.commit("p1", FILES, {**MARKER, "run_id": "run-2"}, FP2)
    # put the superseded marker back, as a crash after the new marker and before the removal would leave it
    store.fs.pipe_file(f"{store.commit_dir('p1')}/{old}", layout.marker_bytes(old_doc))
    assert len(markers_of(store, "p1")) == 2
    assert store.read_marker("p1")["run_id"] == "run-2" and store.scan().current["p1"].fingerprints == FP2
    assert len(store.scan().superseded) == 1


@pytest.mark.timeout(60)
def test_verify_detects_damage(store):
    store.commit("p1", FILES, MARKER, FP1)
    commit = store.read_commit("p1")
    store.fs.pipe_file(commit.path_of("reference.png"), b"pnG")  # same size, altered
    store.fs.pipe_file(commit.path_of("result.json"), b"{}\n")  # resized
    store.fs.rm_file(commit.path_of("delta.safetensors"))
    store.fs.pipe_file(f"{store.painting_dir('p1')}/{commit.version}/stray.txt", b"?")
    problems = store.verify("p1")
    assert len(problems) == 4, problems
    assert any("delta.safetensors: missing" in p for p in problems)
    assert any("reference.png: sha256 differs" in p for p in problems)
    assert any("result.json: 3 bytes, marker says 2" in p for p in problems)
    assert any("stray.txt: not listed" in p for p in problems)
    with pytest.raises(layout.IntegrityError):
        store.read_file("p1", "reference.png")


@pytest.mark.timeout(60)
def test_unreadable_or_foreign_markers_do_not_count(store):
    store.commit("p1", FILES, MARKER, FP1)
    store.commit("p2", FILES, MARKER, FP1)
    [name1] = markers_of(store, "p1")
    [name2] = markers_of(store, "p2")
    store.fs.pipe_file(f"{store.commit_dir('p1')}/{name1}", b"{not json")
    marker = store.read_marker("p2")
    store.fs.pipe_file(f"{store.commit_dir('p2')}/{name2}", json.dumps({**marker, "painting_id": "p9"}).encode())
    store.fs.pipe_file(f"{store.commit_dir('p2')}/notes.txt", b"not a marker")
    assert store.committed() == {}
    assert not store.is_committed("p1")
    marker["files"]["reference.png"]["path"] = "../p1/" + marker["files"]["reference.png"]["path"]
    store.fs.pipe_file(f"{store.commit_dir('p2')}/{name2}", json.dumps(marker).encode())
    assert store.committed() == {}                      # a marker pointing outside its painting is refused


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
    store.write_report("run-2", pa.table({"painting_id": ["b"], "status": ["ok"], "seconds": [1.5]}), "running")
    reports = store.read_reports().sort_by([("run_id", "ascending"), ("painting_id", "ascending")])
    assert reports.column("run_id").to_pylist() == ["run-1", "run-1", "run-2"]
    assert reports.column("seconds").to_pylist() == [None, None, 1.5]
    assert reports.column("run_state").to_pylist() == ["finished", "finished", "running"]
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
                                 "C:/x.png", "a\nb"])
def test_unsafe_relpaths_are_refused_before_anything_is_touched(tmp_path, rel):
    store = OutputStore(str(tmp_path / "out"))
    store.write_painting("p1", FILES, MARKER)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(StoreError):
        store.write_painting("p1", {"ok.png": b"x", rel: b"x"}, MARKER)
    assert store.verify("p1") == []  # the committed painting is untouched
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_marker_needs_a_run_and_its_own_painting(tmp_path):
    store = OutputStore(str(tmp_path / "out"))
    with pytest.raises(StoreError, match="run_id"):
        store.write_painting("p1", {"a.png": b"x"}, {"config_hash": "c"})
    with pytest.raises(StoreError, match="does not match"):
        store.write_painting("p1", {"a.png": b"x"}, {**MARKER, "painting_id": "p2"})
    with pytest.raises(StoreError, match="hex"):
        store.commit("p1", {"a.png": b"x"}, MARKER, FP1._replace(tune="not-hex"))
    assert store.partial_paintings() == [] and not (tmp_path / "out").exists()


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
def test_scan_is_one_listing_and_reads_no_marker_on_s3(s3_bucket, s3_options):
    store = OutputStore(f"{s3_bucket}/out", s3_options)
    n = 50
    objects = {}
    for i in range(n):
        pid, version = f"p{i:04d}", "v000001-abcdef"
        objects[f"{store.painting_dir(pid)}/{version}/reference.png"] = b"png"
        marker = {**MARKER, "painting_id": pid, "version": version, "committed_at": "2024-01-01T00:00:00+00:00",
                  "files": {"reference.png": {"path": f"{version}/reference.png", **file_digest(b"png")}}}
        objects[f"{store.commit_dir(pid)}/{layout.marker_name(version, FP1)}"] = json.dumps(marker).encode()
    objects[f"{store.painting_dir('partial')}/v000001-abcdef/reference.png"] = b"png"
    store.fs.pipe(objects)

    calls = []
    real = store.fs._call_s3

    async def counting(method, *args, **kwargs):
        calls.append(method)
        return await real(method, *args, **kwargs)

    store.fs._call_s3 = counting
    try:
        start = time.perf_counter()
        scan = store.scan()
        elapsed = time.perf_counter() - start
        assert len(scan.current) == n and "partial" not in scan.current
        assert calls == ["list_objects_v2"], calls                 # the skip decision reads no marker
        listed = store.committed()
    finally:
        del store.fs._call_s3
    assert len(listed) == n
    assert calls.count("get_object") == n
    print(f"scan of {n} paintings on moto: {elapsed:.3f} s")


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


@pytest.mark.timeout(60)
def test_a_commit_records_its_claim_and_a_lost_claim_leaves_nothing_behind(store):
    from artmator.pipeline.claims import ClaimLost, Claims

    claim = Claims.of_store(store, "run-1").take("p1", "tune")
    written = store.commit("p1", FILES, MARKER, FP1, claim=claim)
    assert written["claim"] == claim.record() and store.read_marker("p1")["claim"]["generation"] == 1
    before = files_of(store, "p1")
    newer = Claims.of_store(store, "run-1").take("p1", "tune")        # the same run's restarted attempt
    with pytest.raises(ClaimLost, match="taken over"):
        store.commit("p1", {"reference.png": b"late"}, MARKER, FP2, claim=claim)
    assert store.read_commit("p1").fingerprints == FP1 and files_of(store, "p1") == before
    assert store.verify("p1") == []                                    # no orphan files of the refused commit

    calls = []

    def lost_after_files():                                            # taken over while its files were written
        calls.append(1)
        if len(calls) == 2:
            raise ClaimLost("p1", "taken over (injected)")
        return None

    newer.check = lost_after_files
    with pytest.raises(ClaimLost, match="injected"):
        store.commit("p1", {"reference.png": b"new", "renders/turntable/000.png": b"f"}, MARKER, FP2, claim=newer)
    assert len(calls) == 2 and files_of(store, "p1") == before and store.verify("p1") == []
    del newer.check
    assert store.commit("p1", {"reference.png": b"new"}, MARKER, FP2, claim=newer)["claim"]["generation"] == 2
    newer.release()
    with pytest.raises(StoreError, match="computed by the store"):
        store.commit("p1", {}, {**MARKER, "claim": {}}, FP2)
