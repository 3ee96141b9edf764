"""What changed since a painting was committed, and the cheapest correct action for it (`run`, `plan`).

A painting's commit marker carries five fingerprints (`pipeline.layout.Fingerprints`); this module computes them
for a manifest row without loading a model and compares:

| fingerprint | covers                                                                                  | changed -> |
|-------------|-----------------------------------------------------------------------------------------|------------|
| `t` tune    | tuning/image settings, base weights (file contents), the row's crop, face_align, pose    | tune       |
| `i` image   | sha256 of the image bytes                                                               | tune       |
| `s` stamp   | the image's URI, size and ETag/mtime as a listing shows them (a cheap proxy for `i`)    | re-hash    |
| `r` render  | render settings (the mesh grid among them), the row's expressions, face metrics on/off,  | render     |
|             | the set of files written                                                                |            |
| `m` metadata| title, artist, date, rights, credit line, source URL, every pass-through column and the  | refresh    |
|             | weights' licence the model cards state                                                  |            |

The image is re-read and hashed only when its stamp moved (a re-upload, a touched file): same bytes then only
refresh the stamp; other bytes retune. Expressions given as `.mat` URIs and CLIP/LPIPS weight URIs count by
URI, base generator weights by content.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import fsspec

from artmator.pipeline.config_schema import encode
from artmator.pipeline.layout import (FILES_FORMAT, METADATA_COLUMNS, UNKNOWN, CommitRef, Fingerprints, digest,
                                      plain_json)
from artmator.pipeline.manifest import PaintingTask

ACTIONS = ("tune", "render", "refresh", "skip")
STATUS_OF = {"tune": "done", "render": "rendered", "refresh": "refreshed", "skip": "skipped"}
_STAMP_KEYS = ("ETag", "etag", "Content-MD5", "Digest", "mtime", "LastModified", "Last-Modified", "last_modified",
               "created")
_LIST_PARENT_FROM = 16
"""A folder holding at least this many of the catalogue's images is listed once instead of asked per image."""


# ------------------------------------------------------------------------------------------------ inputs

def settings_dict(settings) -> dict:
    """The JobSettings that change results, as plain JSON data (what the fingerprints hash): settings declared
    `result=False` (batching, chunking, caches, the device, weight URIs) are left out."""
    return encode(settings, result_only=True)


def base_identity(settings, storage_options: Mapping | None = None) -> dict:
    """The base generator by content, without loading it: preset, seed, head prior and the sha256 of every weight
    file (weightless presets are their name and seed)."""
    backbone = settings.backbone
    weights = dict(backbone.weights)
    return {"preset": backbone.preset, "seed": backbone.seed, "head_prior": bool(backbone.head_prior and not weights),
            "weights": {part: content_sha256(uri, storage_options) for part, uri in sorted(weights.items())}}


def tune_inputs(task: PaintingTask, settings, base: Mapping, encoded: Mapping | None = None) -> dict:
    """What decides a painting's tuned delta, besides its image bytes (`encoded`: `settings_dict(settings)` when
    the caller has it already)."""
    d = encoded if encoded is not None else settings_dict(settings)
    row = {"crop": asdict(task.crop) if task.crop else None,
           "face_align": asdict(task.face_align) if task.face_align else None,
           "yaw_deg": task.yaw_deg, "pitch_deg": task.pitch_deg, "pose_source": task.pose_source,
           "face_confidence": task.face_confidence}
    return {"base": dict(base), "tune": d["tune"], "image": d["image"], "row": row}


def render_inputs(task: PaintingTask | None, settings, expressions: list[str] | None = None,
                  encoded: Mapping | None = None) -> dict:
    """What decides a painting's renders given its delta: render settings and the expressions it gets."""
    d = encoded if encoded is not None else settings_dict(settings)
    render = {k: v for k, v in d["render"].items() if k != "expressions"}
    if expressions is None:
        chosen = task.expressions if task is not None and task.expressions is not None else settings.render.expressions
        expressions = None if chosen is None else list(chosen)      # None: the backbone's default stills
    return {"render": render, "expressions": None if expressions is None else list(expressions),
            "face_metrics": bool(settings.face_metrics), "files_format": FILES_FORMAT}


def metadata_inputs(task: PaintingTask, settings=None) -> dict:
    """The catalogue metadata result.json and the model card show: the gallery's columns, every pass-through
    column, and the licence stated for the weights."""
    license_ = settings.backbone.weights_license if settings is not None else "unknown"
    return {"metadata": {k: getattr(task, k) for k in METADATA_COLUMNS}, "extra": plain_json(dict(task.extra)),
            "weights_license": license_}


# ------------------------------------------------------------------------------------------------ images

def _stamp_value(info: Mapping[str, Any]) -> Any:
    for key in _STAMP_KEYS:
        value = info.get(key)
        if value is not None:
            return value.timestamp() if isinstance(value, datetime) else value
    return None


def stamp_of(uri: str, info: Mapping[str, Any] | None) -> str:
    """The stamp fingerprint of an image from its listing/HEAD entry; UNKNOWN when the entry says too little."""
    if not info or info.get("type") == "directory" or info.get("size") is None:
        return UNKNOWN
    value = _stamp_value(info)
    if value is None:
        return UNKNOWN
    return digest({"uri": uri, "size": int(info["size"]), "version": value})


def image_stamps(uris: list[str], storage_options: Mapping | None = None, workers: int = 16) -> dict[str, str]:
    """{uri: stamp fingerprint} for every image; folders holding many of them are listed once (one paginated
    listing answers for thousands), the others are asked per image, concurrently. Unreachable -> UNKNOWN."""
    options = dict(storage_options or {})
    groups: dict[tuple[int, str], list[tuple[str, str]]] = {}
    filesystems: dict[int, fsspec.AbstractFileSystem] = {}
    out: dict[str, str] = {}
    for uri in dict.fromkeys(uris):
        try:
            fs, path = fsspec.core.url_to_fs(uri, **options)
        except (ValueError, ImportError):
            out[uri] = UNKNOWN
            continue
        filesystems[id(fs)] = fs
        groups.setdefault((id(fs), posixpath.dirname(path)), []).append((uri, path))
    singles: list[tuple[fsspec.AbstractFileSystem, str, str]] = []
    for (fs_id, parent), members in groups.items():
        fs = filesystems[fs_id]
        if len(members) < _LIST_PARENT_FROM:
            singles += [(fs, uri, path) for uri, path in members]
            continue
        try:
            fs.invalidate_cache(parent)
            listing = {fs._strip_protocol(e["name"]).rstrip("/"): e for e in fs.ls(parent, detail=True)}
        except (OSError, ValueError):
            listing = {}
        for uri, path in members:
            entry = listing.get(fs._strip_protocol(path).rstrip("/"))
            if entry is None:
                singles.append((fs, uri, path))
            else:
                out[uri] = stamp_of(uri, entry)

    def ask(item) -> tuple[str, str]:
        fs, uri, path = item
        try:
            return uri, stamp_of(uri, fs.info(path))
        except Exception:  # noqa: BLE001 - a missing or unreachable image is reported when it is tuned
            return uri, UNKNOWN

    if singles:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            out.update(pool.map(ask, singles))
    return out


def content_sha256(uri: str, storage_options: Mapping | None = None) -> str:
    """sha256 of a file's bytes, streamed (local path or fsspec URI)."""
    h = hashlib.sha256()
    with fsspec.open(uri, "rb", **dict(storage_options or {})) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def image_fingerprint(sha256_hex: str) -> str:
    return sha256_hex[:len(UNKNOWN)]


# ---------------------------------------------------------------------------------------------- deciding

@dataclass
class RowPlan:
    """One valid manifest row: its action, the fingerprints it will commit under, and the inputs behind them."""

    task: PaintingTask
    action: str
    fingerprints: Fingerprints               # `image` stays UNKNOWN for a tune until the actor reads the bytes
    inputs: dict                             # {"tune", "render", "metadata", "image": {"uri", "stamp"}}
    current: CommitRef | None = None         # the commit it replaces (None: never committed)
    reason: str = ""

    @property
    def failure_key(self) -> str:
        """What an earlier failure must match to be skipped: tuning inputs, image stamp, render inputs."""
        f = self.fingerprints
        return f"{f.tune}.{f.stamp}.{f.render}"


@dataclass
class Decider:
    """Decides rows against the current commits; images are re-hashed only when their stamp moved."""

    settings: Any
    base: dict
    stamps: Mapping[str, str]
    storage_options: Mapping | None = None
    force: bool = False
    rehash_workers: int = 8
    rehashed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The settings are the same for every row: encode them once (it was a third of a 10,000-row plan's time).
        self._encoded = settings_dict(self.settings)

    def inputs(self, task: PaintingTask) -> tuple[dict, Fingerprints]:
        inputs = {"tune": tune_inputs(task, self.settings, self.base, self._encoded),
                  "render": render_inputs(task, self.settings, encoded=self._encoded),
                  "metadata": metadata_inputs(task, self.settings),
                  "image": {"stamp": self.stamps.get(task.image_uri, UNKNOWN)}}
        return inputs, Fingerprints(digest(inputs["tune"]), UNKNOWN, inputs["image"]["stamp"],
                                    digest(inputs["render"]), digest(inputs["metadata"]))

    def decide(self, tasks: list[PaintingTask], current: Mapping[str, CommitRef]) -> list[RowPlan]:
        rows = []
        need_hash: list[RowPlan] = []
        for task in tasks:
            inputs, new = self.inputs(task)
            ref = current.get(task.painting_id)
            row = RowPlan(task, "tune", new, inputs, ref)
            if self.force:
                row.reason = "--force"
            elif ref is None:
                row.reason = "not committed"
            elif ref.fingerprints.tune != new.tune:
                row.reason = "tuning inputs changed"
            elif ref.fingerprints.stamp == new.stamp and new.stamp != UNKNOWN:
                self._after_image(row, ref.fingerprints.image, stamp_moved=False)
            else:
                need_hash.append(row)
            rows.append(row)
        for row, sha in zip(need_hash, self._hashes([r.task.image_uri for r in need_hash])):
            self.rehashed.append(row.task.painting_id)
            if sha is None:
                row.reason = "image unreadable now"
            elif image_fingerprint(sha) != row.current.fingerprints.image:
                row.reason = "image bytes changed"
            else:
                self._after_image(row, row.current.fingerprints.image, stamp_moved=True)
        return rows

    def _after_image(self, row: RowPlan, image: str, stamp_moved: bool) -> None:
        """The delta still holds: render, refresh or skip."""
        row.fingerprints = row.fingerprints._replace(image=image)
        old = row.current.fingerprints
        if old.render != row.fingerprints.render:
            row.action, row.reason = "render", "render inputs changed"
        elif old.metadata != row.fingerprints.metadata:
            row.action, row.reason = "refresh", "metadata changed"
        elif stamp_moved:
            row.action, row.reason = "refresh", "image stamp moved, bytes unchanged"
        else:
            row.action, row.reason = "skip", "unchanged"

    def _hashes(self, uris: list[str]) -> list[str | None]:
        def one(uri: str) -> str | None:
            try:
                return content_sha256(uri, self.storage_options)
            except Exception:  # noqa: BLE001 - the tune that follows reports why
                return None

        if not uris:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.rehash_workers) as pool:
            return list(pool.map(one, uris))


def count_actions(rows: list[RowPlan]) -> dict[str, int]:
    return {a: sum(r.action == a for r in rows) for a in ACTIONS}


def fresh_plan(task: PaintingTask, settings, base: Mapping, stamp: str = UNKNOWN) -> RowPlan:
    """A tune plan for a row decided by nobody (`artmator tune`-like callers, tests): every input, no commit."""
    decider = Decider(settings, dict(base), {task.image_uri: stamp}, force=True)
    inputs, fingerprints = decider.inputs(task)
    return RowPlan(task, "tune", fingerprints, inputs, None, "not planned")
