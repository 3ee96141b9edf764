"""Claims with leases on real files and a real S3 API (moto server + s3fs): the conditional create lets exactly
one of many racing threads or processes win, renewals keep a lease live, an expired / dead / same-run claim is
taken over by creating the next generation, and a holder that was taken over cannot pass `check`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pytest

from artmator.pipeline import layout
from artmator.pipeline.claims import (Claimed, ClaimLost, Claims, ClaimsUnsupported, atomic_create)

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["local", "memory", pytest.param("s3", marks=pytest.mark.s3)]


def _folder(kind: str, request, tmp_path) -> tuple[str, dict]:
    """(claims folder URI, storage options) of a fresh backend."""
    if kind == "local":
        return str(tmp_path / "claims"), {}
    if kind == "memory":
        return f"memory://{uuid.uuid4().hex}/claims", {}
    bucket = request.getfixturevalue("s3_bucket")
    return f"{bucket}/claims", request.getfixturevalue("s3_options")


def _claims(uri: str, options: dict, run_id: str, **kwargs) -> Claims:
    fs, folder = fsspec.core.url_to_fs(uri, **options)
    return Claims(fs, folder, run_id, **kwargs)


def _names(claims: Claims, subject: str) -> list[str]:
    folder = layout.claim_dir(claims.folder, subject)
    claims.fs.invalidate_cache(folder)
    try:
        return sorted(p.rsplit("/", 1)[1] for p in claims.fs.find(folder))
    except FileNotFoundError:
        return []


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> tuple[str, dict]:
    return _folder(request.param, request, tmp_path)


@pytest.mark.timeout(60)
def test_atomic_create_refuses_a_second_create_and_keeps_the_first(backend):
    uri, options = backend
    fs, folder = fsspec.core.url_to_fs(uri, **options)
    atomic_create(fs, f"{folder}/x/g.json", b"first")
    with pytest.raises(FileExistsError):
        atomic_create(fs, f"{folder}/x/g.json", b"second")
    assert fs.cat_file(f"{folder}/x/g.json") == b"first"
    assert [p.rsplit("/", 1)[1] for p in fs.find(folder)] == ["g.json"]      # no temp file left behind


@pytest.mark.timeout(120)
def test_racing_threads_exactly_one_wins(backend):
    uri, options = backend
    n = 16
    barrier = threading.Barrier(n)
    won, refused, errors = [], [], []

    def racer(i: int) -> None:
        claims = _claims(uri, options, f"run-{i}", ttl_s=60)
        barrier.wait()
        try:
            won.append(claims.take("p1", "tune"))
        except Claimed as exc:
            refused.append(exc.holder)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(won) == 1 and len(refused) == n - 1
    winner = won[0]
    assert winner.generation == 1 and {h.run_id for h in refused} == {winner.owner.run_id}
    assert _names(winner.owner, "p1") == ["g000000000001.json"]
    winner.check()
    winner.release()
    assert _names(winner.owner, "p1") == ["g000000000001.released"]


def _race_processes(uri: str, options: dict, n: int) -> list[str]:
    start_at = time.time() + 4.0                          # every process imported and waiting by then
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.pipeline.claim_racer", json.dumps(
        {"uri": uri, "options": options, "run_id": f"proc-{i}", "subject": "p1", "start_at": start_at,
         "mode": "race", "hold_s": 3.0})], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(n)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err[-2000:]
        outs.append(out.strip())
    return outs


@pytest.mark.timeout(180)
def test_racing_processes_on_local_files_exactly_one_wins(tmp_path):
    outs = _race_processes(str(tmp_path / "claims"), {}, 6)
    assert sorted(outs) == ["claimed"] * 5 + ["won 1"], outs


@pytest.mark.s3
@pytest.mark.timeout(180)
def test_racing_processes_on_s3_exactly_one_wins(s3_bucket, s3_options):
    outs = _race_processes(f"{s3_bucket}/claims", s3_options, 6)
    assert sorted(outs) == ["claimed"] * 5 + ["won 1"], outs


@pytest.mark.timeout(60)
def test_released_claim_is_taken_at_once_and_generations_only_grow(backend):
    uri, options = backend
    a, b = _claims(uri, options, "run-a"), _claims(uri, options, "run-b")
    first = a.take("p1", "tune")
    with pytest.raises(Claimed, match="run run-a \\(tune\\)") as info:
        b.take("p1", "render")
    assert info.value.holder.run_id == "run-a" and info.value.holder.live()
    first.release()
    second = b.take("p1", "render")
    assert second.generation == 2
    assert _names(b, "p1") == ["g000000000002.json"]      # the superseded generation is removed
    with pytest.raises(ClaimLost, match="released"):
        first.check()
    assert second.record()["run_id"] == "run-b" and second.record()["generation"] == 2
    second.release()
    third = a.take("p1")
    assert third.generation == 3
    third.release()


@pytest.mark.timeout(60)
def test_renewal_keeps_a_claim_live_past_its_lease(backend):
    uri, options = backend
    holder = _claims(uri, options, "run-a", ttl_s=1.2, clock_skew_s=0.1)
    other = _claims(uri, options, "run-b", ttl_s=1.2, clock_skew_s=0.1)
    other.host = "another-host"                           # so only the lease, not the holder's pid, decides
    claim = holder.take("p1", "tune")
    first = other.holder("p1").expires_at
    time.sleep(3.5)                                        # ~3 leases: only renewals keep it live
    now = other.holder("p1")
    assert now.expires_at > first + 2.0 and now.live()
    with pytest.raises(Claimed):
        other.take("p1")
    claim.check()
    claim.release()
    after = other.take("p1")
    assert after.generation == 2
    after.release()


@pytest.mark.timeout(60)
def test_same_run_takes_over_and_fences_its_older_attempt(backend):
    uri, options = backend
    old = _claims(uri, options, "run-a").take("p1", "tune")   # an actor that Ray then restarted
    new = _claims(uri, options, "run-a").take("p1", "tune")
    assert new.generation == old.generation + 1
    with pytest.raises(ClaimLost, match="taken over"):
        old.check()
    new.check()
    old.release()                                          # a fenced claim's release touches nothing
    assert _names(new.owner, "p1") == ["g000000000002.json"]
    new.release()


def _holder_process(uri: str, options: dict, ttl_s: float, skew_s: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "tests.pipeline.claim_racer", json.dumps(
        {"uri": uri, "options": options, "run_id": "run-holder", "subject": "p1", "ttl_s": ttl_s,
         "skew_s": skew_s, "mode": "hold"})], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held 1", proc.stderr.read()
    return proc


@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
@pytest.mark.timeout(120)
def test_expired_claim_of_a_paused_holder_is_taken_over_and_the_holder_cannot_commit(kind, request, tmp_path):
    uri, options = _folder(kind, request, tmp_path)
    proc = _holder_process(uri, options, ttl_s=1.5, skew_s=0.3)
    try:
        taker = _claims(uri, options, "run-taker", ttl_s=30, clock_skew_s=0.3)
        with pytest.raises(Claimed):                          # live: renewed by the holder
            taker.take("p1")
        os.kill(proc.pid, signal.SIGSTOP)                     # alive but silent (a GC pause, a frozen node)
        deadline = time.time() + 30
        claim = None
        while claim is None and time.time() < deadline:
            try:
                claim = taker.take("p1", "tune")
            except Claimed:
                time.sleep(0.2)
        assert claim is not None and claim.generation == 2
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(1.0)                                       # its renewer wakes up: too late
        proc.stdin.write("check\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith("lost:")
        claim.check()
        assert taker.holder("p1").run_id == "run-taker"
        claim.release()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.timeout(60)
def test_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    uri = str(tmp_path / "claims")
    proc = _holder_process(uri, {}, ttl_s=600, skew_s=10)
    proc.stdin.write("exit\n")                                # dies holding the claim (no release)
    proc.stdin.flush()
    proc.wait(timeout=30)
    taker = _claims(uri, {}, "run-taker")
    stale = taker.holder("p1")
    assert stale.live() and stale.pid == proc.pid            # its lease still runs for ten minutes ...
    with taker.take("p1", "tune") as claim:                     # ... but its process is gone from this host
        assert claim.generation == 2


@pytest.mark.timeout(60)
def test_holders_lists_live_claims_from_one_listing(tmp_path):
    uri = str(tmp_path / "claims")
    a = _claims(uri, {}, "run-a")
    held = [a.take(pid, "tune") for pid in ("p1", "p2", "p3")]
    held[1].release()
    listed = {h.subject: h for h in a.holders()}
    assert sorted(listed) == ["p1", "p3"] and all(h.live() and h.run_id == "run-a" for h in listed.values())
    assert listed["p1"].purpose == "tune" and listed["p1"].generation == 1
    a.close()
    assert a.holders() == []


def test_filesystems_without_an_atomic_create_are_refused(tmp_path):
    fs = fsspec.filesystem("dir", path=str(tmp_path), fs=fsspec.filesystem("file"))
    claims = Claims(fs, "claims", "run-a")
    assert not claims.supported
    with pytest.raises(ClaimsUnsupported, match="atomic create"):
        claims.take("p1")
    with pytest.raises(layout.LayoutError):
        claims.take("../escape")
