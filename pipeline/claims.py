"""Claims with leases: one worker at a time per painting (or gallery site, or `prepare` output), across drivers,
clusters and hosts, with nothing but the output's own storage.

A subject's claim is a folder of generation objects (`pipeline.layout`: `g<generation>.json` held,
`g<generation>.released` released). To take a subject, a worker CREATES the next generation's object with an
atomic create — S3's conditional PUT (`If-None-Match: *`, which s3fs sends for `pipe_file(mode="create")`), an
exclusive hard link of a complete temp file on a local disk — so of any number of racing workers exactly one
succeeds and the others see the new holder. The object holds the holder's run id, host, pid and lease expiry;
the holder renews it (one background thread per process, every third of the lease) while it works, and
releases it when done (a `.released` object keeps the generation number, then the `.json` goes).

A claim whose lease ran out (driver or node dead), whose holder process is gone from this host, or that this
same run left behind (an actor Ray restarted) is taken over the same way — by creating the NEXT generation,
never by rewriting the old one — so a take-over is exactly as race-free as a first claim. Generation numbers
only grow (the highest object is never removed, only superseded), so a stale holder's late write can only
land on its own, lower generation.

Fencing: before a commit marker is written, `Claim.check` lists the subject: its generation must still be the
highest and its lease must have `margin_s` left by its own monotonic clock. A lease is counted from the START
of the renewal that set it, so a process paused past its lease cannot revive it. Other hosts judge a lease by
the expiry written in it and their own wall clock: hosts' clocks must agree within `CLOCK_SKEW_S`.

Filesystems without an atomic create (anything but local disks, S3 and fsspec's memory) cannot hold claims:
`Claims.supported` is False there and callers run without them (one driver per output).

Checked with the installed versions (s3fs/fsspec 2026.9, moto 5.2): s3fs's `pipe_file(mode="create")` sends
`If-None-Match: *` and turns S3's 412 into FileExistsError, and moto's server honours it; fsspec's generic
(and local) `mode="create"` is check-then-write, hence the hard link. Conditional deletes or replaces by ETag are
not needed: nothing here ever rewrites another worker's claim object.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import fsspec

from artmator.pipeline import layout
from artmator.pipeline.storage import atomic_write, is_local

log = logging.getLogger("artmator.claims")

DEFAULT_TTL_S = 120.0
"""Lease length: how long a claim stays live without renewal (a dead driver's paintings wait this long)."""
CLOCK_SKEW_S = 10.0
"""How far hosts' wall clocks may disagree; a lease counts as live this much past its written expiry."""
_RACE_ROUNDS = 16
_MEMORY_LOCK = threading.Lock()


class ClaimsUnsupported(RuntimeError):
    """The filesystem has no atomic create, so claims cannot be made safe on it."""


class Claimed(Exception):
    """Another worker holds a live claim on the subject."""

    def __init__(self, holder: "Holder"):
        super().__init__(f"claimed by {holder.describe()}")
        self.holder = holder


class ClaimLost(Exception):
    """This worker's claim expired or was taken over; it must not commit."""

    def __init__(self, subject: str, reason: str, holder: "Holder | None" = None):
        super().__init__(f"{subject}: claim lost ({reason})" + (f"; now held by {holder.describe()}" if holder else ""))
        self.subject, self.reason, self.holder = subject, reason, holder


# ------------------------------------------------------------------------------------------- atomic create

def _kind(fs: fsspec.AbstractFileSystem) -> str | None:
    if is_local(fs):
        return "local"
    module = type(fs).__module__
    if module.startswith("s3fs"):
        return "s3"
    if module.startswith("fsspec.implementations.memory"):
        return "memory"
    return None


def atomic_create(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Create `path` holding `data` if and only if it does not exist; FileExistsError otherwise. Readers never
    see it half-written. ClaimsUnsupported on filesystems that cannot do this atomically."""
    kind = _kind(fs)
    if kind == "s3":
        try:
            fs.pipe_file(path, data, mode="create")        # PutObject with If-None-Match: *
        except OSError as exc:
            # 412 PreconditionFailed is FileExistsError already; a 409 ConditionalRequestConflict means another
            # conditional write to the key was in flight: it lost the race just the same.
            if "ConditionalRequestConflict" in str(exc) or "409" in str(exc):
                raise FileExistsError(path) from exc
            raise
    elif kind == "local":
        # fsspec's local pipe_file(mode="create") checks, then writes (two steps): a hard link is one.
        target = fs._strip_protocol(path)
        parent, name = os.path.split(target)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, target)                            # EEXIST if the name exists: atomic
        finally:
            os.unlink(tmp)
    elif kind == "memory":
        with _MEMORY_LOCK:                                   # one process's memory: a lock makes it one step
            fs.pipe_file(path, data, mode="create")
    else:
        raise ClaimsUnsupported(f"{type(fs).__name__} has no atomic create that artmator knows; claims need a local "
                                "disk or S3 (or an S3-compatible store with conditional writes)")


# ------------------------------------------------------------------------------------------------ holders

def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - unknown: the claim is then judged by its lease alone
        return None


def process_alive(pid: int, started: float | None) -> bool:
    """True unless process `pid` of THIS host is certainly gone (or is another process reusing its id)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except Exception:  # noqa: BLE001 - e.g. AccessDenied: assume it lives
        return True


@dataclass(frozen=True)
class Holder:
    """A claim as storage shows it."""

    subject: str
    generation: int
    released: bool
    run_id: str = ""
    host: str = ""
    pid: int = 0
    pid_started: float | None = None
    token: str = ""
    purpose: str = ""
    expires_at: float = 0.0                 # Unix seconds, the holder's wall clock

    def live(self, now: float | None = None, skew_s: float = CLOCK_SKEW_S) -> bool:
        return not self.released and (time.time() if now is None else now) < self.expires_at + skew_s

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.expires_at, timezone.utc).isoformat(timespec="seconds")
        what = f" ({self.purpose})" if self.purpose else ""
        return f"run {self.run_id or '?'}{what} on host {self.host or '?'} pid {self.pid}, lease until {until}"


def _holder(subject: str, generation: int, released: bool, raw: bytes | None) -> Holder:
    """A Holder from a claim object's bytes; unreadable content holds nothing (it can be taken over)."""
    try:
        doc = json.loads(raw) if raw else {}
        if not isinstance(doc, dict):
            doc = {}
        return Holder(subject, generation, released, str(doc.get("run_id", "")), str(doc.get("host", "")),
                      int(doc.get("pid", 0)), doc.get("pid_started"), str(doc.get("token", "")),
                      str(doc.get("purpose", "")), float(doc.get("expires_at", 0.0)))
    except (ValueError, TypeError):
        return Holder(subject, generation, released)


def list_holders(fs: fsspec.AbstractFileSystem, folder: str) -> list[Holder]:
    """Every subject's current unreleased claim in `folder` (live or expired): ONE listing, then the claim
    objects of the subjects that are not released, in one batched read. Released subjects cost no read."""
    folder = folder.rstrip("/")
    fs.invalidate_cache(folder)
    try:
        paths = fs.find(folder)
    except FileNotFoundError:
        return []
    tops: dict[str, tuple[int, bool, str]] = {}
    for p in paths:
        parsed = layout.parse_claim_name(p)
        subject = posixpath.basename(posixpath.dirname(p))
        if parsed is None or layout.painting_id_problem(subject):
            continue
        if subject not in tops or parsed > tops[subject][:2]:
            tops[subject] = (*parsed, p)
    held = {s: p for s, (_, released, p) in tops.items() if not released}
    raws = fs.cat(list(held.values()), on_error="return") if held else {}
    out = []
    for subject, path in sorted(held.items()):
        raw = raws.get(path)
        if isinstance(raw, bytes):
            out.append(_holder(subject, tops[subject][0], False, raw))
    return out


# ------------------------------------------------------------------------------------------------- claims

class Claim:
    """A claim this process holds: renewed in the background until released; `check` before committing."""

    def __init__(self, owner: "Claims", subject: str, generation: int, purpose: str):
        self.owner, self.subject, self.generation, self.purpose = owner, subject, generation, purpose
        self.token = uuid.uuid4().hex
        self.folder = layout.claim_dir(owner.folder, subject)
        self.path = f"{self.folder}/{layout.claim_name(generation)}"
        self.acquired_at = time.time()
        self._valid_until = 0.0               # monotonic deadline of the lease, as this process counts it
        self._lost: ClaimLost | None = None
        self._released = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Claim({self.subject!r}, generation={self.generation})"

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def document(self, wall: float) -> bytes:
        o = self.owner
        return json.dumps({"subject": self.subject, "generation": self.generation, "run_id": o.run_id,
                           "host": o.host, "pid": o.pid, "pid_started": o.pid_started, "token": self.token,
                           "purpose": self.purpose, "ttl_s": o.ttl_s, "acquired_at": self.acquired_at,
                           "renewed_at": wall, "expires_at": wall + o.ttl_s}, sort_keys=True).encode()

    def record(self) -> dict:
        """What a commit marker records of the claim it was written under."""
        o = self.owner
        return {"generation": self.generation, "run_id": o.run_id, "host": o.host, "pid": o.pid,
                "token": self.token, "purpose": self.purpose}

    def check(self) -> None:
        """Raise ClaimLost unless this claim is still the subject's highest generation with at least the owner's
        `margin_s` of lease left (what a writer of a commit marker must hold)."""
        if self._lost is not None:
            raise self._lost
        if self._released:
            raise ClaimLost(self.subject, "already released")
        if time.monotonic() + self.owner.margin_s > self._valid_until:
            raise self._lose("its lease ran out before it could be renewed")
        top = self.owner.top(self.subject)
        if top is None or top.generation != self.generation or top.released:
            raise self._lose("taken over", top if top is not None and top.generation > self.generation else None)

    def renew(self) -> bool:
        """Extend the lease by the owner's ttl; False (and lost) when it is too late or taken over."""
        with self._lock:
            if self._released or self._lost is not None:
                return False
            start, wall = time.monotonic(), time.time()
            if start >= self._valid_until:
                self._lose("its lease ran out before it could be renewed")
                return False
            try:
                atomic_write(self.owner.fs, self.path, self.document(wall))
                top = self.owner.top(self.subject)
            except Exception as exc:  # noqa: BLE001 - an outage: retried next tick while the lease lasts
                log.warning("renewing the claim on %s failed (%s: %s); retrying while its lease lasts",
                            self.subject, type(exc).__name__, exc)
                return True
            if top is None or top.generation != self.generation:
                self._lose("taken over", top if top is not None and top.generation > self.generation else None)
                return False
            self._valid_until = start + self.owner.ttl_s
            return True

    def release(self) -> None:
        """Give the subject up: a `.released` object keeps the generation number, then the claim goes. Best
        effort — a release that fails leaves a claim that expires with its lease."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self.owner._forget(self)
            if self._lost is not None:
                return
            fs = self.owner.fs
            try:
                fs.pipe_file(f"{self.folder}/{layout.claim_name(self.generation, released=True)}", b"")
                fs.rm_file(self.path)
            except FileNotFoundError:
                pass
            except Exception as exc:  # noqa: BLE001
                log.warning("releasing the claim on %s failed (%s); it expires with its lease", self.subject, exc)

    def _lose(self, reason: str, holder: Holder | None = None) -> ClaimLost:
        if self._lost is None:
            self._lost = ClaimLost(self.subject, reason, holder)
            log.warning("%s", self._lost)
        return self._lost


class Claims:
    """Takes, renews and lists claims in one folder of a filesystem, for one run of this process.

    Args:
        fs, folder: where the claims lie (`layout.claims_root(OUT)` for paintings).
        run_id: the run that holds what this object takes.
        ttl_s: lease length; renewals every third of it; `check` wants a quarter of it (at most 30 s) left.
        clock_skew_s: how long past its written expiry another holder's lease still counts as live.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, folder: str, run_id: str, ttl_s: float = DEFAULT_TTL_S,
                 clock_skew_s: float = CLOCK_SKEW_S):
        if not ttl_s > 0:
            raise ValueError(f"the claim lease must be > 0 s, got {ttl_s}")
        self.clock_skew_s = float(clock_skew_s)
        self.fs, self.folder = fs, folder.rstrip("/")
        self.run_id = layout.check_id(run_id, "run_id")
        self.ttl_s = float(ttl_s)
        self.margin_s = min(self.ttl_s / 4, 30.0)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.pid_started = _process_start(self.pid)
        self._held: dict[int, Claim] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def of_store(cls, store, run_id: str, ttl_s: float = DEFAULT_TTL_S, clock_skew_s: float = CLOCK_SKEW_S
                 ) -> "Claims":
        """The painting claims of an `OutputStore`."""
        return cls(store.fs, layout.claims_root(store.root), run_id, ttl_s, clock_skew_s)

    @property
    def supported(self) -> bool:
        return _kind(self.fs) is not None

    # ---- reading

    def _entries(self, folder: str) -> dict[tuple[int, bool], str]:
        self.fs.invalidate_cache(folder)
        try:
            paths = self.fs.find(folder)
        except FileNotFoundError:
            return {}
        return {parsed: p for p in paths if (parsed := layout.parse_claim_name(p)) is not None}

    def top(self, subject: str) -> Holder | None:
        """The subject's highest generation (a released one outranks a held one of the same number), unread."""
        entries = self._entries(layout.claim_dir(self.folder, subject))
        if not entries:
            return None
        generation, released = max(entries)
        return Holder(subject, generation, released)

    def holder(self, subject: str) -> Holder | None:
        """The subject's current claim with its content (None: never claimed)."""
        entries = self._entries(layout.claim_dir(self.folder, subject))
        return self._read_top(subject, entries)

    def _read_top(self, subject: str, entries: dict[tuple[int, bool], str]) -> Holder | None:
        if not entries:
            return None
        generation, released = max(entries)
        if released:
            return Holder(subject, generation, True)
        try:
            raw = self.fs.cat_file(entries[(generation, False)])
        except FileNotFoundError:
            return Holder(subject, generation, True)        # released between the listing and the read
        return _holder(subject, generation, False, raw)

    def holders(self) -> list[Holder]:
        """Every subject's current unreleased claim, live or expired (`list_holders`)."""
        return list_holders(self.fs, self.folder)

    # ---- taking

    def can_take(self, holder: Holder, now: float | None = None) -> bool:
        """A claim may be taken over when released, expired, left by this same run (a restarted actor; the
        older attempt is fenced out by the new generation), or held by a process of this host that is gone."""
        if holder.released or not holder.live(now, self.clock_skew_s):
            return True
        if holder.run_id == self.run_id:
            return True
        return holder.host == self.host and not process_alive(holder.pid, holder.pid_started)

    def take(self, subject: str, purpose: str = "") -> Claim:
        """Claim `subject` for this run, or raise Claimed naming the live holder."""
        folder = layout.claim_dir(self.folder, subject)
        for _ in range(_RACE_ROUNDS):
            entries = self._entries(folder)
            top = self._read_top(subject, entries)
            if top is not None and not self.can_take(top):
                raise Claimed(top)
            claim = Claim(self, subject, (top.generation if top else 0) + 1, purpose)
            start = time.monotonic()
            try:
                atomic_create(self.fs, claim.path, claim.document(time.time()))
            except FileExistsError:
                continue                                      # another worker won this generation: look again
            claim._valid_until = start + self.ttl_s
            for (generation, _), path in entries.items():     # superseded generations (the new top stays)
                if generation < claim.generation:
                    try:
                        self.fs.rm_file(path)
                    except Exception:  # noqa: BLE001 - leftovers are ignored and removed by a later take
                        pass
            self._hold(claim)
            return claim
        top = self.holder(subject)
        if top is not None and not top.released:
            raise Claimed(top)
        raise ClaimLost(subject, f"still contended after {_RACE_ROUNDS} tries")

    # ---- renewing

    def _hold(self, claim: Claim) -> None:
        with self._lock:
            self._held[id(claim)] = claim
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._renew_loop, name="artmator-claims", daemon=True)
                self._thread.start()

    def _forget(self, claim: Claim) -> None:
        with self._lock:
            self._held.pop(id(claim), None)
            if not self._held:
                self._stop.set()

    def _renew_loop(self) -> None:
        """One thread per Claims: renews every held claim every third of the lease; ends when none is held."""
        while not self._stop.wait(self.ttl_s / 3):
            with self._lock:
                held = list(self._held.values())
            for claim in held:
                claim.renew()
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None

    def close(self) -> None:
        """Release every claim still held and stop renewing."""
        with self._lock:
            held = list(self._held.values())
        for claim in held:
            claim.release()
        self._stop.set()


_warned: set[str] = set()


def painting_claims(store, run_id: str, ttl_s: float = DEFAULT_TTL_S) -> Claims | None:
    """The painting claims of `store` for `run_id`, or None (with one warning) where the filesystem cannot hold
    them: there, one driver per output is the operator's to ensure."""
    claims = Claims.of_store(store, run_id, ttl_s)
    if claims.supported:
        return claims
    name = type(store.fs).__name__
    if name not in _warned:
        _warned.add(name)
        log.warning("%s has no atomic create: paintings are not claimed; run one driver at a time on %s", name,
                    store.uri)
    return None


@contextlib.contextmanager
def holding(claims: Claims | None, subject: str, purpose: str) -> Iterator[Claim | None]:
    """`with holding(claims, painting_id, "render") as claim:` the subject's claim for the block (None where
    there are no claims), released at its end; Claimed when another run holds it."""
    if claims is None:
        yield None
        return
    with claims.take(subject, purpose) as claim:
        yield claim
