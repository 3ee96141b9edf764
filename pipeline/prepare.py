"""`artmator prepare`: a museum's catalog of whole paintings -> a manifest of aligned, posed faces.

catalog (CSV / Parquet / IIIF, `pipeline.catalog`) -> rows validated like any manifest -> Ray Data
`map_batches(PrepareActor)` (face networks loaded once per actor; each row: read at a bounded size, detect,
68 landmarks, training crop, pose; thumbnails for the review page) -> driver writes, in this order:
review assets into this run's own folder `<stem>.review/<run_id>/`, `<stem>.report.parquet`,
`<stem>.review.html`, and LAST `OUT.parquet` (each atomically), then removes older runs' asset folders.

One prepare at a time writes an output: it holds the output's claim (`pipeline.claims`, under
`<stem>.review/_claims/`) and checks it before the manifest is written; a second prepare is refused with the
holder's run id. The manifest and report carry the run id (Parquet metadata `artmator.prepare_run`), the review
page too, and the page shows only its own run's images, so a page never mixes two runs' pictures of a painting.

Every row is independent: an unreadable image or a painting without a usable face gets a status in the report
and the others go on; an image server that stalls, answers 5xx or drops the connection is retried with backoff
within `fetch_timeout_s` per request, then that painting gets one `storage` error naming the cause. Poses
given in the catalog win over estimated ones.
"""
from __future__ import annotations

import io
import json
import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artmator.model.fields import setting
from artmator.pipeline.config_schema import decode, encode
from artmator.pipeline.layout import PREPARE_SUBJECT, prepare_paths
from artmator.pipeline.manifest import MANIFEST_SCHEMA, split_manifest
from artmator.pipeline.storage import atomic_write, redact_text, redact_uri

# Report `status`: ok, or why a row has no usable face (no_face, face_too_small, image, manifest, storage, internal).
REPORT_SCHEMA = pa.schema([
    ("painting_id", pa.string()), ("row", pa.int64()), ("status", pa.string()), ("faces_found", pa.int32()),
    ("face_confidence", pa.float64()), ("yaw_deg", pa.float64()), ("pitch_deg", pa.float64()),
    ("roll_deg", pa.float64()), ("pose_source", pa.string()), ("face_size_px", pa.float64()),
    ("image_uri", pa.string()), ("message", pa.string()),
])


@dataclass(frozen=True)
class PrepareConfig:
    """How `artmator prepare` reads paintings and which faces it keeps (each field is a CLI option)."""

    min_confidence: float = setting(0.5, "Detector score threshold; painted faces score ~0.6-0.98, so higher "
                                      "thresholds drop real paintings.")
    min_face_px: float = setting(64.0, "Smallest usable face: side of its aligned training crop in pixels of the "
                                    "image as image_uri serves it; smaller ones are face_too_small.")
    all_faces: bool = setting(False, "One manifest row per usable face (<id>-f<k>, k from 1 by prominence) "
                                  "instead of the main face only.")
    analysis_side: int = setting(1536, "Images are decoded at most this large for analysis (JPEG masters at a "
                                    "reduced DCT scale).")
    thumb_side: int = setting(480, "Longer side of the painting thumbnails on the review page.")
    crop_side: int = setting(192, "Side of the aligned-face previews on the review page.")
    fetch_timeout_s: float = setting(60.0, "Longest wait for one image request (connect and each read); a server "
                                           "that stalls is retried with backoff, then the painting fails as "
                                           "storage.")

    def __post_init__(self):
        if not 0 < self.min_confidence < 1:
            raise ValueError(f"min_confidence must be in (0, 1), got {self.min_confidence}")
        for name in ("min_face_px", "analysis_side", "thumb_side", "crop_side", "fetch_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass
class PrepareSummary:
    total: int
    ok: int
    by_status: dict[str, int]
    seconds: float
    manifest_uri: str
    report_uri: str
    review_uri: str


RUN_KEY = b"artmator.prepare_run"
"""Parquet key-value metadata of the manifest and report: the prepare run that wrote them."""
output_paths = prepare_paths


class PrepareBusy(ValueError):
    """Another prepare holds the output's claim (the message names its run and lease)."""


# ----------------------------------------------------------------------------------------------- per row

def analyze_painting(row: Mapping[str, Any], analyzer, config: PrepareConfig, storage_options: Mapping,
                     write_asset: Callable[[str, bytes], str]) -> list[dict]:
    """One valid manifest row -> one result per kept face (or one failed result). Pure apart from `write_asset`.

    Each result holds the report fields, the manifest row to write when `status == "ok"`, and what the review
    page shows (asset names, the face box and landmarks on the thumbnail). Whatever fails — the image fetch
    (after retries with backoff), its decoding, the analysis or writing a review image — gives this painting
    one result with its reason, never an exception."""
    from artmator.model.images import PaintingImageError
    from artmator.pipeline.errors import classify

    base = {"painting_id": row["painting_id"], "row": row.get("row"), "image_uri": row["image_uri"],
            "faces_found": 0}
    try:
        return _analyze(row, base, analyzer, config, storage_options, write_asset)
    except PaintingImageError as exc:
        return [{**base, "status": "image", "message": redact_text(f"{exc.kind}: {exc}")}]
    except Exception as exc:  # noqa: BLE001 - one painting's failure never stops the catalog
        kind, message = classify(exc)
        shown = redact_uri(row["image_uri"])
        return [{**base, "status": "storage" if kind == "storage" else "internal",
                 "message": message if shown in message else f"{shown}: {message}"}]


def _analyze(row: Mapping[str, Any], base: dict, analyzer, config: PrepareConfig, storage_options: Mapping,
             write_asset: Callable[[str, bytes], str]) -> list[dict]:
    from artmator.model.faces.analyzer import FaceError, check_face_size
    from artmator.model.images import decode_bounded, fetch_painting
    from artmator.pipeline.errors import with_retries

    pid, uri = row["painting_id"], row["image_uri"]
    data = with_retries(lambda: fetch_painting(uri, storage_options, timeout_s=config.fetch_timeout_s))
    image, full = decode_bounded(data, uri, max_side=config.analysis_side)
    scale = full[0] / image.size[0]
    faces = _faces_in(image, row.get("crop"), scale, analyzer)
    thumb_name = write_asset(f"{pid}.jpg", _jpeg(_thumbnail(image, config.thumb_side)))
    thumb_scale = config.thumb_side / max(full) if max(full) > config.thumb_side else 1.0
    review = {"thumb": thumb_name, "thumb_scale": thumb_scale, "size": list(full)}
    if not faces:
        return [{**base, "status": "no_face", "review": review,
                 "message": f"no face found at detector confidence >= {config.min_confidence:g}"}]
    chosen = list(enumerate(faces, 1)) if config.all_faces else [(1, faces[0])]
    results = []
    for k, face in chosen:
        fid = f"{pid}-f{k}" if config.all_faces else pid
        result = {**base, "painting_id": fid, "faces_found": len(faces), "face_confidence": face.confidence,
                  "roll_deg": face.pose.roll_deg, "face_size_px": face.alignment.size,
                  "review": {**review, "box": list(face.box), "landmarks": face.landmarks.tolist(),
                             "corners": face.alignment.corners().tolist()}}
        try:
            check_face_size(face, analyzer.config, uri)
        except FaceError as exc:
            results.append({**result, "status": exc.kind, "message": exc.detail})
            continue
        given = row.get("yaw_deg") is not None
        if given:
            yaw, pitch, source = row["yaw_deg"], row["pitch_deg"], row.get("pose_source") or "given"
        elif face.landmarks_reliable:
            yaw, pitch, source = face.pose.yaw_deg, face.pose.pitch_deg, "landmarks"
        else:   # `artmator run` searches the pose by rendering
            yaw, pitch, source = None, None, "search"
            result["message"] = (f"landmarks do not fit a face (error {face.pose.fit_error:.2f} of the crop): "
                                 "cropped from the detector box; the pose will be searched")
        crop = _aligned_preview(image, face.scaled(1 / scale).alignment, config.crop_side)
        result["review"]["crop"] = write_asset(f"{fid}.face.jpg", _jpeg(crop))
        a = face.alignment
        manifest_row = {**_manifest_fields(row), "painting_id": fid, "yaw_deg": _float(yaw), "pitch_deg": _float(pitch),
                        "pose_source": source, "face_confidence": face.confidence, "crop": None,
                        "face_align": {"cx": a.cx, "cy": a.cy, "size": a.size, "angle_deg": a.angle_deg}}
        results.append({"message": "", **result, "status": "ok", "yaw_deg": _float(yaw), "pitch_deg": _float(pitch),
                        "pose_source": source, "manifest_row": manifest_row})
    return results


def _faces_in(image, crop: Mapping | None, scale: float, analyzer) -> list:
    """Faces in full-image pixels; a row's `crop` box (full-image pixels) limits the search to that region."""
    if not crop:
        return [f.scaled(scale) for f in analyzer.faces(image)]
    box = tuple(round(v / scale) for v in (crop["x"], crop["y"], crop["x"] + crop["w"], crop["y"] + crop["h"]))
    return [f.scaled(scale, box[0] * scale, box[1] * scale) for f in analyzer.faces(image.crop(box))]


def _float(v) -> float | None:
    return None if v is None else float(v)


def _manifest_fields(row: Mapping[str, Any]) -> dict:
    """The row as it goes back into a manifest: known columns and pass-through ones, without task bookkeeping."""
    out = {k: v for k, v in row.items() if k not in ("row", "extra")}
    out.update(row.get("extra") or {})
    if out.get("expressions") is not None:
        out["expressions"] = list(out["expressions"])
    return out


def _thumbnail(image, side: int):
    thumb = image.copy()
    thumb.thumbnail((side, side))
    return thumb


def _aligned_preview(image, alignment, side: int):
    from artmator.model.faces.align import warp_aligned

    return warp_aligned(image, alignment, side)


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


class PrepareActor:
    """Callable class for `map_batches`: face networks loaded once per actor; writes review assets itself."""

    def __init__(self, config_json: str, assets_uri: str, storage_options: dict, threads: int = 0):
        import fsspec

        from artmator.model.faces.analyzer import FaceAnalysisConfig, FaceAnalyzer

        self.threads = threads
        self.config = decode(PrepareConfig, json.loads(config_json))
        self.analyzer = FaceAnalyzer(FaceAnalysisConfig(self.config.min_confidence, self.config.min_face_px))
        self.storage_options = storage_options
        self.fs, self.assets = fsspec.core.url_to_fs(assets_uri, **storage_options)

    def write_asset(self, name: str, data: bytes) -> str:
        from artmator.pipeline.errors import with_retries

        with_retries(lambda: atomic_write(self.fs, posixpath.join(self.assets, name), data))
        return name

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        import torch

        if self.threads:
            # Set in the calling thread: OpenMP's thread count is per thread and Ray Data calls from another one.
            torch.set_num_threads(self.threads)
        out = []
        for text in batch["row"]:
            out += analyze_painting(json.loads(text), self.analyzer, self.config, self.storage_options,
                                    self.write_asset)
        return {"result": [json.dumps(r, default=_plain) for r in out]}


def _plain(v):
    return v.item() if hasattr(v, "item") else str(v)


# --------------------------------------------------------------------------------------------- the driver

def prepare(catalog_uri: str, out_uri: str, config: PrepareConfig = PrepareConfig(),
            storage_options: Mapping | None = None, progress: Callable[[int, int], None] | None = None,
            actors: int | None = None, run_id: str | None = None, claim_ttl_s: float | None = None
            ) -> PrepareSummary:
    """Analyse every row of a catalog and write the manifest, report and review page (see module doc)."""
    import fsspec

    from artmator.pipeline.catalog import catalog_table, read_catalog
    from artmator.pipeline.claims import DEFAULT_TTL_S, Claimed, Claims

    start = time.perf_counter()
    options = dict(storage_options or {})
    run_id = run_id or new_prepare_id()
    manifest_uri, report_uri, review_uri, assets_uri = output_paths(out_uri)
    fs, _ = fsspec.core.url_to_fs(out_uri, **options)
    assets = fs._strip_protocol(assets_uri)
    claims = Claims(fs, f"{assets}/_claims", run_id, claim_ttl_s or DEFAULT_TTL_S)
    claim = None
    if claims.supported:
        try:
            claim = _retrying(lambda: claims.take(PREPARE_SUBJECT, "prepare"))
        except Claimed as exc:
            raise PrepareBusy(f"{redact_uri(out_uri)} is being written by another prepare: {exc}; try again when "
                              "it has finished") from None
    try:
        catalog = read_catalog(catalog_uri, options)
        table = catalog_table(catalog)
        tasks, problems = split_manifest(table, None)
        results = [_problem_result(p, catalog) for p in problems if p.row is not None]
        results += [_catalog_problem_result(p) for p in catalog.problems]
        if any(p.row is None for p in problems):
            raise ValueError("the catalog cannot be used: " + "; ".join(str(p) for p in problems if p.row is None))
        rows = [{**t.as_row(), "face_align": None} for t in tasks]
        if rows:
            results += _analyze_all(rows, config, f"{assets_uri}/{run_id}", options, progress, actors)
        report = _report_table(results, run_id)
        manifest = _manifest_table([r["manifest_row"] for r in results if r.get("status") == "ok"], run_id)
        from artmator.pipeline.review import review_page

        page = review_page(results, f"{posixpath.basename(assets_uri)}/{run_id}", catalog_uri, run_id).encode()
        _retrying(lambda: _write_parquet(fs, report_uri, report))
        _retrying(lambda: atomic_write(fs, fs._strip_protocol(review_uri), page))
        if claim is not None:
            claim.check()                   # only the output's claim holder writes the manifest
        _retrying(lambda: _write_parquet(fs, manifest_uri, manifest))   # last: `run` reads it
        _collect_runs(fs, assets, run_id)
    finally:
        if claim is not None:
            claim.release()
    statuses = [r["status"] for r in results]
    return PrepareSummary(total=len(statuses), ok=statuses.count("ok"),
                          by_status={s: statuses.count(s) for s in sorted(set(statuses))},
                          seconds=time.perf_counter() - start, manifest_uri=manifest_uri, report_uri=report_uri,
                          review_uri=review_uri)


def new_prepare_id() -> str:
    import secrets
    from datetime import datetime, timezone

    return "prepare-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _retrying(fn):
    from artmator.pipeline.errors import with_retries

    return with_retries(fn)


def _collect_runs(fs, assets: str, run_id: str) -> None:
    """After the manifest: remove the review images of every other prepare run (best effort; the next run
    retries). Older runs' pages are gone, so nothing shows them."""
    fs.invalidate_cache(assets)
    try:
        entries = fs.ls(assets, detail=False)
    except FileNotFoundError:
        return
    for entry in entries:
        name = posixpath.basename(entry.rstrip("/"))
        if name not in (run_id, "_claims"):
            try:
                fs.rm(entry.rstrip("/"), recursive=True)
            except Exception:  # noqa: BLE001
                pass


def _analyze_all(rows: list[dict], config: PrepareConfig, assets_uri: str, options: dict, progress,
                 actors: int | None) -> list[dict]:
    import ray
    from ray.data import ActorPoolStrategy

    from artmator.pipeline.job import init_ray, pool_size, quiet_data_context

    init_ray()
    quiet_data_context()
    size = min(actors or pool_size(0.0, 1.0), len(rows))
    threads = max(1, _local_cpus() // size)
    items = [{"row": json.dumps(r, default=_plain)} for r in rows]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), size * 4)))
    results = ds.map_batches(PrepareActor, fn_constructor_args=(json.dumps(encode(config)), assets_uri, options,
                                                                threads),
                             batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=size),
                             num_cpus=1, max_restarts=-1, max_task_retries=-1)
    out, done = [], 0
    for item in results.iter_rows():
        r = json.loads(item["result"])
        out.append(r)
        done += 1
        if progress is not None:
            progress(done, len(rows))
    return out


def _local_cpus() -> int:
    import os

    return 1 if os.environ.get("RAY_ADDRESS") else (os.cpu_count() or 1)


def _problem_result(problem, catalog) -> dict:
    return {"painting_id": problem.painting_id, "row": problem.row, "status": "manifest", "faces_found": 0,
            "message": f"{problem.column}: {problem.reason}"}


def _catalog_problem_result(problem) -> dict:
    return {"painting_id": problem.painting_id, "row": None, "status": "manifest", "faces_found": 0,
            "image_uri": None, "message": f"{problem.source}: {problem.reason}"}


def _report_table(results: list[dict], run_id: str = "") -> pa.Table:
    rows = [{f.name: r.get(f.name) for f in REPORT_SCHEMA} for r in results]
    return pa.Table.from_pylist(rows, schema=REPORT_SCHEMA.with_metadata({RUN_KEY: run_id.encode()}))


def _manifest_table(rows: list[dict], run_id: str = "") -> pa.Table:
    """Manifest rows -> a table with MANIFEST_SCHEMA's columns first, pass-through columns after."""
    extra = sorted({k for r in rows for k in r} - set(MANIFEST_SCHEMA.names))
    schema = MANIFEST_SCHEMA
    for name in extra:
        sample = next((r[name] for r in rows if r.get(name) is not None), None)
        schema = schema.append(pa.field(name, pa.infer_type([sample]) if sample is not None else pa.string()))
    schema = schema.with_metadata({**(schema.metadata or {}), RUN_KEY: run_id.encode()})
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def _write_parquet(fs, uri: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write(fs, fs._strip_protocol(uri), buf.getvalue())
