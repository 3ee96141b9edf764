"""The output tree's one definition: ids, paths, file names, commit markers (name, content, listing), the run
report's schema and the catalogue metadata keys. Storage writes it, the gallery, `status` and `plan` read it.

    OUT/paintings/<id>/<version>/<files>        one commit's new files; never rewritten once written
    OUT/commits/<id>/<version>.<t>.<i>.<s>.<r>.<m>.json
                                                the commit marker, written LAST: the painting's current version
    OUT/runs/<run_id>/config.json, report.parquet, attempts/<id>/<uuid>
    OUT/claims/<id>/g<generation>.json          a live claim on the painting (`pipeline.claims`): who works on it

A version is `v<seq>-<nonce>` (`v000003-9f2c1a`); the marker of the highest (seq, nonce) is the painting's
current commit. A marker lists every file of the painting as {name: {path, bytes, sha256}}, where `path` is
relative to `paintings/<id>/` and may lie in an OLDER version folder: a commit that only re-renders or only
refreshes metadata writes its new files into a new folder and refers to the unchanged ones (the delta) where
they are. Files are never overwritten, so the files of a new version never mix with those the current marker
lists: readers see the old commit, whole, until the new marker exists, then the new one.

The marker's name carries the painting's fingerprints (16 hex digits each): `t` tuning inputs (settings, base
weights, the row's crop/alignment/pose), `i` the image bytes' sha256, `s` the image's listing stamp (size and
ETag or mtime), `r` render inputs, `m` metadata. So ONE listing of `commits/` decides, for a whole catalogue,
which paintings to skip, refresh, re-render or tune, without reading a single marker.
"""
from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import fsspec
import pyarrow as pa

# ------------------------------------------------------------------------------------------------------ ids

MAX_ID_LENGTH = 128
# The one id rule, shared by the manifest check, painting folders, markers and run folders.
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LayoutError(ValueError):
    """An unsafe id or relative path, or a malformed marker; the message says what to change."""


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
    """Return `value` if it is a safe id, else raise LayoutError naming the rule."""
    problem = painting_id_problem(value)
    if problem:
        raise LayoutError(f"{what} {value!r} {problem} (ids must match {SAFE_ID_PATTERN})")
    return value  # type: ignore[return-value]


def check_relpath(relpath: object) -> str:
    """A file name inside a painting: relative, '/'-separated, no empty, '.' or '..' parts."""
    if not isinstance(relpath, str) or relpath == "":
        raise LayoutError(f"file name {relpath!r} must be a non-empty string")
    if "\\" in relpath or _CONTROL.search(relpath):
        raise LayoutError(f"file name {relpath!r} contains a backslash or control character; use '/' separators")
    if relpath.startswith("/") or re.match(r"^[A-Za-z]:", relpath):
        raise LayoutError(f"file name {relpath!r} is absolute; give a path relative to the painting folder")
    if any(p in ("", ".", "..") for p in relpath.split("/")):
        raise LayoutError(f"file name {relpath!r} has an empty, '.' or '..' part")
    return relpath


# ---------------------------------------------------------------------------------------------- folders

PAINTINGS_DIR = "paintings"
COMMITS_DIR = "commits"
RUNS_DIR = "runs"
REPORT_NAME = "report.parquet"
RUN_CONFIG_NAME = "config.json"
ATTEMPTS_DIR = "attempts"
CLAIMS_DIR = "claims"


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def paintings_root(root: str) -> str:
    return join(root, PAINTINGS_DIR)


def commits_root(root: str) -> str:
    return join(root, COMMITS_DIR)


def painting_dir(root: str, painting_id: str) -> str:
    """The folder holding a painting's version folders; raises LayoutError for any id that could escape."""
    return join(root, PAINTINGS_DIR, check_id(painting_id))


def commit_dir(root: str, painting_id: str) -> str:
    return join(root, COMMITS_DIR, check_id(painting_id))


def run_dir(root: str, run_id: str) -> str:
    return join(root, RUNS_DIR, check_id(run_id, "run_id"))


# ------------------------------------------------------------------------------------------------ claims
# A claim is a folder of generation objects (`pipeline.claims`): `<claims folder>/<subject>/g<generation>.json`
# is a held claim, `g<generation>.released` what is left of a released one (it keeps the generation number, so
# numbers only grow). Taking a subject is CREATING the next generation's .json with an atomic create; the
# highest generation is the holder. Paintings are claimed under OUT/claims/<painting_id>/, a gallery site under
# SITE/_claims/gallery/, a `prepare` output under <stem>.review/_claims/prepare/.

SITE_CLAIMS_DIR = "_claims"
GALLERY_SUBJECT = "gallery"
PREPARE_SUBJECT = "prepare"
_CLAIM = re.compile(r"^g(\d{12})\.(json|released)$")


def claims_root(root: str) -> str:
    """Where the painting claims of an output lie."""
    return join(root, CLAIMS_DIR)


def claim_dir(folder: str, subject: str) -> str:
    """The folder of one subject's claim generations."""
    return join(folder, check_id(subject, "claim subject"))


def claim_name(generation: int, released: bool = False) -> str:
    if not 0 < generation < 10 ** 12:
        raise LayoutError(f"claim generation {generation} is out of range (1 .. 10^12 - 1)")
    return f"g{generation:012d}." + ("released" if released else "json")


def parse_claim_name(path: str) -> tuple[int, bool] | None:
    """(generation, released) of a claim object's path, or None when the path is not one."""
    m = _CLAIM.fullmatch(posixpath.basename(path))
    return (int(m.group(1)), m.group(2) == "released") if m else None


def site_claims_root(site_root: str) -> str:
    return join(site_root, SITE_CLAIMS_DIR)


# --------------------------------------------------------------------------------------- prepare's outputs


def prepare_paths(out_uri: str) -> tuple[str, str, str, str]:
    """`prepare -o OUT.parquet` -> (manifest, report, review page, review folder) beside it. The review folder
    holds one sub-folder of images per prepare run (`<stem>.review/<run_id>/`, the page names its own) and the
    output's claims (`<stem>.review/_claims/`)."""
    stem = out_uri[:-len(".parquet")] if out_uri.endswith(".parquet") else out_uri
    return out_uri, f"{stem}.report.parquet", f"{stem}.review.html", f"{stem}.review"


# ------------------------------------------------------------------------------------ a painting's files

DELTA = "delta.safetensors"
RESULT = "result.json"
REFERENCE = "reference.png"
INPUT = "input.png"                      # the tuned face square: what the delta was fitted to (likeness, review)
MESH = "mesh.glb"                        # the tuned head as a coloured glTF 2.0 mesh (model.mesh); a render
PAINTING = "painting.jpg"                # a web-sized copy of the whole painting the delta was tuned from
MODEL_CARD = "model_card.md"             # provenance and AI disclosure (pipeline.provenance); rewritten with result.json
TURNTABLE_WEBP = "renders/turntable.webp"
TURNTABLE_DIR = "renders/turntable/"
EXPRESSIONS_DIR = "renders/expressions/"
FRAME_PATH = re.compile(r"^renders/turntable/(\d{1,5})\.png$")
TUNED_FILES = (DELTA, INPUT, PAINTING)    # what only tuning writes; a re-render or refresh keeps them
METADATA_FILES = (RESULT, MODEL_CARD)     # what a metadata refresh rewrites (every commit writes them anew)
FILES_FORMAT = 4
"""Version of the set of files a commit holds (bump when renders gain or lose a format): part of `r`.
4: mesh.glb carries a morph target per expression still."""


def frame_name(index: int) -> str:
    return f"{TURNTABLE_DIR}{index:03d}.png"


def expression_name(name: str) -> str:
    return f"{EXPRESSIONS_DIR}{name}.png"


def is_render(rel: str) -> bool:
    """Files a re-render replaces (everything but the tuned files and result.json)."""
    return rel in (REFERENCE, MESH) or rel.startswith("renders/")


# ------------------------------------------------------------------------------------------ fingerprints

FINGERPRINT_LENGTH = 16
UNKNOWN = "0" * FINGERPRINT_LENGTH
_HEX = re.compile(r"^[0-9a-f]{16}$")


class Fingerprints(NamedTuple):
    """What decided a commit (16 hex digits each; see the module docstring). `UNKNOWN` matches nothing real."""

    tune: str = UNKNOWN
    image: str = UNKNOWN
    stamp: str = UNKNOWN
    render: str = UNKNOWN
    metadata: str = UNKNOWN

    def check(self) -> "Fingerprints":
        for name, value in self._asdict().items():
            if not isinstance(value, str) or not _HEX.fullmatch(value):
                raise LayoutError(f"fingerprint {name} must be {FINGERPRINT_LENGTH} lowercase hex digits, "
                                  f"got {value!r}")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, str] | None) -> "Fingerprints":
        data = data or {}
        return cls(**{k: data.get(k, UNKNOWN) for k in cls._fields}).check()


def digest(value: Any) -> str:
    """The fingerprint of a JSON-able value (sorted keys; anything else stringified)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


# ---------------------------------------------------------------------------------------- versions, markers

_VERSION = re.compile(r"^v(\d{6,9})-([0-9a-f]{6})$")
_MARKER = re.compile(r"^(v\d{6,9}-[0-9a-f]{6})\.([0-9a-f]{16})\.([0-9a-f]{16})\.([0-9a-f]{16})\.([0-9a-f]{16})"
                     r"\.([0-9a-f]{16})\.json$")


def new_version(seq: int) -> str:
    """A fresh version name; the nonce keeps two writers of one sequence number (a duplicated task) apart."""
    return f"v{seq:06d}-{secrets.token_hex(3)}"


def version_order(version: str) -> tuple[int, str] | None:
    """(seq, nonce) of a version name, or None when it is not one."""
    m = _VERSION.fullmatch(version)
    return (int(m.group(1)), m.group(2)) if m else None


def marker_name(version: str, fingerprints: Fingerprints) -> str:
    if version_order(version) is None:
        raise LayoutError(f"{version!r} is not a version name (v<seq>-<6 hex>)")
    return ".".join([version, *fingerprints.check()]) + ".json"


@dataclass(frozen=True)
class CommitRef:
    """A commit marker as a listing shows it: no read needed."""

    painting_id: str
    version: str
    fingerprints: Fingerprints
    path: str                                # the marker's path in the OUT filesystem

    @property
    def order(self) -> tuple[int, str]:
        return version_order(self.version)  # type: ignore[return-value]


def parse_marker_path(path: str) -> CommitRef | None:
    """The CommitRef of `.../commits/<id>/<marker name>`, or None when the path is not a marker's."""
    folder, name = posixpath.split(path)
    painting_id = posixpath.basename(folder)
    m = _MARKER.fullmatch(name)
    if not m or painting_id_problem(painting_id):
        return None
    return CommitRef(painting_id, m.group(1), Fingerprints(*m.groups()[1:]), path)


@dataclass
class Scan:
    """One listing of commits/: the current commit of each painting, and what it superseded."""

    current: dict[str, CommitRef] = field(default_factory=dict)
    superseded: list[CommitRef] = field(default_factory=list)   # older markers a crash left behind
    foreign: list[str] = field(default_factory=list)             # paths under commits/ that are no marker


def scan_commits(fs: fsspec.AbstractFileSystem, root: str) -> Scan:
    """Every painting's current commit from ONE recursive listing of `commits/` (s3fs: paginated
    list_objects_v2, 1,000 markers a page); no marker is read."""
    base = commits_root(root)
    fs.invalidate_cache(base)
    try:
        paths = fs.find(base)
    except FileNotFoundError:
        paths = []
    scan = Scan()
    for path in paths:
        ref = parse_marker_path(path)
        if ref is None or posixpath.dirname(posixpath.dirname(path)) != base.rstrip("/"):
            scan.foreign.append(path)
            continue
        best = scan.current.get(ref.painting_id)
        if best is None or ref.order > best.order:
            if best is not None:
                scan.superseded.append(best)
            scan.current[ref.painting_id] = ref
        else:
            scan.superseded.append(ref)
    return scan


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit: where it lies (relative to `paintings/<id>/`), its size and sha256."""

    path: str
    size: int
    sha256: str

    def as_json(self) -> dict:
        return {"path": self.path, "bytes": self.size, "sha256": self.sha256}


def file_entry(path: str, data: bytes) -> FileEntry:
    return FileEntry(path, len(data), hashlib.sha256(data).hexdigest())


@dataclass
class Commit:
    """A parsed commit marker: the painting's current files and what made them."""

    painting_id: str
    version: str
    root: str                                # paintings/<id> in the OUT filesystem
    run_id: str
    config_hash: str
    files: dict[str, FileEntry]
    doc: dict                                # the whole marker (inputs, seconds, flags ...)

    def path_of(self, rel: str) -> str:
        return f"{self.root}/{self.files[rel].path}"

    def frame_paths(self) -> list[str]:
        """Turntable frame names in numeric order (only those the marker lists)."""
        numbered = [(int(m.group(1)), rel) for rel in self.files if (m := FRAME_PATH.match(rel))]
        return [rel for _, rel in sorted(numbered)]

    @property
    def fingerprints(self) -> Fingerprints:
        return Fingerprints.from_dict(self.doc.get("fingerprints"))


def parse_marker(raw: bytes, ref: CommitRef, root: str) -> Commit:
    """Check and parse a marker's content against the listing entry it came from (`root` is OUT's path).

    Everything in it is untrusted: it must name this painting and version, and every file path must be a
    normalised path inside one of this painting's version folders."""
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("painting_id") != ref.painting_id or doc.get("version") != ref.version:
        raise LayoutError("marker does not name this painting and version")
    entries = doc.get("files")
    if not isinstance(entries, dict):
        raise LayoutError("marker has no file list")
    files: dict[str, FileEntry] = {}
    for rel, entry in entries.items():
        check_relpath(rel)
        path = entry.get("path") if isinstance(entry, dict) else None
        if (not isinstance(path, str) or posixpath.normpath(path) != path or version_order(path.split("/", 1)[0])
                is None or "/" not in path):
            raise LayoutError(f"unsafe or foreign path in marker: {path!r}")
        check_relpath(path)
        files[rel] = FileEntry(path, int(entry["bytes"]), str(entry["sha256"]).lower())
    return Commit(ref.painting_id, ref.version, painting_dir(root, ref.painting_id), str(doc.get("run_id", "")),
                  str(doc.get("config_hash", "")), files, doc)


def marker_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


class IntegrityError(Exception):
    """A committed file is missing or differs from what its marker recorded."""


def read_verified(fs: fsspec.AbstractFileSystem, commit: Commit, rel: str) -> bytes:
    """A committed file's bytes, after checking size and sha256 against the marker."""
    entry = commit.files.get(rel)
    if entry is None:
        raise IntegrityError(f"{rel} is not in the commit marker")
    try:
        data = fs.cat_file(commit.path_of(rel))
    except FileNotFoundError as err:
        raise IntegrityError(f"{rel} is missing") from err
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise IntegrityError(f"{rel} changed after commit")
    return data


@dataclass(frozen=True)
class Unreadable:
    painting_id: str
    reason: str


def read_commits(fs: fsspec.AbstractFileSystem, root: str, refs: list[CommitRef]
                 ) -> tuple[list[Commit], list[Unreadable]]:
    """The markers of `refs`, fetched in one batched (concurrent on s3fs) `cat`; bad ones with their reason."""
    raw_by_path = fs.cat([r.path for r in refs], on_error="return") if refs else {}
    commits, bad = [], []
    for ref in refs:
        raw = raw_by_path.get(ref.path)
        try:
            if raw is None or isinstance(raw, BaseException):
                raise LayoutError(f"unreadable marker: {raw!r}")
            commits.append(parse_marker(raw, ref, root))
        except (LayoutError, ValueError, KeyError, TypeError) as err:
            bad.append(Unreadable(ref.painting_id, f"bad commit marker: {err}"))
    return commits, bad


# ----------------------------------------------------------------------------------------- catalogue metadata

METADATA_COLUMNS = ("title", "artist", "date", "rights", "credit_line", "source_url")
"""Manifest columns shown by the gallery: result.json "metadata" has exactly these keys; every other manifest
column (not a known one) passes through as result.json "extra"."""
URI_METADATA = ("rights", "source_url")
MAX_TEXT = 2000
"""Longest metadata string the gallery keeps (longer ones are cut)."""


def plain_json(value: Any) -> Any:
    """A pass-through manifest value as JSON data: dates and decimals as text, NaN as null, bytes as hex."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return str(value)


# ---------------------------------------------------------------------------------------------- run report

STATUSES = ("done", "rendered", "refreshed", "skipped", "claimed", "failed", "invalid", "pending")
"""Report `status`: done = tuned and committed; rendered = re-rendered from the stored delta; refreshed =
result.json/metadata rewritten, no model; skipped = nothing changed (or an earlier failure that retrying cannot
fix: `error_kind` set; or another run committed exactly this meanwhile); claimed = another run holds a live
claim on the painting (the message names its run id; a later run picks the painting up if it is never
committed); failed; invalid = manifest row refused; pending = not finished yet (partial reports)."""
COMMITTING = ("done", "rendered", "refreshed")

# The run report (runs/<run_id>/report.parquet): one row per manifest row of the run; its one definition.
REPORT_SCHEMA = pa.schema([
    ("painting_id", pa.string()), ("status", pa.string()), ("error_kind", pa.string()), ("message", pa.string()),
    ("attempts", pa.int32()), ("seconds_total", pa.float64()), ("seconds_stage1", pa.float64()),
    ("seconds_stage2", pa.float64()), ("lpips_ref", pa.float64()), ("psnr_ref", pa.float64()),
    ("lpips_stage1", pa.float64()), ("delta_bytes", pa.int64()), ("pose_estimated", pa.bool_()),
    ("pose_source", pa.string()), ("face_confidence", pa.float64()), ("face_detected_fraction", pa.float64()),
    ("face_identity_consistency", pa.float64()), ("face_likeness", pa.float64()),
    ("face_pose_error_deg", pa.float64()), ("flags", pa.string()), ("version", pa.string()),
    ("fingerprint", pa.string()), ("run_id", pa.string()), ("config_hash", pa.string()),
])
REPORT_STATE_KEY = b"artmator.state"
"""Parquet key-value metadata of a report: "running" while the run is going (rewritten periodically), then
"finished"."""


def report_state(schema: pa.Schema) -> str:
    meta = schema.metadata or {}
    return (meta.get(REPORT_STATE_KEY) or b"finished").decode()
