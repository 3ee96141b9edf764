"""The catalog manifest: one Parquet row per painting -> typed tasks for valid rows, reasons for the rest.

A museum hands over a Parquet file (local path or any fsspec URI). `validate_manifest` reports EVERY problem
at once (vectorised with pyarrow.compute: 10,000 rows take milliseconds); `split_manifest` turns the valid
rows into `PaintingTask`s and returns the `Problem`s of the others, so a run skips bad rows with a reason and
goes on. Problems with `row=None` concern the whole manifest (a missing or mistyped column): no row is valid
then, and a run should refuse to start. The column contract is documented in manifests/schema.md.
"""
from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from artmator.pipeline.layout import METADATA_COLUMNS, SAFE_ID_PATTERN, URI_METADATA, painting_id_problem
from artmator.pipeline.storage import redact_text, redact_uri

# Same limits as model.camera (not imported: the pipeline must not pull in torch to read a manifest).
MAX_ABS_YAW_DEG = 90.0
MAX_ABS_PITCH_DEG = 60.0
EXPRESSION_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_PROTOCOL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HTTP_URI = r"^https?://[^\s/?#]+[^\s]*$"

CROP_TYPE = pa.struct([("x", pa.int64()), ("y", pa.int64()), ("w", pa.int64()), ("h", pa.int64())])
ALIGN_TYPE = pa.struct([("cx", pa.float64()), ("cy", pa.float64()), ("size", pa.float64()), ("angle_deg", pa.float64())])
ALIGN_FIELDS = ("cx", "cy", "size", "angle_deg")
POSE_SOURCES = ("given", "landmarks", "search")


def _field(name: str, type_: pa.DataType, doc: str, required: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=not required, metadata={"doc": doc, "required": str(required).lower()})


MANIFEST_SCHEMA = pa.schema([
    _field("painting_id", pa.string(), f"unique folder-safe id, {SAFE_ID_PATTERN}", required=True),
    _field("image_uri", pa.string(), "local path (relative to the manifest's folder) or fsspec URI", required=True),
    _field("yaw_deg", pa.float64(), "head yaw in degrees, 0 = frontal, |yaw| <= 90; null = pose search"),
    _field("pitch_deg", pa.float64(), "head pitch in degrees, |pitch| <= 60; null = pose search"),
    _field("crop", CROP_TYPE, "face box in image pixels (x, y, w, h); a list of 4 ints is accepted too"),
    _field("face_align", ALIGN_TYPE, "the face's training crop: square centre (cx, cy), side `size` in image "
           "pixels, rotated by angle_deg counter-clockwise (written by `artmator prepare`)"),
    _field("pose_source", pa.string(), "where yaw/pitch came from: given, landmarks or search"),
    _field("face_confidence", pa.float64(), "the face detector's confidence in [0, 1]"),
    _field("title", pa.string(), "title shown in the gallery"),
    _field("artist", pa.string(), "artist shown in the gallery"),
    _field("date", pa.string(), "date as free text, e.g. 'c. 1665' (integer years are accepted)"),
    _field("rights", pa.string(), "rights statement or licence URI (http/https)"),
    _field("credit_line", pa.string(), "credit line shown in the gallery"),
    _field("source_url", pa.string(), "page of the painting in the museum's collection (http/https)"),
    _field("expressions", pa.list_(pa.string()), "expressions to render: built-in names or .mat URIs"),
])
REQUIRED_COLUMNS = tuple(f.name for f in MANIFEST_SCHEMA if not f.nullable)
KNOWN_COLUMNS = tuple(MANIFEST_SCHEMA.names)


class ManifestError(ValueError):
    """The manifest cannot be read at all (missing, not Parquet, empty)."""


@dataclass(frozen=True)
class Problem:
    """One reason a row (or, with `row=None`, the whole manifest) cannot be processed.

    `row` is the 0-based position in the manifest; `column` the column at fault; `reason` says what to change.
    """

    row: int | None
    painting_id: str | None
    column: str
    reason: str

    def __str__(self) -> str:
        where = "manifest" if self.row is None else f"row {self.row}"
        if self.painting_id is not None:
            where += f" ({_short(self.painting_id)})"
        return f"{where}: {self.column}: {self.reason}"


@dataclass(frozen=True)
class Crop:
    """Face box in source-image pixels: left `x`, top `y`, width `w`, height `h`."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class FaceAlign:
    """The face's training crop in source-image pixels (see model.faces.align.FaceAlignment, which it mirrors
    without importing torch): a square centred on (cx, cy), side `size`, rotated by `angle_deg`
    counter-clockwise as seen on screen."""

    cx: float
    cy: float
    size: float
    angle_deg: float = 0.0


@dataclass(frozen=True)
class PaintingTask:
    """A valid manifest row, typed; `image_uri` and `.mat` expressions are resolved against the manifest folder.

    `yaw_deg`/`pitch_deg` are both None when the pose must be searched. `expressions` is None when the row
    names none (the run's default applies) and () for an explicit empty list. `extra` holds the unknown
    columns, passed through untouched to results and the gallery.
    """

    row: int
    painting_id: str
    image_uri: str
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    crop: Crop | None = None
    face_align: FaceAlign | None = None
    pose_source: str | None = None
    face_confidence: float | None = None
    title: str | None = None
    artist: str | None = None
    date: str | None = None
    rights: str | None = None
    credit_line: str | None = None
    source_url: str | None = None
    expressions: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def needs_pose_search(self) -> bool:
        return self.yaw_deg is None

    def as_row(self) -> dict[str, Any]:
        """Plain-Python dict (e.g. a Ray Data row); `task_from_row` turns it back into a task."""
        return asdict(self)


def task_from_row(row: Mapping[str, Any]) -> PaintingTask:
    """Inverse of `PaintingTask.as_row` (Ray Data hands rows back as dicts)."""
    crop = row.get("crop")
    exps = row.get("expressions")
    align = row.get("face_align")
    return PaintingTask(**{**row, "crop": Crop(**crop) if crop else None,
                           "face_align": FaceAlign(**align) if align else None,
                           "expressions": tuple(exps) if exps is not None else None,
                           "extra": dict(row.get("extra") or {})})


# --------------------------------------------------------------------------------------------------- reading


def read_manifest(uri: str, storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """Read a Parquet manifest (file or folder of files) from a local path or fsspec URI, unvalidated.

    Raises ManifestError when it does not exist, is not Parquet, or has no rows.
    """
    shown = redact_uri(uri)
    try:
        fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise ManifestError(f"cannot open manifest {shown}: {redact_text(str(exc))}") from exc
    if not fs.exists(path):
        raise ManifestError(f"manifest {shown} does not exist")
    try:
        table = pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"manifest {shown} is not a readable Parquet file ({redact_text(str(exc))}); "
                            "write it with pyarrow/pandas `to_parquet` (columns: manifests/schema.md)") from exc
    if table.num_rows == 0:
        raise ManifestError(f"manifest {shown} has no rows")
    return table


def manifest_base_dir(uri: str) -> str:
    """The folder relative `image_uri`s resolve against: the manifest's parent (query strings dropped)."""
    if _PROTOCOL.match(uri):
        base = uri.split("?", 1)[0] if uri.startswith(("http://", "https://")) else uri
        return base.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(uri))


def resolve_uri(uri: str, base_dir: str | None) -> str:
    """`uri` as is when absolute (a URI or absolute path), else joined onto `base_dir` (unchanged if None)."""
    if base_dir is None or _PROTOCOL.match(uri) or uri.startswith("file:") or os.path.isabs(uri):
        return uri
    if _PROTOCOL.match(base_dir):
        scheme, rest = base_dir.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, uri))}"
    return os.path.normpath(os.path.join(base_dir, uri))


def load_manifest(uri: str, storage_options: Mapping[str, Any] | None = None
                  ) -> tuple[list[PaintingTask], list[Problem]]:
    """read_manifest + split_manifest with relative paths resolved against the manifest's folder."""
    return split_manifest(read_manifest(uri, storage_options), manifest_base_dir(uri))


# ------------------------------------------------------------------------------------------------ validation


def validate_manifest(table: pa.Table, base_dir: str | None = None) -> list[Problem]:
    """Every problem of the manifest at once, manifest-level ones (row None) first, then by row."""
    return _check(table, base_dir).problems


def split_manifest(table: pa.Table, base_dir: str | None = None) -> tuple[list[PaintingTask], list[Problem]]:
    """(tasks of valid rows, problems of the others), so a run skips bad rows with their reasons and goes on."""
    checked = _check(table, base_dir)
    return _build_tasks(table, checked, base_dir), checked.problems


@dataclass
class _Checked:
    columns: dict[str, pa.Array]  # known columns, conformed to MANIFEST_SCHEMA types (absent -> all null)
    ok: np.ndarray  # bool per row
    problems: list[Problem]


class _Collector:
    """Accumulates row problems from boolean masks; only flagged rows cost Python time."""

    def __init__(self, ids: pa.Array | None, n: int) -> None:
        self.ids = ids.to_pylist() if ids is not None else [None] * n
        self.ok = np.ones(n, dtype=bool)
        self.problems: list[Problem] = []

    def manifest(self, column: str, reason: str) -> None:
        self.problems.append(Problem(None, None, column, reason))
        self.ok[:] = False

    def flag(self, bad: pa.Array | np.ndarray, column: str, reason: str | Callable[[int], str]) -> None:
        mask = bad if isinstance(bad, np.ndarray) else pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
        for row in np.flatnonzero(mask):
            row = int(row)
            text = reason if isinstance(reason, str) else reason(row)
            self.problems.append(Problem(row, self.ids[row], column, text))
        self.ok &= ~mask


def _check(table: pa.Table, base_dir: str | None) -> _Checked:
    n = table.num_rows
    columns, column_problems = _conform(table)
    out = _Collector(columns.get("painting_id"), n)
    for column, reason in column_problems:
        out.manifest(column, reason)
    if n == 0:
        out.manifest("", "the manifest has no rows")
    if "painting_id" in columns:
        _check_ids(columns["painting_id"], out)
    if "image_uri" in columns:
        _check_image_uris(columns["image_uri"], out)
    if "yaw_deg" in columns and "pitch_deg" in columns:
        _check_poses(columns["yaw_deg"], columns["pitch_deg"], out)
    if "crop" in columns:
        _check_crops(columns["crop"], out)
    if "face_align" in columns and "crop" in columns:
        _check_aligns(columns["face_align"], columns["crop"], out)
    if "pose_source" in columns:
        _check_pose_sources(columns["pose_source"], out)
    if "face_confidence" in columns:
        _check_confidences(columns["face_confidence"], out)
    for name in URI_METADATA:
        if name in columns:
            _check_http_uri(columns[name], name, out)
    if "expressions" in columns:
        _check_expressions(columns["expressions"], out)
    out.problems.sort(key=lambda p: (p.row is not None, p.row or 0))
    return _Checked(columns, out.ok, out.problems)


# ---- column types


def _conform(table: pa.Table) -> tuple[dict[str, pa.Array], list[tuple[str, str]]]:
    """Known columns cast to their schema type; (column, reason) for missing, duplicated or mistyped ones."""
    problems: list[tuple[str, str]] = []
    names = table.column_names
    for name in sorted({c for c in names if names.count(c) > 1}):
        problems.append((name, f"column {name!r} appears {names.count(name)} times; keep one"))
    lower = {c.lower(): c for c in names}
    for known in KNOWN_COLUMNS:
        if known not in names and known in lower:
            problems.append((lower[known], f"column {lower[known]!r} looks like {known!r}; names are case-sensitive"))
    columns: dict[str, pa.Array] = {}
    for f in MANIFEST_SCHEMA:
        if f.name not in names:
            if not f.nullable:
                problems.append((f.name, f"required column {f.name!r} is missing (see manifests/schema.md)"))
            else:
                columns[f.name] = pa.nulls(table.num_rows, f.type)
            continue
        if names.count(f.name) > 1:
            continue
        arr = table.column(f.name).combine_chunks()
        conformed = _CONFORM.get(f.name, _to_string)(arr, f.name)
        if isinstance(conformed, str):
            problems.append((f.name, conformed))
        else:
            columns[f.name] = conformed
    return columns, problems


def _decode(arr: pa.Array) -> pa.Array:
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _is_stringish(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t)


def _to_string(arr: pa.Array, name: str) -> pa.Array | str:
    arr = _decode(arr)
    accepts_dates = name == "date" and (pa.types.is_integer(arr.type) or pa.types.is_temporal(arr.type))
    if not (_is_stringish(arr.type) or accepts_dates):
        return f"column {name!r} has type {arr.type}; expected strings"
    out = arr.cast(pa.string())
    if name not in REQUIRED_COLUMNS:  # an empty optional text means "not given"
        out = pc.if_else(pc.equal(out, ""), pa.scalar(None, pa.string()), out)
    return out


def _to_float(arr: pa.Array, name: str) -> pa.Array | str:
    t = arr.type
    if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_null(t)):
        return f"column {name!r} has type {t}; expected numbers (degrees) or nulls"
    return arr.cast(pa.float64())


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _to_crop(arr: pa.Array, name: str) -> pa.Array | str:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), CROP_TYPE)
    if pa.types.is_struct(t):
        fields = sorted(t.field(i).name for i in range(t.num_fields))
        if fields != ["h", "w", "x", "y"] or not all(
                pa.types.is_integer(t.field(i).type) or pa.types.is_null(t.field(i).type) for i in range(t.num_fields)):
            return f"column {name!r} has type {t}; expected struct<x, y, w, h: int> or a list of 4 ints"
        children = [pc.struct_field(arr, k).cast(pa.int64()) for k in "xywh"]
        return pa.StructArray.from_arrays(children, fields=list(CROP_TYPE), mask=pc.is_null(arr))
    if _is_list(t) and (pa.types.is_integer(t.value_type) or pa.types.is_null(t.value_type)):
        four = pc.equal(pc.list_value_length(arr), 4)
        # Wrong-length lists become crops with null parts, which _check_crops reports per row.
        padded = pc.if_else(four, arr.cast(pa.list_(pa.int64())),
                            pa.scalar([None] * 4, pa.list_(pa.int64())))
        padded = pc.if_else(pc.is_null(arr), pa.scalar(None, pa.list_(pa.int64())), padded)
        children = [pc.list_element(padded, i) for i in range(4)]
        return pa.StructArray.from_arrays(children, fields=list(CROP_TYPE), mask=pc.is_null(arr))
    return f"column {name!r} has type {t}; expected struct<x, y, w, h: int> or a list of 4 ints"


def _to_string_list(arr: pa.Array, name: str) -> pa.Array | str:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.list_(pa.string()))
    if _is_list(t) and _is_stringish(t.value_type):
        return arr.cast(pa.list_(pa.string()))
    return f"column {name!r} has type {t}; expected a list of strings"


def _to_align(arr: pa.Array, name: str) -> pa.Array | str:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), ALIGN_TYPE)
    if (pa.types.is_struct(t) and sorted(t.field(i).name for i in range(t.num_fields)) == sorted(ALIGN_FIELDS)
            and all(_is_number(t.field(i).type) for i in range(t.num_fields))):
        children = [pc.struct_field(arr, k).cast(pa.float64()) for k in ALIGN_FIELDS]
        return pa.StructArray.from_arrays(children, fields=list(ALIGN_TYPE), mask=pc.is_null(arr))
    return f"column {name!r} has type {t}; expected struct<cx, cy, size, angle_deg: float64>"


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)


_CONFORM: dict[str, Callable[[pa.Array, str], pa.Array | str]] = {
    "yaw_deg": _to_float, "pitch_deg": _to_float, "crop": _to_crop, "expressions": _to_string_list,
    "face_align": _to_align, "face_confidence": _to_float,
}


# ---- row checks


def _check_ids(ids: pa.Array, out: _Collector) -> None:
    out.flag(pc.is_null(ids), "painting_id", "painting_id is required but is null")
    unsafe = pc.invert(pc.match_substring_regex(ids, SAFE_ID_PATTERN))
    out.flag(unsafe, "painting_id",
             lambda r: f"painting_id {_short(out.ids[r])} {painting_id_problem(out.ids[r])} "
                       f"(ids become folder names and must match {SAFE_ID_PATTERN})")
    # Ids equal up to letter case would share a folder on case-insensitive disks (macOS, Windows).
    rows = pa.array(np.arange(len(ids)))
    groups = pa.table({"key": pc.utf8_lower(ids), "row": rows}).group_by("key").aggregate([("row", "list")])
    groups = groups.filter(pc.greater(pc.list_value_length(groups["row_list"]), 1))
    groups = groups.filter(pc.is_valid(groups["key"]))
    mask = np.zeros(len(ids), dtype=bool)
    reasons: dict[int, str] = {}
    for members in groups["row_list"].to_pylist():
        exact: dict[str, list[int]] = {}
        for r in members:
            exact.setdefault(out.ids[r], []).append(r)
        for pid, rows_of_id in exact.items():  # one message per distinct id: linear in the group size
            cased = [m for other, ms in exact.items() if other != pid for m in ms]
            for r in rows_of_id:
                same = [m for m in rows_of_id[:7] if m != r][:6]
                parts = [f"duplicate painting_id (also in rows {_rows(same, len(rows_of_id) - 1)}); "
                         "ids must be unique"] if len(rows_of_id) > 1 else []
                if cased:
                    parts.append(f"painting_id differs only in letter case from rows {_rows(cased)}; their "
                                 "outputs would collide on case-insensitive disks")
                reasons[r] = "; ".join(parts)
                mask[r] = True
    out.flag(mask, "painting_id", lambda r: reasons[r])


def _check_image_uris(uris: pa.Array, out: _Collector) -> None:
    out.flag(pc.is_null(uris), "image_uri", "image_uri is required but is null")
    out.flag(pc.match_substring_regex(uris, r"^\s*$"), "image_uri", "image_uri is empty")
    out.flag(pc.and_(pc.match_substring_regex(uris, r"\S"), pc.not_equal(pc.utf8_trim_whitespace(uris), uris)),
             "image_uri", "image_uri has leading or trailing whitespace")
    out.flag(pc.match_substring_regex(uris, r"[\x00-\x1f\x7f]"), "image_uri", "image_uri contains a control character")
    out.flag(pc.match_substring_regex(uris, r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@?#]*:[^/@?#]*@"), "image_uri",
             "image_uri embeds a password; pass credentials as storage options, not in the manifest")
    protocols = pc.struct_field(pc.extract_regex(uris, r"^(?P<p>[A-Za-z][A-Za-z0-9+.-]*)://"), "p")
    for protocol in pc.unique(protocols.drop_null()).to_pylist():
        reason = _protocol_problem(protocol)
        if reason:
            out.flag(pc.equal(protocols, protocol), "image_uri", reason)


def _protocol_problem(protocol: str) -> str | None:
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        return f"image_uri uses protocol {protocol!r}, which fsspec does not know (a typo?)"
    except ImportError as exc:
        return f"image_uri uses protocol {protocol!r}, whose package is not installed: {exc}"
    return None


def _check_aligns(align: pa.Array, crop: pa.Array, out: _Collector) -> None:
    given = pc.is_valid(align)
    parts = [pc.struct_field(align, k) for k in ALIGN_FIELDS]
    broken = pc.and_kleene(given, pc.invert(pc.and_(pc.and_(pc.is_finite(parts[0]), pc.is_finite(parts[1])),
                                                 pc.and_(pc.is_finite(parts[2]), pc.is_finite(parts[3])))))
    out.flag(pc.fill_null(broken, True), "face_align", "face_align needs four finite numbers cx, cy, size, angle_deg")
    out.flag(pc.and_(given, pc.less_equal(parts[2], 0)), "face_align",
             lambda r: f"face_align size must be > 0, got {parts[2][r].as_py()}")
    out.flag(pc.and_(given, pc.is_valid(crop)), "face_align",
             "give either crop or face_align, not both (face_align is the aligned square; crop a plain box)")


def _check_pose_sources(sources: pa.Array, out: _Collector) -> None:
    bad = pc.and_(pc.is_valid(sources), pc.invert(pc.is_in(sources, pa.array(POSE_SOURCES))))
    out.flag(bad, "pose_source", lambda r: f"pose_source must be one of {list(POSE_SOURCES)}, "
                                           f"got {_short(sources[r].as_py())}")


def _check_confidences(conf: pa.Array, out: _Collector) -> None:
    bad = pc.and_(pc.is_valid(conf), pc.invert(pc.and_(pc.greater_equal(conf, 0.0), pc.less_equal(conf, 1.0))))
    out.flag(pc.fill_null(bad, False), "face_confidence",
             lambda r: f"face_confidence must be within [0, 1], got {conf[r].as_py()}")


def _check_poses(yaw: pa.Array, pitch: pa.Array, out: _Collector) -> None:
    for name, arr, limit in (("yaw_deg", yaw, MAX_ABS_YAW_DEG), ("pitch_deg", pitch, MAX_ABS_PITCH_DEG)):
        finite = pc.is_finite(arr)
        out.flag(pc.invert(finite), name, lambda r, a=arr, nm=name: f"{nm} must be a finite number, got {a[r].as_py()}")
        out.flag(pc.and_(finite, pc.greater(pc.abs(arr), limit)), name,
                 lambda r, a=arr, nm=name, lim=limit: f"{nm} {a[r].as_py()} is outside [-{lim:g}, {lim:g}] degrees")
    for name, missing, given in (("yaw_deg", yaw, pitch), ("pitch_deg", pitch, yaw)):
        out.flag(pc.and_(pc.is_null(missing), pc.is_valid(given)), name,
                 f"{name} is null but the other angle is given; give both, or leave both null to search the pose")


def _check_crops(crop: pa.Array, out: _Collector) -> None:
    given = pc.is_valid(crop)
    x, y, w, h = (pc.struct_field(crop, k) for k in "xywh")
    incomplete = pc.and_(given, pc.or_(pc.or_(pc.is_null(x), pc.is_null(y)), pc.or_(pc.is_null(w), pc.is_null(h))))
    out.flag(incomplete, "crop", "crop needs exactly four integers x, y, w, h")
    out.flag(pc.or_(pc.less(x, 0), pc.less(y, 0)), "crop",
             lambda r: f"crop x and y must be >= 0, got x={x[r].as_py()}, y={y[r].as_py()}")
    out.flag(pc.or_(pc.less_equal(w, 0), pc.less_equal(h, 0)), "crop",
             lambda r: f"crop w and h must be > 0, got w={w[r].as_py()}, h={h[r].as_py()}")


def _check_http_uri(values: pa.Array, name: str, out: _Collector) -> None:
    # Only http(s): these become links in the gallery, where javascript: or data: URIs would be dangerous.
    bad = pc.and_(pc.is_valid(values), pc.invert(pc.match_substring_regex(values, _HTTP_URI)))
    example = "https://creativecommons.org/publicdomain/mark/1.0/" if name == "rights" else "https://..."
    out.flag(bad, name, lambda r: f"{name} must be an http(s) URI such as {example}, got {_short(values[r].as_py())}")


def _check_expressions(exps: pa.Array, out: _Collector) -> None:
    values = pc.list_flatten(exps)
    parents = pc.list_parent_indices(exps)
    ok = pc.or_(pc.match_substring_regex(values, EXPRESSION_NAME_PATTERN),
                pc.and_(pc.match_substring_regex(values, r"(?i)\.mat$"),
                        pc.invert(pc.match_substring_regex(values, r"[\x00-\x1f\x7f]"))))
    bad_parent = pc.filter(parents, pc.invert(pc.fill_null(ok, False)))
    mask = np.zeros(len(exps), dtype=bool)
    mask[bad_parent.to_numpy()] = True
    out.flag(mask, "expressions",
             lambda r: f"expressions {exps[r].as_py()} must be names like 'happiness' ({EXPRESSION_NAME_PATTERN}) "
                       "or .mat file URIs, without nulls or empty strings")
    pairs = pa.table({"row": parents, "value": values}).group_by(["row", "value"]).aggregate([([], "count_all")])
    dup_rows = pc.filter(pairs["row"], pc.greater(pairs["count_all"], 1))
    mask = np.zeros(len(exps), dtype=bool)
    mask[dup_rows.to_numpy()] = True
    out.flag(mask, "expressions", lambda r: f"expressions {exps[r].as_py()} lists a name twice")


def _rows(rows: list[int], total: int | None = None, most: int = 5) -> str:
    total = len(rows) if total is None else total
    shown = ", ".join(str(r) for r in rows[:most])
    return shown + (f" and {total - most} more" if total > most else "")


def _short(value: Any, most: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= most else text[:most] + "…'"


# ---- tasks


def _build_tasks(table: pa.Table, checked: _Checked, base_dir: str | None) -> list[PaintingTask]:
    idx = pa.array(np.flatnonzero(checked.ok))
    if len(idx) == 0:
        return []
    col = {name: arr.take(idx).to_pylist() for name, arr in checked.columns.items()}
    unknown = [c for c in table.column_names if c not in KNOWN_COLUMNS]
    extras = table.select(unknown).take(idx).to_pylist() if unknown else [{} for _ in range(len(idx))]
    tasks = []
    for i, row in enumerate(idx.to_pylist()):
        exps = col["expressions"][i]
        crop = col["crop"][i]
        align = col["face_align"][i]
        tasks.append(PaintingTask(
            row=row,
            painting_id=col["painting_id"][i],
            image_uri=resolve_uri(col["image_uri"][i], base_dir),
            yaw_deg=col["yaw_deg"][i],
            pitch_deg=col["pitch_deg"][i],
            crop=Crop(**crop) if crop is not None else None,
            face_align=FaceAlign(**align) if align is not None else None,
            pose_source=col["pose_source"][i],
            face_confidence=col["face_confidence"][i],
            **{name: col[name][i] for name in METADATA_COLUMNS},
            expressions=None if exps is None else tuple(
                resolve_uri(e, base_dir) if e.lower().endswith(".mat") else e for e in exps),
            extra=extras[i],
        ))
    return tasks
