"""The output store: committed per-painting folders and per-run records on any fsspec filesystem.

Layout (keys depend only on `painting_id`, so a retry overwrites instead of duplicating)::

    OUT/paintings/<painting_id>/<files...>, _COMMITTED.json   (the marker is written LAST)
    OUT/runs/<run_id>/config.json, report.parquet

A painting counts as done only when its `_COMMITTED.json` exists; the marker lists the size and sha256 of
every file, so `verify` can prove the folder intact. Ids and relative paths are validated before they touch a
path, so nothing can escape the output prefix. `redact_uri` / `redact_options` / `redact_config` keep
credentials and signed-URL query strings out of configs, reports and logs.
"""
from __future__ import annotations

import hashlib
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

MARKER_NAME = "_COMMITTED.json"
PAINTINGS_DIR = "paintings"
RUNS_DIR = "runs"
MAX_ID_LENGTH = 128
# The one id rule, shared by the manifest check, painting folders and run folders.
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
# Option names whose values are secrets in s3fs/gcsfs/adlfs/http storage options (matched case-insensitively).
_SECRET_KEY = re.compile(r"key|secret|token|passw|credential|signature|sas|auth|connection_string|private|cookie",
                         re.IGNORECASE)
MASK = "***"
REDACTED = "<redacted>"


class StoreError(ValueError):
    """An unsafe id or relative path, or a malformed marker; the message says what to change."""


# ----------------------------------------------------------------------------------------------- ids and paths


def painting_id_problem(painting_id: object) -> str | None:
    """Why `painting_id` is not a safe folder name, or None when it is (`SAFE_ID_PATTERN`)."""
    if not isinstance(painting_id, str):
        return f"must be a string, got {type(painting_id).__name__}"
    if painting_id == "":
        return "is empty"
    if painting_id in (".", ".."):
        return "names a directory ('.' or '..'), not a painting"
    if _CONTROL.search(painting_id):
        return "contains a NUL or control character"
    if painting_id.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", painting_id):
        return "looks like an absolute path"
    if "/" in painting_id or "\\" in painting_id:
        return "contains a path separator ('/' or '\\')"
    if len(painting_id) > MAX_ID_LENGTH:
        return f"is {len(painting_id)} characters long; at most {MAX_ID_LENGTH} are allowed"
    if not painting_id[0].isascii() or not painting_id[0].isalnum():
        return "must start with a letter or digit (A-Z, a-z, 0-9)"
    if not _SAFE_ID.fullmatch(painting_id):
        bad = sorted({c for c in painting_id if not (c.isascii() and (c.isalnum() or c in "._-"))})
        return f"contains {''.join(bad)!r}; only A-Z a-z 0-9 . _ - are allowed"
    return None


def check_id(value: object, what: str = "painting_id") -> str:
    """Return `value` if it is a safe id, else raise StoreError naming the rule."""
    problem = painting_id_problem(value)
    if problem:
        raise StoreError(f"{what} {value!r} {problem} (ids must match {SAFE_ID_PATTERN})")
    return value  # type: ignore[return-value]


def check_relpath(relpath: object) -> str:
    """A file name inside a painting folder: relative, '/'-separated, no '.'/'..' parts, not the marker."""
    if not isinstance(relpath, str) or relpath == "":
        raise StoreError(f"file name {relpath!r} must be a non-empty string")
    if "\\" in relpath or _CONTROL.search(relpath):
        raise StoreError(f"file name {relpath!r} contains a backslash or control character; use '/' separators")
    if relpath.startswith("/") or re.match(r"^[A-Za-z]:", relpath):
        raise StoreError(f"file name {relpath!r} is absolute; give a path relative to the painting folder")
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"file name {relpath!r} has an empty, '.' or '..' part")
    if relpath == MARKER_NAME:
        raise StoreError(f"{MARKER_NAME} is written by the store itself; do not pass it as a file")
    return relpath


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
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# ------------------------------------------------------------------------------------------------------- store


class OutputStore:
    """Per-painting committed outputs and per-run records under one output URI.

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

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def paintings_root(self) -> str:
        return self._join(PAINTINGS_DIR)

    def painting_dir(self, painting_id: str) -> str:
        """The folder of one painting; raises StoreError for any id that could escape the prefix."""
        return self._join(PAINTINGS_DIR, check_id(painting_id))

    def run_dir(self, run_id: str) -> str:
        return self._join(RUNS_DIR, check_id(run_id, "run_id"))

    def marker_path(self, painting_id: str) -> str:
        return f"{self.painting_dir(painting_id)}/{MARKER_NAME}"

    # ---- paintings

    def write_painting(self, painting_id: str, files: Mapping[str, bytes], marker: Mapping[str, Any]) -> dict:
        """Replace a painting's folder with `files`, then commit it by writing `_COMMITTED.json` last.

        `marker` must hold `run_id` and `config_hash` (and may hold more, e.g. timings); the store adds
        `painting_id`, `committed_at` (if absent) and `files` ({relpath: {bytes, sha256}}). Any earlier attempt
        (marker first, then its files) is removed before writing, so a crash at any point leaves the painting
        uncommitted, never half-old half-new under a valid marker. Returns the marker as written.
        """
        folder = self.painting_dir(painting_id)
        checked = {check_relpath(rel): data for rel, data in files.items()}
        for rel, data in checked.items():
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise StoreError(f"{painting_id}: file {rel!r} must be bytes, got {type(data).__name__}")
        full = self._complete_marker(painting_id, marker)
        self._clear(folder)
        digests = {}
        for rel, data in sorted(checked.items()):
            data = bytes(data)
            atomic_write(self.fs, f"{folder}/{rel}", data)
            digests[rel] = file_digest(data)
        full["files"] = digests
        atomic_write(self.fs, f"{folder}/{MARKER_NAME}", _json_bytes(full))
        return full

    def _complete_marker(self, painting_id: str, marker: Mapping[str, Any]) -> dict:
        missing = [k for k in ("run_id", "config_hash") if not marker.get(k)]
        if missing:
            raise StoreError(f"{painting_id}: the commit marker needs {', '.join(missing)}")
        if marker.get("painting_id", painting_id) != painting_id:
            raise StoreError(f"marker painting_id {marker['painting_id']!r} does not match {painting_id!r}")
        if "files" in marker:
            raise StoreError("the marker's 'files' entry is computed by the store; do not pass it")
        full = {**marker, "painting_id": painting_id}
        full.setdefault("committed_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        try:
            json.dumps(full)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{painting_id}: the marker must be JSON-serialisable ({exc})") from exc
        return full

    def _clear(self, folder: str) -> None:
        """Delete an earlier attempt: the marker first (so it is uncommitted from then on), then the rest."""
        self.fs.invalidate_cache(folder)
        try:
            existing = self.fs.find(folder)
        except FileNotFoundError:
            existing = []
        marker = f"{folder}/{MARKER_NAME}"
        if marker in existing:
            self.fs.rm_file(marker)
        rest = [p for p in existing if p != marker]
        if rest:
            self.fs.rm(rest)
        if is_local(self.fs) and self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)  # empty sub-folders left behind by the file removals

    def _listing(self) -> list[str]:
        """Every file under paintings/ in ONE recursive listing (s3fs: one paginated list_objects_v2).

        `glob("paintings/*/...")` would walk one listing per painting folder on object stores.
        """
        self.fs.invalidate_cache(self.paintings_root)
        try:
            return self.fs.find(self.paintings_root)
        except FileNotFoundError:
            return []

    def _by_painting(self, paths: list[str]) -> dict[str, list[str]]:
        prefix = self.paintings_root + "/"
        out: dict[str, list[str]] = {}
        for path in paths:
            if path.startswith(prefix):
                pid, _, rel = path[len(prefix):].partition("/")
                if rel:
                    out.setdefault(pid, []).append(rel)
        return out

    def committed_ids(self) -> set[str]:
        """Ids of paintings that have a marker, from the listing alone (no marker reads: cheapest resume check).

        Unlike `committed`, it neither checks the markers' contents nor filters by config hash.
        """
        return {pid for pid, rels in self._by_painting(self._listing()).items()
                if MARKER_NAME in rels and not painting_id_problem(pid)}

    def committed(self, config_hash: str | None = None) -> dict[str, dict]:
        """{painting_id: marker} of every committed painting (optionally only those of `config_hash`).

        One listing, then all markers fetched in one batched `cat` (concurrent on s3fs). Unreadable markers
        or markers whose painting_id does not match their folder do not count as committed.
        """
        paths = [f"{self.paintings_root}/{pid}/{MARKER_NAME}"
                 for pid, rels in self._by_painting(self._listing()).items() if MARKER_NAME in rels]
        if not paths:
            return {}
        out = {}
        for path, data in self.fs.cat(paths, on_error="omit").items():
            pid = posixpath.basename(posixpath.dirname(path))
            marker = _parse_marker(data)
            if marker is None or marker.get("painting_id") != pid or painting_id_problem(pid):
                continue
            if config_hash is None or marker.get("config_hash") == config_hash:
                out[pid] = marker
        return out

    def read_marker(self, painting_id: str) -> dict | None:
        """The painting's commit marker, or None when it has none (or an unreadable one)."""
        try:
            return _parse_marker(self.fs.cat_file(self.marker_path(painting_id)))
        except FileNotFoundError:
            return None

    def is_committed(self, painting_id: str, config_hash: str | None = None) -> bool:
        marker = self.read_marker(painting_id)
        return marker is not None and (config_hash is None or marker.get("config_hash") == config_hash)

    def partial_paintings(self) -> list[str]:
        """Ids of painting folders holding files but no marker (a crashed or running attempt), sorted."""
        return sorted(pid for pid, rels in self._by_painting(self._listing()).items() if MARKER_NAME not in rels)

    def verify(self, painting_id: str) -> list[str]:
        """Problems with a committed painting: no marker, missing, resized, altered or unexpected files."""
        folder = self.painting_dir(painting_id)
        marker = self.read_marker(painting_id)
        if marker is None:
            return [f"{painting_id}: no readable {MARKER_NAME}; the painting is not committed"]
        expected = marker.get("files") or {}
        problems = []
        contents = self.fs.cat([f"{folder}/{rel}" for rel in expected], on_error="return") if expected else {}
        for rel, want in sorted(expected.items()):
            data = contents.get(f"{folder}/{rel}")
            if not isinstance(data, bytes):
                problems.append(f"{painting_id}/{rel}: missing")
                continue
            got = file_digest(data)
            if got["bytes"] != want.get("bytes"):
                problems.append(f"{painting_id}/{rel}: {got['bytes']} bytes, marker says {want.get('bytes')}")
            elif got["sha256"] != want.get("sha256"):
                problems.append(f"{painting_id}/{rel}: sha256 differs from the marker (file altered)")
        self.fs.invalidate_cache(folder)
        present = {p[len(folder) + 1:] for p in self.fs.find(folder)}
        for rel in sorted(present - set(expected) - {MARKER_NAME}):
            problems.append(f"{painting_id}/{rel}: not listed in the marker")
        return problems

    # ---- runs

    def write_run_config(self, run_id: str, config: Mapping[str, Any]) -> dict:
        """Write runs/<run_id>/config.json with secrets masked and URIs redacted; returns what was written."""
        safe = redact_config(dict(config))
        atomic_write(self.fs, f"{self.run_dir(run_id)}/config.json", _json_bytes(safe))
        return safe

    def read_run_config(self, run_id: str) -> dict:
        return json.loads(self.fs.cat_file(f"{self.run_dir(run_id)}/config.json"))

    def write_report(self, run_id: str, table: pa.Table) -> str:
        """Write runs/<run_id>/report.parquet (atomically); returns its path."""
        buf = io.BytesIO()
        pq.write_table(table, buf)
        path = f"{self.run_dir(run_id)}/report.parquet"
        atomic_write(self.fs, path, buf.getvalue())
        return path

    def read_reports(self) -> pa.Table:
        """All runs' reports concatenated (schemas unified), with a `run_id` column; empty table if none."""
        runs = self._join(RUNS_DIR)
        self.fs.invalidate_cache(runs)
        try:
            paths = sorted(p for p in self.fs.find(runs) if p.endswith("/report.parquet"))
        except FileNotFoundError:
            paths = []
        tables = []
        for path in paths:
            table = pq.read_table(path, filesystem=self.fs)
            if "run_id" not in table.column_names:
                run_id = posixpath.basename(posixpath.dirname(path))
                table = table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.string()))
            tables.append(table)
        if not tables:
            return pa.table({"run_id": pa.array([], pa.string())})
        return pa.concat_tables(tables, promote_options="permissive")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _parse_marker(data: bytes) -> dict | None:
    try:
        marker = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("files"), dict) else None
