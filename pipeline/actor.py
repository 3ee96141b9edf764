"""The tuning actor: loads models once, then tunes, renders and commits batches of paintings (Ray Data map_batches).

Each painting is independent: a bad image, expression or diverging loss fails that painting alone, with a
specific reason in its report row; storage hiccups and CUDA OOM are retried with backoff inside the actor.
The actor writes outputs straight to storage (the driver never moves bytes) and returns one report row each.
A batch row carries the painting's manifest row (`task`) and its plan (`plan`: the fingerprints and inputs it
commits under, `pipeline.changes`); the marker records both, so the next run can tell what changed.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from artmator.pipeline import changes
from artmator.pipeline.claims import DEFAULT_TTL_S, Claim, Claimed, ClaimLost, Claims, painting_claims
from artmator.pipeline.errors import classify, with_retries
from artmator.pipeline.flow import PaintingContext, PaintingOutcome, backbone_record, load_context, paint
from artmator.pipeline.layout import DELTA, REPORT_SCHEMA, RESULT, UNKNOWN, Fingerprints
from artmator.pipeline.manifest import PaintingTask, task_from_row
from artmator.pipeline.painting import result_flags
from artmator.pipeline.settings import JobSettings, settings_from_json
from artmator.pipeline.storage import OutputStore, atomic_write

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
    threads: int = 0                     # torch threads per actor (0: leave as is)
    max_attempts: int = 0                # a painting started this often in this run (its actor died each time)
                                         # is failed as actor_died instead of being tuned again; 0: no limit
    claim_ttl_s: float = DEFAULT_TTL_S   # lease of the claims this run's workers take (`pipeline.claims`)


class TuneActor:
    """Callable class for `map_batches`: one instance per actor process, models loaded in __init__."""

    def __init__(self, spec: ActorSpec):
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.context = load_context(_with_device(settings_from_json(spec.settings_json)), spec.storage_options)
        self.store = OutputStore(spec.out_uri, spec.storage_options)
        self.claims = painting_claims(self.store, spec.run_id, spec.claim_ttl_s)
        self.metrics = _Metrics()

    @property
    def settings(self) -> JobSettings:
        return self.context.settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        if self.spec.threads:
            # Ray Data calls this from another thread than __init__, and OpenMP's thread count is per calling
            # thread (Ray sets OMP_NUM_THREADS=1): set it where the work runs, or torch computes on one thread.
            torch.set_num_threads(self.spec.threads)
        tasks = [task_from_row(json.loads(s)) for s in batch["task"]]
        plans = [json.loads(s) for s in batch["plan"]] if "plan" in batch else None
        rows = tune_and_commit(tasks, self.context, self.store, self.spec, plans, self.claims)
        for row in rows:
            self.metrics.record(row)
        return {c: [r[c] for r in rows] for c in REPORT_COLUMNS}


def tune_and_commit(tasks: list[PaintingTask], context: PaintingContext, store: OutputStore, spec: ActorSpec,
                    plans: list[dict] | None = None, claims: Claims | None = None) -> list[dict]:
    """One batch without Ray: count each attempt, claim each painting, run the painting flow
    (`pipeline.flow.paint`), commit each painting's files under its plan and claim, release the claims; one
    report row per task.

    `plans`: each task's plan as the driver made it (`wire_plan`); None plans every task here as a first commit.
    `claims`: the process's painting claims (made here from `spec` when None). A painting another run holds a
    live claim on is reported `claimed`; one that another run committed exactly as this plan would, after this
    run planned it, `skipped`."""
    settings = context.settings
    claims = claims or painting_claims(store, spec.run_id, spec.claim_ttl_s)
    if plans is None:
        base = changes.base_identity(settings, spec.storage_options)
        plans = [wire_plan(changes.fresh_plan(t, settings, base), settings) for t in tasks]
    start = time.perf_counter()
    rows: dict[str, dict] = {}
    todo, plan_of = [], {}
    held: dict[str, Claim] = {}
    try:
        for task, plan in zip(tasks, plans):
            pid = task.painting_id
            attempt = _note_attempt(store, spec.run_id, pid)
            if spec.max_attempts and attempt > spec.max_attempts:
                rows[pid] = failed_row(
                    pid, "actor_died",
                    f"its actor died during each of {attempt - 1} attempts in this run (a crash in native code, "
                    "out of host memory, or lost nodes); not tried again until the next run")
                continue
            try:
                if claims is not None:
                    held[pid] = with_retries(lambda: claims.take(pid, "tune"))
                done = committed_meanwhile(store, pid, plan)
            except (Claimed, ClaimLost) as exc:
                rows[pid] = claimed_row(pid, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - one painting's failure never stops the batch
                rows[pid] = failed_row(pid, *classify(exc))
                done = None
            if pid in rows or done is not None:
                rows.setdefault(pid, done)
                if pid in held:
                    held.pop(pid).release()              # nothing to tune: let the painting go at once
                continue
            todo.append(task)
            plan_of[pid] = plan
        outcomes = paint(todo, context, plans=plan_of) if todo else []
        seconds = (time.perf_counter() - start) / max(1, len(outcomes))
        for outcome in outcomes:
            pid = outcome.task.painting_id
            rows[pid] = _commit(outcome, store, spec, plan_of[pid], seconds, held.get(pid))
            if pid in held:
                held.pop(pid).release()
    finally:
        for claim in held.values():
            claim.release()
    elapsed = time.perf_counter() - start
    for row in rows.values():
        row["seconds_total"] = elapsed / max(1, len(tasks))
    return [rows[t.painting_id] for t in tasks]


def committed_meanwhile(store: OutputStore, painting_id: str, plan: dict) -> dict | None:
    """The report row (`skipped`) of a painting that another run committed after this run planned it, with the
    fingerprints this plan would commit; None when there is work to do. Called under the painting's claim, so
    the commit it sees stays current until the claim is released. Before the image is read (its fingerprint
    still UNKNOWN) the image's listing stamp stands for its bytes, when there is one."""
    current = store.current_ref(painting_id)
    if current is None or current.version == plan.get("current"):
        return None
    want = Fingerprints.from_dict(plan["fingerprints"])
    have = current.fingerprints
    if want.image == UNKNOWN:
        if want.stamp == UNKNOWN:
            return None
        have = have._replace(image=UNKNOWN)
    if have != want:
        return None
    commit = store.read_commit(painting_id)
    by = commit.run_id if commit is not None else "?"
    return {**failed_row(painting_id, "", f"committed by run {by} after this run planned it; nothing to redo"),
            "status": "skipped", "version": current.version}


def claimed_row(painting_id: str, exc: Claimed | ClaimLost) -> dict:
    """The report row of a painting this run did not work on (or could not commit) because another run holds
    its claim: status `claimed`, the message names the holder's run. A claim lost with no new holder (the
    lease ran out, e.g. through an outage) is a failure to retry (`claim_lost`)."""
    holder = exc.holder
    if isinstance(exc, ClaimLost) and (holder is None or not holder.run_id):
        return failed_row(painting_id, "claim_lost", str(exc))
    return {**failed_row(painting_id, "", f"claimed by {holder.describe()}"), "status": "claimed"}


def _with_holder(exc: ClaimLost, claim: Claim | None) -> ClaimLost:
    """`exc` with the subject's current holder read (a fencing check only lists generations)."""
    if claim is None or (exc.holder is not None and exc.holder.run_id):
        return exc
    try:
        holder = claim.owner.holder(claim.subject)
    except Exception:  # noqa: BLE001
        return exc
    live = holder is not None and not holder.released and holder.generation > claim.generation
    return ClaimLost(exc.subject, exc.reason, holder if live else None)


def wire_plan(plan: changes.RowPlan, settings: JobSettings) -> dict:
    """A row's plan as it travels to an actor (plain JSON data) and lands in its marker."""
    return {"action": plan.action, "fingerprints": plan.fingerprints._asdict(), "inputs": plan.inputs,
            "backbone": backbone_record(settings), "current": plan.current.version if plan.current else None}


def _with_image(plan: dict, sha256: str) -> dict:
    """The plan completed with the sha256 of the image bytes the flow read: the `image` fingerprint."""
    fingerprints = {**plan["fingerprints"], "image": changes.image_fingerprint(sha256)}
    inputs = {**plan["inputs"], "image": {**plan["inputs"].get("image", {}), "sha256": sha256}}
    return {**plan, "fingerprints": fingerprints, "inputs": inputs}


def _commit(outcome: PaintingOutcome, store: OutputStore, spec: ActorSpec, plan: dict, seconds: float,
            claim: Claim | None = None) -> dict:
    """Write a painting's files then its marker (under its claim); its report row."""
    pid = outcome.task.painting_id
    if not outcome.ok:
        return failed_row(pid, outcome.error_kind, outcome.message)
    files, tuned = outcome.files, outcome.tuned
    plan = _with_image(plan, outcome.image_sha256)
    try:
        if (done := committed_meanwhile(store, pid, plan)) is not None:
            return done                          # the same result, committed by another run meanwhile
        marker = commit_marker(spec, plan, "done", result_flags(files), {"tune": seconds})
        written = with_retries(lambda: store.commit(pid, files, marker, Fingerprints.from_dict(plan["fingerprints"]),
                                                     claim=claim))
    except ClaimLost as exc:
        return claimed_row(pid, _with_holder(exc, claim))
    except Exception as exc:  # noqa: BLE001
        return failed_row(pid, *classify(exc))
    t = tuned.timings
    k = t.get("batch_size", 1.0)
    return {**committed_row(pid, "done", json.loads(files[RESULT]), written["version"]),
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


def failed_row(painting_id: str, kind: str, message: str) -> dict:
    nan = float("nan")
    return {"painting_id": painting_id, "status": "failed", "error_kind": kind, "message": message,
            "seconds_total": nan, "seconds_stage1": nan, "seconds_stage2": nan, "lpips_ref": nan, "psnr_ref": nan,
            "lpips_stage1": nan, "delta_bytes": -1, "pose_estimated": False, "pose_source": "",
            "face_confidence": nan, **{c: nan for c in FACE_COLUMNS}, "flags": "", "version": ""}


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

