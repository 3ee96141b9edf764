"""Reading the pipeline's OUT tree for the gallery: committed paintings, their verified files, their results,
and failures from the last run. Where things lie and what a marker holds is `pipeline.layout`'s.

Everything read here is untrusted: ids are re-validated, paths come only from the commit marker's file
list, every byte read is checked against the marker's sha256, and result strings stay plain data.
"""
from __future__ import annotations

import json
import math
import posixpath
import re
from dataclasses import dataclass, field, make_dataclass
from typing import Any

import fsspec

from artmator.pipeline import layout
from artmator.pipeline.layout import MAX_TEXT, METADATA_COLUMNS, Commit, IntegrityError, read_verified

PAINTING_ID = re.compile(layout.SAFE_ID_PATTERN)
EXPRESSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
CommittedPainting = Commit
"""A painting whose current commit marker names it (`pipeline.layout.Commit`)."""
__all__ = ["CommittedPainting", "IntegrityError", "Listing", "Metadata", "PaintingResult", "Unavailable",
           "latest_failures", "list_committed", "parse_result", "read_verified"]

Metadata = make_dataclass("Metadata", [(k, "str | None", field(default=None)) for k in METADATA_COLUMNS],
                          frozen=True)
Metadata.__doc__ = "Catalogue metadata from result.json (`layout.METADATA_COLUMNS`); untrusted strings or None."
MAX_EXTRA = 50
"""Pass-through columns shown at most (in the order of result.json "extra")."""


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
    extra: list[tuple[str, str]] = field(default_factory=list)   # pass-through manifest columns, as text


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


def list_committed(fs: fsspec.AbstractFileSystem, out_path: str) -> Listing:
    """Committed paintings under OUT, from ONE listing of the commit markers and one bulk read of them."""
    scan = layout.scan_commits(fs, out_path)
    commits, bad = layout.read_commits(fs, out_path, sorted(scan.current.values(), key=lambda r: r.painting_id))
    listing = Listing(committed=commits, rejected=[Unavailable(b.painting_id, b.reason) for b in bad])
    for path in scan.foreign:
        name = posixpath.basename(posixpath.dirname(path))[:128]
        listing.rejected.append(Unavailable(name, "not a commit marker"))
    return listing


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
    extra = doc.get("extra") if isinstance(doc.get("extra"), dict) else {}
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
        extra=[(key[:200], text) for key, value in list(extra.items())[:MAX_EXTRA]
               if isinstance(key, str) and (text := _text(value)) is not None],
    )


def _modified(fs: fsspec.AbstractFileSystem, path: str) -> float:
    try:
        return fs.modified(path).timestamp()
    except (NotImplementedError, OSError, AttributeError):
        return 0.0


def latest_failures(fs: fsspec.AbstractFileSystem, out_path: str) -> list[Unavailable]:
    """Failed paintings of the most recent run (newest `runs/*/report.parquet`, ties broken by run id)."""
    import pyarrow.parquet as pq

    reports = fs.glob(posixpath.join(out_path, layout.RUNS_DIR, "*", layout.REPORT_NAME))
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
