"""The tuning actor: loads models once, then tunes, renders and commits batches of paintings (Ray Data map_batches).

Each painting is independent: a bad image, expression or diverging loss fails that painting alone, with a
specific reason in its report row; storage hiccups and CUDA OOM are retried with backoff inside the actor.
The actor writes outputs straight to storage (the driver never moves bytes) and returns one report row each.
A batch row carries the painting's manifest row (`task`) and its plan (`plan`: the fingerprints and inputs it
commits under, `pipeline.changes`); the marker records both, so the next run can tell what changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from artmator.model.images import fetch_painting
from artmator.model.tune import tune_paintings
from artmator.pipeline import changes
from artmator.pipeline.errors import classify, with_retries
from artmator.pipeline.inputs import LazyFaceAnalyzer, face_scorer, painting_input
from artmator.pipeline.layout import DELTA, METADATA_COLUMNS, REPORT_SCHEMA, RESULT, Fingerprints
from artmator.pipeline.manifest import PaintingTask, task_from_row
from artmator.pipeline.painting import painting_files, quality_flags, result_flags
from artmator.pipeline.provenance import provenance_record
from artmator.pipeline.settings import JobSettings, load_models, resolve_expressions, settings_from_json
from artmator.pipeline.storage import OutputStore, atomic_write, redact_uri

# The columns an actor reports per painting: the run report's, less what the driver adds.
REPORT_COLUMNS = tuple(n for n in REPORT_SCHEMA.names if n not in ("attempts", "run_id", "config_hash",
                                                                     "fingerprint"))


@dataclass(frozen=True)
class ActorSpec:
    """What every actor of a run needs (plain data: it is shipped to the workers)."""

    settings_json: str                   # JobSettings.to_dict() as JSON
    out_uri: str
    storage_options: dict
    run_id: str
    config_hash: str
    random_models: bool
    threads: int = 0                     # torch threads per actor (0: leave as is)
    max_attempts: int = 0                # a painting started this often in this run (its actor died each time)
                                         # is failed as actor_died instead of being tuned again; 0: no limit


class TuneActor:
    """Callable class for `map_batches`: one instance per actor process, models loaded in __init__."""

    def __init__(self, spec: ActorSpec):
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.settings: JobSettings = settings_from_json(spec.settings_json)
        self.settings = _with_device(self.settings)
        self.models = with_retries(lambda: load_models(self.settings, spec.storage_options))
        self.store = OutputStore(spec.out_uri, spec.storage_options)
        self.default_expressions = resolve_expressions(self.models.backbone, self.settings.render.expressions,
                                                       spec.storage_options)
        self.faces = LazyFaceAnalyzer(self.settings.device)
        self.scorer = face_scorer(self.settings.device)
        self.metrics = _Metrics()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        if self.spec.threads:
            # Ray Data calls this from another thread than __init__, and OpenMP's thread count is per calling
            # thread (Ray sets OMP_NUM_THREADS=1): set it where the work runs, or torch computes on one thread.
            torch.set_num_threads(self.spec.threads)
        tasks = [task_from_row(json.loads(s)) for s in batch["task"]]
        plans = [json.loads(s) for s in batch["plan"]] if "plan" in batch else None
        rows = tune_and_commit(tasks, self.models, self.settings, self.store, self.spec, self.default_expressions,
                               self.faces, self.scorer, plans)
        for row in rows:
            self.metrics.record(row)
        return {c: [r[c] for r in rows] for c in REPORT_COLUMNS}


def tune_and_commit(tasks: list[PaintingTask], models, settings: JobSettings, store: OutputStore, spec: ActorSpec,
                    default_expressions, faces: LazyFaceAnalyzer | None = None, scorer=None,
                    plans: list[dict] | None = None) -> list[dict]:
    """Pure-ish per-batch step (no Ray): prepare inputs, tune the good ones together, commit each result.

    `faces`, `scorer`: the process's face analyzer and render scorer (`pipeline.inputs`, built on first use);
    rows that need no analysis never load the analyzer. `plans`: each task's plan as the driver made it
    (`wire_plan`); None plans every task here as a first commit."""
    faces = faces or LazyFaceAnalyzer(settings.device)
    scorer = scorer or face_scorer(settings.device)
    if plans is None:
        base = changes.base_identity(settings, spec.storage_options)
        plans = [wire_plan(changes.fresh_plan(t, settings, base), settings) for t in tasks]
    start = time.perf_counter()
    rows: dict[str, dict] = {}
    inputs: list[tuple] = []
    resolution = settings.tune.resolution or models.backbone.default_resolution
    for task, plan in zip(tasks, plans):
        attempt = _note_attempt(store, spec.run_id, task.painting_id)
        if spec.max_attempts and attempt > spec.max_attempts:
            rows[task.painting_id] = failed_row(
                task.painting_id, "actor_died",
                f"its actor died during each of {attempt - 1} attempts in this run (a crash in native code, "
                "out of host memory, or lost nodes); not tried again until the next run")
            continue
        try:
            data = with_retries(lambda: fetch_painting(task.image_uri, spec.storage_options))
            tune_input, face = painting_input(task, resolution, settings.image, faces, spec.storage_options,
                                              models.backbone.face_framing, image_bytes=data)
            expressions = (default_expressions if task.expressions is None
                           else resolve_expressions(models.backbone, task.expressions, spec.storage_options,
                                                    unsupported="skip"))
            inputs.append((task, tune_input, expressions, face, _with_image(plan, data), data))
        except Exception as exc:  # noqa: BLE001 - one painting's failure never stops the batch
            rows[task.painting_id] = failed_row(task.painting_id, *classify(exc))
    if inputs:
        try:
            tuned_all = with_retries(lambda: tune_paintings(models.backbone, [i[1] for i in inputs], settings.tune,
                                                            models.encoders))
        except Exception as exc:  # noqa: BLE001
            kind, message = classify(exc)
            tuned_all = None
            for task, *_ in inputs:
                rows[task.painting_id] = failed_row(task.painting_id, kind, message)
        for (task, tune_input, expressions, face, plan, data), tuned in zip(inputs, tuned_all or []):
            rows[task.painting_id] = _commit(task, tuned, tune_input, expressions, face, models, settings, store,
                                             spec, scorer, plan, (time.perf_counter() - start) / len(inputs), data)
    elapsed = time.perf_counter() - start
    for row in rows.values():
        row["seconds_total"] = elapsed / max(1, len(tasks))
    return [rows[t.painting_id] for t in tasks]


def wire_plan(plan: changes.RowPlan, settings: JobSettings) -> dict:
    """A row's plan as it travels to an actor (plain JSON data) and lands in its marker."""
    return {"action": plan.action, "fingerprints": plan.fingerprints._asdict(), "inputs": plan.inputs,
            "backbone": backbone_record(settings), "current": plan.current.version if plan.current else None}


def backbone_record(settings: JobSettings) -> dict:
    """The backbone settings a commit was made with, weight URIs redacted (what `artmator render` reloads)."""
    b = settings.backbone
    return {"preset": b.preset, "weights": [[part, redact_uri(uri)] for part, uri in b.weights],
            "head_prior": b.head_prior, "seed": b.seed}


def _with_image(plan: dict, data: bytes) -> dict:
    """The plan completed with the image bytes the actor read: their sha256 is the `image` fingerprint."""
    sha = hashlib.sha256(data).hexdigest()
    fingerprints = {**plan["fingerprints"], "image": changes.image_fingerprint(sha)}
    inputs = {**plan["inputs"], "image": {**plan["inputs"].get("image", {}), "sha256": sha}}
    return {**plan, "fingerprints": fingerprints, "inputs": inputs}


def _commit(task, tuned, tune_input, expressions, face, models, settings, store: OutputStore, spec: ActorSpec,
            scorer, plan: dict, seconds: float, image_bytes: bytes | None = None) -> dict:
    if tuned.error:
        return failed_row(task.painting_id, "numerical", tuned.error)
    broken = _non_finite_delta(tuned.delta)
    if broken:  # finite losses do not prove finite weights (an overflow in the last step): never commit NaN/inf
        return failed_row(task.painting_id, "numerical", f"tuned delta tensor {broken} is not finite (NaN or inf) "
                                                         "although the losses were; no delta was written")
    try:
        flags = quality_flags(tuned, spec.random_models, face.pose_source)
        if task.expressions and not models.backbone.supports_expressions:
            flags.append("expressions_unsupported")           # the row asked for stills this backbone cannot make
        files = painting_files(models.backbone, tuned, settings.render, expressions, _metadata(task), flags,
                               face.as_dict(), scorer() if settings.face_metrics else None, tune_input.image,
                               task.extra, image_bytes,
                               provenance_record(plan, plan["inputs"].get("image", {}).get("sha256")),
                               plan["inputs"].get("metadata", {}).get("weights_license"))
        flags = result_flags(files)
        marker = commit_marker(spec, plan, "done", flags, {"tune": seconds})
        written = with_retries(lambda: store.commit(task.painting_id, files, marker,
                                                     Fingerprints.from_dict(plan["fingerprints"])))
    except Exception as exc:  # noqa: BLE001
        return failed_row(task.painting_id, *classify(exc))
    t, m = tuned.timings, tuned.metrics
    k = t.get("batch_size", 1.0)
    return {**committed_row(task.painting_id, "done", json.loads(files[RESULT]), written["version"]),
            "seconds_stage1": (t["stage1"] + t["pose_search"]) / k, "seconds_stage2": t["stage2"] / k,
            "delta_bytes": len(files[DELTA]), "pose_estimated": tuned.pose_estimated}


def commit_marker(spec: ActorSpec, plan: dict, action: str, flags: list[str], seconds: Mapping[str, float],
                  earlier: Mapping | None = None) -> dict:
    """The marker content besides what the store adds: who committed, what decided it, how long each step took
    (`seconds`: this commit's steps; steps it did not redo are carried over from `earlier`, the marker it
    replaces), for `plan`'s estimates."""
    return {"run_id": spec.run_id, "config_hash": spec.config_hash, "action": action, "flags": flags,
            "pose_estimated": "pose_estimated" in flags, "inputs": plan["inputs"], "backbone": plan["backbone"],
            "seconds": {**dict((earlier or {}).get("seconds") or {}), **dict(seconds)}}


def committed_row(painting_id: str, status: str, result: Mapping, version: str) -> dict:
    """The report row of a committed painting, its numbers read back from its result.json."""
    quality = result.get("quality") or {}
    pose = result.get("pose") or {}
    face_input = result.get("face_input") or {}
    nan = float("nan")
    return {**failed_row(painting_id, "", ""), "status": status, "version": version,
            "lpips_ref": _num(quality.get("lpips_ref")), "psnr_ref": _num(quality.get("psnr_ref")),
            "lpips_stage1": _num(quality.get("lpips_stage1")), "delta_bytes": int(result.get("delta_bytes") or -1),
            "pose_estimated": pose.get("source") == "search",
            "pose_source": pose.get("source") or "", "face_confidence": _num(face_input.get("face_confidence")),
            **_face_columns(result), "seconds_stage1": nan, "seconds_stage2": nan}


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


# The face-aware metrics of result.json "face" as report columns (NaN when not measured).
FACE_COLUMNS = ("face_detected_fraction", "face_identity_consistency", "face_likeness", "face_pose_error_deg")


def _face_columns(doc: Mapping) -> dict:
    face = doc.get("face") or {}
    values = {f"face_{k}": face.get(k) for k in ("detected_fraction", "identity_consistency", "likeness",
                                                   "pose_error_deg")}
    return {**{k: float("nan") if v is None else float(v) for k, v in values.items()},
            "flags": ",".join(doc["quality"]["flags"])}


def _non_finite_delta(delta) -> str | None:
    """Name of the first update or latent tensor of `delta` holding NaN/inf, or None when all are finite."""
    if delta is None:
        return None
    for name, t in {**delta.tensors, **{f"latent.{k}": v for k, v in delta.metadata.latent.items()}}.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return repr(name)
    return None


def failed_row(painting_id: str, kind: str, message: str) -> dict:
    nan = float("nan")
    return {"painting_id": painting_id, "status": "failed", "error_kind": kind, "message": message,
            "seconds_total": nan, "seconds_stage1": nan, "seconds_stage2": nan, "lpips_ref": nan, "psnr_ref": nan,
            "lpips_stage1": nan, "delta_bytes": -1, "pose_estimated": False, "pose_source": "",
            "face_confidence": nan, **{c: nan for c in FACE_COLUMNS}, "flags": "", "version": ""}


def _metadata(task: PaintingTask) -> dict:
    return {k: getattr(task, k) for k in METADATA_COLUMNS}


def _note_attempt(store: OutputStore, run_id: str, painting_id: str) -> int:
    """One tiny object per attempt (also across actor restarts), counted by the driver for the report.

    Returns the painting's attempts in this run so far, this one included (0 when the bookkeeping failed).
    """
    folder = f"{store.run_dir(run_id)}/attempts/{painting_id}"
    try:
        with_retries(lambda: atomic_write(store.fs, f"{folder}/{uuid.uuid4().hex}", b""))
        store.fs.invalidate_cache(folder)
        return len(store.fs.find(folder))
    except Exception:  # noqa: BLE001 - bookkeeping only; never fails a painting
        return 0


def _with_device(settings: JobSettings) -> JobSettings:
    """Use the GPU Ray assigned to this actor when there is one; CPU otherwise (also for logical GPUs in tests)."""
    from dataclasses import replace

    try:
        import ray

        gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    except ImportError:
        gpu_ids = []
    if gpu_ids and torch.cuda.is_available():
        return replace(settings, device="cuda")
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        return replace(settings, device="cpu")
    return settings


class _Metrics:
    """Ray metrics (dashboard / Prometheus): paintings done and failed, seconds per stage."""

    def __init__(self):
        try:
            from ray.util.metrics import Counter, Histogram

            bounds = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600]
            self.done = Counter("artmator_paintings_done", "Paintings tuned and committed")
            self.rendered = Counter("artmator_paintings_rendered", "Paintings re-rendered from their stored delta")
            self.refreshed = Counter("artmator_paintings_refreshed", "Paintings whose metadata was refreshed")
            self.failed = Counter("artmator_paintings_failed", "Paintings failed", tag_keys=("error_kind",))
            self.stage = Histogram("artmator_stage_seconds", "Seconds per painting and stage", boundaries=bounds,
                                   tag_keys=("stage",))
        except Exception:  # noqa: BLE001 - metrics are optional outside a Ray worker
            self.done = None

    def record(self, row: dict) -> None:
        if self.done is None:
            return
        if row["status"] == "done":
            self.done.inc()
            self.stage.observe(row["seconds_stage1"], tags={"stage": "stage1"})
            self.stage.observe(row["seconds_stage2"], tags={"stage": "stage2"})
        elif row["status"] in ("rendered", "refreshed"):
            (self.rendered if row["status"] == "rendered" else self.refreshed).inc()
            self.stage.observe(row["seconds_total"], tags={"stage": "render" if row["status"] == "rendered"
                                                           else "refresh"})
        else:
            self.failed.inc(tags={"error_kind": row["error_kind"] or "unknown"})


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
