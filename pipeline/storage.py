"""The output store: committed paintings and per-run records on any fsspec filesystem.

Where everything lies is `pipeline.layout`'s to say (paintings/<id>/<version>/..., commits/<id>/<marker>,
runs/<run_id>/...); this module writes and reads it. A commit writes the new files into a fresh version folder,
then the marker (LAST), then removes what the marker superseded: readers see the old commit until the marker
exists, and a crash between any two writes leaves either the old commit or the new one, never a mix.
`redact_uri` / `redact_options` / `redact_config` keep credentials and signed-URL query strings out of
configs, reports and logs.
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from artmator.pipeline import layout
from artmator.pipeline.layout import (Commit, CommitRef, FileEntry, Fingerprints, LayoutError, Scan, check_id,
                                      check_relpath, painting_id_problem)

StoreError = LayoutError   # the store's errors are the layout's: an unsafe id or path, a malformed marker

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
# Option names whose values are secrets in s3fs/gcsfs/adlfs/http storage options (matched case-insensitively).
_SECRET_KEY = re.compile(r"key|secret|token|passw|credential|signature|sas|auth|connection_string|private|cookie",
                         re.IGNORECASE)
MASK = "***"
REDACTED = "<redacted>"


# ------------------------------------------------------------------------------------------------- redaction


def redact_uri(uri: str) -> str:
    """`uri` without userinfo, query string or fragment (e.g. S3/GCS/Azure signatures); plain paths unchanged."""
    if not isinstance(uri, str) or "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = REDACTED if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """Free text (an error message) with every URI redacted and AWS access-key ids masked."""
    text = _URI.sub(lambda m: redact_uri(m.group(0)), text)
    return _AWS_KEY_ID.sub(MASK, text)


def redact_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of fsspec storage options with secret-like values masked and URIs redacted (nested too)."""
    return redact_config(dict(storage_options or {}))


def redact_config(value: Any) -> Any:
    """Recursively mask values under secret-like keys and redact URI strings; safe to write or log."""
    if isinstance(value, Mapping):
        return {k: (MASK if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact_config(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_config(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


# ------------------------------------------------------------------------------------------------ atomic write


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def atomic_write(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` so readers see the old file or the new one, never a torn one.

    Object stores (S3, GCS, Azure, memory) make each PUT atomic, so a plain `pipe_file` suffices. Local disks
    get a temp file in the same directory (same device), fsynced, then renamed over `path` (rename is atomic).
    """
    if not is_local(fs):
        fs.pipe_file(path, data)
        return
    parent, name = posixpath.split(path)
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fs.mv(tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def file_digest(data: bytes) -> dict[str, Any]:
    entry = layout.file_entry("", data)
    return {"bytes": entry.size, "sha256": entry.sha256}


# ------------------------------------------------------------------------------------------------------- store




# ------------------------------------------------------------------------------------------------------- store


class OutputStore:
    """Committed paintings and per-run records under one output URI.

    Args:
        out_uri: local path, file://, memory://, s3://, gs://, az:// ... (anything `fsspec.core.url_to_fs` opens).
        storage_options: passed to the filesystem (credentials, endpoint). Never written anywhere unredacted.

    Paths returned by methods are filesystem paths (`self.fs` takes them); `self.uri` is the redacted root.
    """

    def __init__(self, out_uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        if not isinstance(out_uri, str) or not out_uri.strip():
            raise StoreError("the output URI is empty; give a local folder or a URI such as s3://bucket/prefix")
        self.fs, root = fsspec.core.url_to_fs(out_uri, **dict(storage_options or {}))
        self.root = root.rstrip("/") or root
        self.uri = redact_uri(out_uri)

    def __repr__(self) -> str:
        return f"OutputStore({self.uri!r})"

    # ---- paths

    @property
    def paintings_root(self) -> str:
        return layout.paintings_root(self.root)

    def painting_dir(self, painting_id: str) -> str:
        """The folder of one painting's versions; raises StoreError for any id that could escape the prefix."""
        return layout.painting_dir(self.root, painting_id)

    def commit_dir(self, painting_id: str) -> str:
        return layout.commit_dir(self.root, painting_id)

    def run_dir(self, run_id: str) -> str:
        return layout.run_dir(self.root, run_id)

    # ---- reading commits

    def scan(self) -> Scan:
        """Every painting's current commit, from one listing of commits/ (no marker read)."""
        return layout.scan_commits(self.fs, self.root)

    def committed_ids(self) -> set[str]:
        return set(self.scan().current)

    def commits(self, painting_ids: set[str] | None = None) -> dict[str, Commit]:
        """{painting_id: Commit} of the current commits (of `painting_ids` only, when given): one listing, then
        the markers in one batched `cat`. Unreadable or foreign markers do not count."""
        refs = [r for pid, r in self.scan().current.items() if painting_ids is None or pid in painting_ids]
        return {c.painting_id: c for c in layout.read_commits(self.fs, self.root, refs)[0]}

    def committed(self, config_hash: str | None = None) -> dict[str, dict]:
        """{painting_id: marker} of every committed painting (optionally only those a run with `config_hash`
        committed)."""
        return {pid: c.doc for pid, c in self.commits().items()
                if config_hash is None or c.config_hash == config_hash}

    def _refs(self, painting_id: str) -> list[CommitRef]:
        folder = self.commit_dir(painting_id)
        self.fs.invalidate_cache(folder)
        try:
            paths = self.fs.find(folder)
        except FileNotFoundError:
            return []
        refs = [r for p in paths if (r := layout.parse_marker_path(p)) and r.painting_id == painting_id]
        return sorted(refs, key=lambda r: r.order)

    def current_ref(self, painting_id: str) -> CommitRef | None:
        """The painting's current marker as a listing shows it (None: not committed); one listing, no read."""
        refs = self._refs(painting_id)
        return refs[-1] if refs else None

    def read_commit(self, painting_id: str) -> Commit | None:
        """The painting's current commit, or None when it has none (or an unreadable one)."""
        refs = self._refs(painting_id)
        if not refs:
            return None
        commits, _ = layout.read_commits(self.fs, self.root, refs[-1:])
        return commits[0] if commits else None

    def read_marker(self, painting_id: str) -> dict | None:
        commit = self.read_commit(painting_id)
        return None if commit is None else commit.doc

    def is_committed(self, painting_id: str, config_hash: str | None = None) -> bool:
        commit = self.read_commit(painting_id)
        return commit is not None and (config_hash is None or commit.config_hash == config_hash)

    def read_file(self, painting_id: str, rel: str, commit: Commit | None = None) -> bytes:
        """A file of the painting's current commit, verified against the marker (IntegrityError otherwise)."""
        commit = commit or self.read_commit(painting_id)
        if commit is None:
            raise layout.IntegrityError(f"{painting_id} is not committed")
        return layout.read_verified(self.fs, commit, rel)

    # ---- committing

    def commit(self, painting_id: str, files: Mapping[str, bytes], marker: Mapping[str, Any],
               fingerprints: Fingerprints | None = None, keep: Mapping[str, FileEntry] | None = None,
               claim: Any = None) -> dict:
        """Commit a new version of a painting: `files` go to a fresh version folder, `keep` (entries of the
        current commit) are referred to where they lie, then the marker is written, then what it supersedes is
        removed. Returns the marker as written.

        `marker` must hold `run_id` (and may hold more: inputs, seconds, flags); the store adds `painting_id`,
        `version`, `committed_at` (if absent), `fingerprints`, `files` ({name: {path, bytes, sha256}}) and, with
        a `claim` (`pipeline.claims.Claim`), `claim`: the claim it was written under. The claim is checked right
        before the marker is written (ClaimLost when it expired or was taken over: nothing becomes visible).
        """
        folder = self.painting_dir(painting_id)
        keep = dict(keep or {})
        checked = {check_relpath(rel): data for rel, data in files.items()}
        for rel, data in checked.items():
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise StoreError(f"{painting_id}: file {rel!r} must be bytes, got {type(data).__name__}")
        for rel in keep:
            check_relpath(rel)
            if rel in checked:
                raise StoreError(f"{painting_id}: {rel!r} is both a new file and a kept one")
        fingerprints = (fingerprints or Fingerprints.from_dict(marker.get("fingerprints"))).check()
        full = self._complete_marker(painting_id, marker)
        # Past every sequence number in use, markers and folders alike: a folder an attempt left behind when it
        # crashed before its marker is then older than this commit, and removed with what it supersedes.
        seen = [r.order for r in self._refs(painting_id)]
        seen += [o for name in self._versions(painting_id) if (o := layout.version_order(name))]
        seq = max((o[0] for o in seen), default=0) + 1
        version = layout.new_version(seq)
        for rel, entry in keep.items():
            order = layout.version_order(entry.path.split("/", 1)[0])
            if order is None or order[0] >= seq:
                raise StoreError(f"{painting_id}: kept file {rel!r} does not lie in an earlier version")
        if claim is not None:
            claim.check()                     # a claim already lost writes nothing
        entries: dict[str, FileEntry] = {}
        for rel, data in sorted(checked.items()):
            data = bytes(data)
            entries[rel] = layout.file_entry(f"{version}/{rel}", data)
            atomic_write(self.fs, f"{folder}/{entries[rel].path}", data)
        entries.update(keep)
        full.update(version=version, fingerprints=fingerprints._asdict(),
                    files={rel: e.as_json() for rel, e in sorted(entries.items())})
        if claim is not None:
            try:
                claim.check()                 # only the claim's holder writes the marker (pipeline.claims)
            except Exception:
                self._remove_quietly([f"{folder}/{entries[rel].path}" for rel in checked])
                raise
            full["claim"] = claim.record()
        atomic_write(self.fs, f"{self.commit_dir(painting_id)}/{layout.marker_name(version, fingerprints)}",
                     layout.marker_bytes(full))
        self._collect(painting_id, layout.version_order(version), {e.path for e in entries.values()})
        return full

    def _remove_quietly(self, paths: list[str]) -> None:
        """Remove files this process wrote and no marker refers to (best effort: a later commit collects them)."""
        try:
            self.fs.rm(paths)
            if is_local(self.fs):
                for path in {posixpath.dirname(p) for p in paths}:
                    while path.startswith(self.paintings_root + "/") and not self.fs.find(path):
                        self.fs.rm(path, recursive=True)
                        path = posixpath.dirname(path)
        except Exception:  # noqa: BLE001
            pass

    def write_painting(self, painting_id: str, files: Mapping[str, bytes], marker: Mapping[str, Any]) -> dict:
        """Commit a complete new version (every file new); fingerprints from `marker["fingerprints"]` if any."""
        return self.commit(painting_id, files, {k: v for k, v in marker.items() if k != "fingerprints"},
                           Fingerprints.from_dict(marker.get("fingerprints")))

    def _complete_marker(self, painting_id: str, marker: Mapping[str, Any]) -> dict:
        if not marker.get("run_id"):
            raise StoreError(f"{painting_id}: the commit marker needs run_id")
        if marker.get("painting_id", painting_id) != painting_id:
            raise StoreError(f"marker painting_id {marker['painting_id']!r} does not match {painting_id!r}")
        for computed in ("files", "version", "claim"):
            if computed in marker:
                raise StoreError(f"the marker's {computed!r} entry is computed by the store; do not pass it")
        full = {**marker, "painting_id": painting_id}
        full.setdefault("committed_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        try:
            json.dumps(full)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{painting_id}: the marker must be JSON-serialisable ({exc})") from exc
        return full

    def _collect(self, painting_id: str, committed: tuple[int, str], referenced: set[str]) -> None:
        """After a commit: remove the markers it superseded, then every file of an earlier sequence number that its
        marker does not refer to (files of superseded commits, or of attempts that crashed before their marker).
        Files of the same or a later sequence number (a duplicate task still writing) are left alone."""
        for ref in self._refs(painting_id):
            if ref.order < committed:
                self.fs.rm_file(ref.path)
        folder = self.painting_dir(painting_id)
        self.fs.invalidate_cache(folder)
        try:
            present = self.fs.find(folder)
        except FileNotFoundError:
            return
        stale = []
        for path in present:
            rel = path[len(folder) + 1:]
            order = layout.version_order(rel.split("/", 1)[0])
            if rel not in referenced and (order is None or order[0] < committed[0]):
                stale.append(path)
        if stale:
            self.fs.rm(stale)
        if is_local(self.fs):   # folders emptied by the removals (object stores have no empty folders)
            for version, path in self._versions(painting_id).items():
                if not self.fs.find(path):
                    self.fs.rm(path, recursive=True)

    def _versions(self, painting_id: str) -> dict[str, str]:
        """{folder name: path} of the entries directly under paintings/<id>/."""
        folder = self.painting_dir(painting_id)
        self.fs.invalidate_cache(folder)
        try:
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return {}
        return {posixpath.basename(p.rstrip("/")): p.rstrip("/") for p in entries}

    # ---- checking

    def partial_paintings(self) -> list[str]:
        """Ids of painting folders without any commit (a crashed or running first attempt), sorted."""
        self.fs.invalidate_cache(self.paintings_root)
        try:
            folders = {posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.paintings_root, detail=False)}
        except FileNotFoundError:
            return []
        return sorted(pid for pid in folders - self.committed_ids() if not painting_id_problem(pid))

    def verify(self, painting_id: str) -> list[str]:
        """Problems with a committed painting: no marker, missing, resized, altered or unexpected files."""
        commit = self.read_commit(painting_id)
        if commit is None:
            return [f"{painting_id}: no readable commit marker; the painting is not committed"]
        problems = []
        paths = {rel: commit.path_of(rel) for rel in commit.files}
        contents = self.fs.cat(list(paths.values()), on_error="return") if paths else {}
        for rel, want in sorted(commit.files.items()):
            data = contents.get(paths[rel])
            if not isinstance(data, bytes):
                problems.append(f"{painting_id}/{rel}: missing")
            elif len(data) != want.size:
                problems.append(f"{painting_id}/{rel}: {len(data)} bytes, marker says {want.size}")
            elif layout.file_entry("", data).sha256 != want.sha256:
                problems.append(f"{painting_id}/{rel}: sha256 differs from the marker (file altered)")
        folder = self.painting_dir(painting_id)
        self.fs.invalidate_cache(folder)
        present = {p[len(folder) + 1:] for p in self.fs.find(folder)}
        for rel in sorted(present - {e.path for e in commit.files.values()}):
            problems.append(f"{painting_id}/{rel}: not listed in the marker")
        return problems

    # ---- runs

    def write_run_config(self, run_id: str, config: Mapping[str, Any]) -> dict:
        """Write runs/<run_id>/config.json with secrets masked and URIs redacted; returns what was written."""
        safe = redact_config(dict(config))
        atomic_write(self.fs, f"{self.run_dir(run_id)}/{layout.RUN_CONFIG_NAME}", _json_bytes(safe))
        return safe

    def read_run_config(self, run_id: str) -> dict:
        return json.loads(self.fs.cat_file(f"{self.run_dir(run_id)}/{layout.RUN_CONFIG_NAME}"))

    def write_report(self, run_id: str, table: pa.Table, state: str = "finished") -> str:
        """Write runs/<run_id>/report.parquet (atomically, so a partial report can be rewritten while the run
        goes on: `state` "running", then "finished"); returns its path."""
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               layout.REPORT_STATE_KEY: state.encode()})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        path = f"{self.run_dir(run_id)}/{layout.REPORT_NAME}"
        atomic_write(self.fs, path, buf.getvalue())
        return path

    def read_reports(self) -> pa.Table:
        """All runs' reports concatenated (schemas unified), with `run_id` and `run_state` columns; empty table
        if none."""
        runs = layout.join(self.root, layout.RUNS_DIR)
        self.fs.invalidate_cache(runs)
        try:
            paths = sorted(p for p in self.fs.find(runs) if p.endswith("/" + layout.REPORT_NAME))
        except FileNotFoundError:
            paths = []
        tables = []
        for path in paths:
            table = pq.read_table(path, filesystem=self.fs)
            if "run_id" not in table.column_names:
                run_id = posixpath.basename(posixpath.dirname(path))
                table = table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.string()))
            state = layout.report_state(table.schema)
            table = table.append_column("run_state", pa.array([state] * table.num_rows, pa.string()))
            tables.append(table.replace_schema_metadata(None))
        if not tables:
            return pa.table({"run_id": pa.array([], pa.string())})
        return pa.concat_tables(tables, promote_options="permissive")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
