"""Reading the pipeline's OUT tree: committed paintings, their verified files, and failures from the last run.

Everything read here is untrusted: ids are re-validated, paths come only from the commit marker's file
list, every byte read is checked against the marker's sha256, and result strings stay plain data.
"""
from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

import fsspec

PAINTING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
EXPRESSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
FRAME_PATH = re.compile(r"^renders/turntable/(\d{1,5})\.png$")
MARKER = "_COMMITTED.json"
MAX_TEXT = 2000
"""Longest metadata string kept (longer ones are cut): pages stay readable whatever the catalogue holds."""


class IntegrityError(Exception):
    """A committed file is missing or differs from what its marker recorded."""


@dataclass(frozen=True)
class FileEntry:
    """One file as the commit marker recorded it."""

    size: int
    sha256: str


@dataclass
class CommittedPainting:
    """A painting whose `_COMMITTED.json` exists and names it; `root` is its folder in the OUT filesystem."""

    painting_id: str
    root: str
    run_id: str
    config_hash: str
    files: dict[str, FileEntry]

    def frame_paths(self) -> list[str]:
        """Turntable frame relpaths in numeric order (only those the marker lists)."""
        numbered = [(int(m.group(1)), rel) for rel in self.files if (m := FRAME_PATH.match(rel))]
        return [rel for _, rel in sorted(numbered)]


@dataclass(frozen=True)
class Metadata:
    """Catalogue metadata from result.json; every field is an untrusted string or None."""

    title: str | None = None
    artist: str | None = None
    date: str | None = None
    rights: str | None = None
    credit_line: str | None = None
    source_url: str | None = None


@dataclass(frozen=True)
class PaintingResult:
    """The parts of result.json the gallery shows, coerced to safe types."""

    painting_id: str
    metadata: Metadata
    fps: float
    yaw_deg: list[float]
    pose_yaw_deg: float | None
    pose_estimated: bool
    expressions: list[str]
    flags: list[str]
    lpips_ref: float | None
    psnr_ref: float | None
    face: dict[str, float] = field(default_factory=dict)   # result.json "face": the face-aware metrics
    pose_source: str | None = None


FACE_METRICS = ("detected_fraction", "identity_consistency", "likeness", "pose_error_deg")


@dataclass(frozen=True)
class Unavailable:
    """A painting that is not shown, and why (for the index's "not available" list or the summary)."""

    painting_id: str
    reason: str


@dataclass
class Listing:
    """What one scan of OUT found."""

    committed: list[CommittedPainting] = field(default_factory=list)
    rejected: list[Unavailable] = field(default_factory=list)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:MAX_TEXT]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _parse_marker(raw: bytes, painting_id: str, root: str) -> CommittedPainting:
    marker = json.loads(raw)
    if not isinstance(marker, dict) or marker.get("painting_id") != painting_id:
        raise ValueError("marker does not name this painting")
    files: dict[str, FileEntry] = {}
    for rel, entry in (marker.get("files") or {}).items():
        # Relative, normalised paths only: the marker decides what we read, so it must not point outside.
        if not isinstance(rel, str) or rel.startswith("/") or posixpath.normpath(rel) != rel or rel.startswith(".."):
            raise ValueError(f"unsafe path in marker: {rel!r}")
        files[rel] = FileEntry(int(entry["bytes"]), str(entry["sha256"]).lower())
    return CommittedPainting(painting_id, root, str(marker.get("run_id", "")),
                             str(marker.get("config_hash", "")), files)


def list_committed(fs: fsspec.AbstractFileSystem, out_path: str) -> Listing:
    """Committed paintings under OUT, from ONE glob of `paintings/*/_COMMITTED.json` and one bulk read."""
    listing = Listing()
    markers = sorted(fs.glob(posixpath.join(out_path, "paintings", "*", MARKER)))
    raw_by_path = fs.cat(markers, on_error="return") if markers else {}
    for path in markers:
        root = posixpath.dirname(path)
        painting_id = posixpath.basename(root)
        if not PAINTING_ID.match(painting_id):
            listing.rejected.append(Unavailable(painting_id[:128], "invalid painting id"))
            continue
        raw = raw_by_path.get(path)
        try:
            if isinstance(raw, BaseException) or raw is None:
                raise ValueError(f"unreadable marker: {raw!r}")
            listing.committed.append(_parse_marker(raw, painting_id, root))
        except (ValueError, KeyError, TypeError) as err:
            listing.rejected.append(Unavailable(painting_id, f"bad commit marker: {err}"))
    return listing


def read_verified(fs: fsspec.AbstractFileSystem, painting: CommittedPainting, rel: str) -> bytes:
    """A committed file's bytes, after checking size and sha256 against the marker."""
    entry = painting.files.get(rel)
    if entry is None:
        raise IntegrityError(f"{rel} is not in the commit marker")
    try:
        data = fs.cat_file(posixpath.join(painting.root, rel))
    except FileNotFoundError as err:
        raise IntegrityError(f"{rel} is missing") from err
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise IntegrityError(f"{rel} changed after commit")
    return data


def parse_result(raw: bytes, painting_id: str) -> PaintingResult:
    """Coerce result.json into `PaintingResult`; unknown or ill-typed fields fall back to defaults."""
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("result.json is not an object")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    turntable = doc.get("turntable") if isinstance(doc.get("turntable"), dict) else {}
    pose = doc.get("pose") if isinstance(doc.get("pose"), dict) else {}
    quality = doc.get("quality") if isinstance(doc.get("quality"), dict) else {}
    face = doc.get("face") if isinstance(doc.get("face"), dict) else {}
    fps = _number(turntable.get("fps"))
    yaws = turntable.get("yaw_deg") if isinstance(turntable.get("yaw_deg"), list) else []
    expressions = doc.get("expressions") if isinstance(doc.get("expressions"), list) else []
    flags = quality.get("flags") if isinstance(quality.get("flags"), list) else []
    return PaintingResult(
        painting_id=painting_id,
        metadata=Metadata(**{k: _text(meta.get(k)) for k in Metadata.__dataclass_fields__}),
        fps=fps if fps and 0 < fps <= 120 else 12.0,
        yaw_deg=[y for y in map(_number, yaws) if y is not None],
        pose_yaw_deg=_number(pose.get("yaw_deg")),
        pose_estimated=bool(pose.get("estimated", False)),
        expressions=[e for e in expressions if isinstance(e, str) and EXPRESSION_NAME.match(e)],
        flags=[t for f in flags if (t := _text(f))][:50],
        lpips_ref=_number(quality.get("lpips_ref")),
        psnr_ref=_number(quality.get("psnr_ref")),
        face={k: v for k in FACE_METRICS if (v := _number(face.get(k))) is not None},
        pose_source=_text(pose.get("source")) if pose.get("source") in ("given", "landmarks", "search") else None,
    )


def _modified(fs: fsspec.AbstractFileSystem, path: str) -> float:
    try:
        return fs.modified(path).timestamp()
    except (NotImplementedError, OSError, AttributeError):
        return 0.0


def latest_failures(fs: fsspec.AbstractFileSystem, out_path: str) -> list[Unavailable]:
    """Failed paintings of the most recent run (newest `runs/*/report.parquet`, ties broken by run id)."""
    import pyarrow.parquet as pq

    reports = fs.glob(posixpath.join(out_path, "runs", "*", "report.parquet"))
    if not reports:
        return []
    latest = max(reports, key=lambda p: (_modified(fs, p), p))
    try:
        with fs.open(latest, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            names = parquet.schema_arrow.names
            wanted = [c for c in ("painting_id", "status", "error_kind", "message") if c in names]
            rows = parquet.read(columns=wanted).to_pylist()
    except (OSError, ValueError):  # a torn or foreign report must not take the whole gallery down
        return []
    failures = []
    for row in rows:
        pid = row.get("painting_id")
        if row.get("status") != "failed" or not isinstance(pid, str) or not PAINTING_ID.match(pid):
            continue
        kind, message = _text(row.get("error_kind")), _text(row.get("message"))
        reason = ": ".join(part for part in (kind, (message or "")[:200]) if part) or "failed"
        failures.append(Unavailable(pid, reason))
    return failures
