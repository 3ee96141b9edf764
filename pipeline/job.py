"""The catalog job: manifest -> plan (per row: skip / refresh / render / tune) -> Ray Data phases -> report.

Works on a local Ray started on the fly and on an existing cluster (RAY_ADDRESS). `make_plan` compares each
row's fingerprints with its painting's current commit (`pipeline.changes`; one listing of the commit markers,
no model loaded) and picks the cheapest correct action. Then up to three phases run, each a Ray Data
map_batches: refreshes (plain tasks, no model), re-renders (`RenderActor`: the backbone only) and tunings
(`TuneActor`). Actors commit paintings to storage themselves; the driver only collects report rows, rewrites the
partial report periodically and logs progress, so killing the driver loses nothing committed and a rerun
plans again from what is committed.
"""
from __future__ import annotations

import json
import logging
import math
import os
import secrets
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from datetime import datetime, timezone

import pyarrow as pa

from artmator.model.fields import setting
from artmator.pipeline import changes
from artmator.pipeline.actor import REPORT_COLUMNS, ActorSpec, TuneActor, failed_row, wire_plan
from artmator.pipeline.claims import DEFAULT_TTL_S
from artmator.pipeline.layout import FILES_FORMAT, REPORT_SCHEMA, digest
from artmator.pipeline.manifest import load_manifest
from artmator.pipeline.progress import RunProgress
from artmator.pipeline.recommit import RenderActor, refresh_batch
from artmator.pipeline.config_schema import encode, leaves, with_values
from artmator.pipeline.settings import JobSettings, check_run_expressions
from artmator.pipeline.storage import OutputStore, redact_options, redact_uri

log = logging.getLogger("artmator.run")
RESULT_OF = {leaf.path: leaf.result for leaf in leaves(JobSettings)}     # does a setting change outputs?


@dataclass(frozen=True)
class RunConfig:
    """One `artmator run`. The fields after `storage_options` are command-line options (`pipeline.options`)."""

    manifest_uri: str = setting(help="The manifest (Parquet) to tune.")
    out_uri: str = setting(help="Output folder or URI.")
    settings: JobSettings = setting(help="The tuning settings (they decide results).")
    storage_options: dict = setting(factory=dict, help="fsspec storage options for OUT, images and weights.")
    actors: int | None = setting(None, "Actor pool size (none: what fits the cluster's resources).")
    gpus_per_actor: float = setting(0.0, "GPUs per tuning actor; fractions pack several actors on one GPU.")
    cpus_per_actor: float = setting(1.0, "CPUs Ray reserves per tuning actor.")
    threads_per_actor: int = setting(0, "torch threads in each actor (0: this machine's cores split among the "
                                        "actors on a local Ray, Ray's default on a cluster).")
    retry_failed: bool = setting(False, "Also retry paintings that failed for good (deterministic errors) in "
                                        "earlier runs with the same settings.")
    max_task_retries: int = setting(3, "A painting whose actor died this many more times in one run fails as "
                                       "actor_died.")
    run_id: str | None = setting(None, "The run's id (none: a new timestamped one).")
    only: tuple[str, ...] = setting((), "Process only these painting ids (comma-separated, or the option "
                                        "repeated); all when none is given.", metavar="ID[,ID...]")
    force: bool = setting(False, "Tune every selected painting again, whatever is committed or failed before.")
    progress_every_s: float = setting(60.0, "Seconds between progress log lines and partial report writes "
                                            "(0: none).", metavar="SECONDS")
    claim_ttl_s: float = setting(DEFAULT_TTL_S, "Lease of each painting's claim, renewed while a worker holds it: "
                                                "another run leaves a painting claimed by a live worker alone and "
                                                "takes over a claim this long after its worker stopped renewing it.",
                                 metavar="SECONDS")

    def __post_init__(self):
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be >= 1 or none, got {self.actors}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor < 0.1:
            raise ValueError(f"gpus_per_actor must be >= 0 and cpus_per_actor >= 0.1, got {self.gpus_per_actor} "
                             f"and {self.cpus_per_actor}")
        if self.claim_ttl_s < 1:
            raise ValueError(f"claim_ttl_s must be >= 1 s, got {self.claim_ttl_s}")
        if self.threads_per_actor < 0 or self.max_task_retries < 0 or self.progress_every_s < 0:
            raise ValueError("threads_per_actor, max_task_retries and progress_every_s must be >= 0, got "
                             f"{self.threads_per_actor}, {self.max_task_retries} and {self.progress_every_s}")


@dataclass
class RunSummary:
    run_id: str
    total: int                           # rows of the manifest in this run (after --only)
    done: int                            # tuned and committed in this run
    skipped: int                         # unchanged since their commit, or earlier deterministic failure
    failed: int                          # failed or invalid
    seconds: float
    report_path: str
    failures: dict[str, int]             # error_kind -> count
    rendered: int = 0                    # re-rendered from their stored delta
    refreshed: int = 0                   # metadata refreshed
    claimed: int = 0                     # left to another run that holds their claim

    @property
    def ok(self) -> bool:
        return self.failed == 0


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


# ------------------------------------------------------------------------------------------------ planning

@dataclass
class Plan:
    """Every manifest row of a run, decided: valid rows with their action, and the rows that will not run."""

    rows: list[changes.RowPlan]
    invalid: list[dict]                   # report rows of manifest rows refused by validation
    failed_before: list[dict]             # report rows of earlier deterministic failures, skipped again
    config_hash: str
    rehashed: list[str] = field(default_factory=list)   # images re-read because their stamp moved

    def of(self, action: str) -> list[changes.RowPlan]:
        return [r for r in self.rows if r.action == action]

    def counts(self) -> dict[str, int]:
        """What `artmator plan --json` prints."""
        counts = changes.count_actions(self.rows)
        return {"tune": counts["tune"], "render": counts["render"], "refresh": counts["refresh"],
                "skip": counts["skip"], "invalid": len(self.invalid), "failed_before": len(self.failed_before)}


def make_plan(config: RunConfig, store: OutputStore | None = None) -> Plan:
    """Decide every row of the manifest against what is committed; loads no model and starts no Ray."""
    store = store or OutputStore(config.out_uri, config.storage_options)
    options = config.storage_options or None
    tasks, problems = load_manifest(config.manifest_uri, options)
    manifest_level = [p for p in problems if p.row is None]
    if manifest_level:
        raise ValueError("the manifest cannot be used: " + "; ".join(str(p) for p in manifest_level))
    only = set(config.only)
    if only:
        known = {t.painting_id for t in tasks} | {p.painting_id for p in problems}
        missing = sorted(only - known)
        if missing:
            raise ValueError(f"--only names ids that are not in the manifest: {', '.join(missing[:10])}")
        tasks = [t for t in tasks if t.painting_id in only]
    invalid = []
    by_row: dict[int, list] = {}
    for p in problems:
        by_row.setdefault(p.row, []).append(p)
    for row, probs in sorted(by_row.items()):
        pid = probs[0].painting_id or f"row-{row}"
        if not only or pid in only:
            invalid.append({**failed_row(pid, "manifest", "; ".join(f"{p.column}: {p.reason}" for p in probs)),
                            "status": "invalid"})
    base = changes.base_identity(config.settings, options)
    config_hash = config.settings.result_hash(digest(base))
    stamps = changes.image_stamps([t.image_uri for t in tasks], options)
    decider = changes.Decider(config.settings, base, stamps, options, force=config.force)
    rows = decider.decide(tasks, store.scan().current)
    failed_before = []
    if not (config.retry_failed or config.force):
        earlier = deterministic_failures(store)
        kept = []
        for row in rows:
            before = earlier.get(row.task.painting_id)
            if row.action in ("tune", "render") and before and before[0] == row.failure_key:
                failed_before.append({**failed_row(row.task.painting_id, before[1], before[2]), "status": "skipped"})
            else:
                kept.append(row)
        rows = kept
    return Plan(rows, invalid, failed_before, config_hash, decider.rehashed)


def deterministic_failures(store: OutputStore) -> dict[str, tuple[str, str, str]]:
    """painting_id -> (fingerprint, kind, message) of paintings whose latest attempt failed in a way retrying
    cannot fix while their inputs stay the same (the report's `fingerprint`, `changes.RowPlan.failure_key`)."""
    from artmator.pipeline.errors import DETERMINISTIC

    reports = store.read_reports()
    if reports.num_rows == 0 or "fingerprint" not in reports.column_names:
        return {}
    latest: dict[str, dict] = {}
    for r in sorted(reports.to_pylist(), key=lambda r: r.get("run_id") or ""):
        if r.get("status") not in ("skipped", "pending", None):
            latest[r["painting_id"]] = r
    return {pid: (r.get("fingerprint") or "", r["error_kind"], r.get("message") or "") for pid, r in latest.items()
            if r.get("status") == "failed" and r.get("error_kind") in DETERMINISTIC}


def history_estimates(store: OutputStore) -> dict[str, float]:
    """Median seconds per painting and actor of each action, from every earlier run's report."""
    reports = store.read_reports()
    if reports.num_rows == 0 or "seconds_total" not in reports.column_names:
        return {}
    seconds: dict[str, list[float]] = {}
    action_of = {v: k for k, v in changes.STATUS_OF.items()}
    for r in reports.select(["status", "seconds_total"]).to_pylist():
        action = action_of.get(r["status"])
        if action and action != "skip" and isinstance(r["seconds_total"], float) and r["seconds_total"] >= 0:
            seconds.setdefault(action, []).append(r["seconds_total"])
    return {a: statistics.median(v) for a, v in seconds.items()}


# -------------------------------------------------------------------------------------------------- running

def run(config: RunConfig, progress: Callable[[int, int], None] | None = None) -> RunSummary:
    """Run the job; returns the summary after writing runs/<run_id>/report.parquet (rewritten while it runs)."""
    start = time.perf_counter()
    run_id = config.run_id or new_run_id()
    store = OutputStore(config.out_uri, config.storage_options)
    check_run_expressions(config.settings, config.storage_options)        # before any work: a clear error
    plan = make_plan(config, store)
    counts = plan.counts()
    log.info("plan: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    from artmator.pipeline.settings import load_backbone_only

    if plan.of("render") or plan.of("tune"):
        # Validate at the edge: a bad preset or weight file stops the run with one error before anything is
        # written, instead of failing every painting in the actors.
        load_backbone_only(config.settings, config.storage_options)

    store.write_run_config(run_id, {"run_id": run_id, "manifest": redact_uri(config.manifest_uri),
                                    "out": store.uri, "config_hash": plan.config_hash, "plan": counts,
                                    "only": list(config.only), "force": config.force,
                                    "storage_options": redact_options(config.storage_options),
                                    "settings": config.settings.to_dict(),   # `run --config` reads it back
                                    "actors": config.actors, "gpus_per_actor": config.gpus_per_actor,
                                    "cpus_per_actor": config.cpus_per_actor})
    fingerprints = {r.task.painting_id: r.failure_key for r in plan.rows}
    fixed = plan.invalid + plan.failed_before + [
        {**failed_row(r.task.painting_id, "", ""), "status": "skipped", "version": r.current.version}
        for r in plan.of("skip")]
    work = {a: len(plan.of(a)) for a in ("refresh", "render", "tune")}
    pending = [r.task.painting_id for a in work for r in plan.of(a)]

    def write(rows: list[dict], state: str) -> str:
        done = {r["painting_id"] for r in rows}
        waiting = [{**failed_row(pid, "", ""), "status": "pending"} for pid in pending if pid not in done]
        table = report_table(fixed + rows + waiting, count_attempts(store, run_id), run_id, plan.config_hash,
                             fingerprints)
        return store.write_report(run_id, table, state)

    tracker = RunProgress(run_id, work, history_estimates(store) if any(work.values()) else {},
                          config.progress_every_s, on_tick=lambda rows: write(rows, "running"))
    with tracker:
        if any(work.values()):
            write([], "running")
            init_ray()
            spec = ActorSpec(settings_json=json.dumps(config.settings.to_dict()), out_uri=config.out_uri,
                             storage_options=dict(config.storage_options), run_id=run_id,
                             config_hash=plan.config_hash,
                             threads=config.threads_per_actor or local_threads_per_actor(config, work["tune"]
                                                                                          or work["render"]),
                             max_attempts=config.max_task_retries + 1, claim_ttl_s=config.claim_ttl_s)
            total = sum(work.values())
            for action in ("refresh", "render", "tune"):
                items = [{"painting_id": r.task.painting_id, "task": json.dumps(r.task.as_row()),
                          "plan": json.dumps(wire_plan(r, config.settings))} for r in plan.of(action)]
                for row in execute_phase(action, items, spec, config, tracker):
                    tracker.add(action, row)
                    if progress is not None:
                        progress(len(tracker.rows), total)
        rows = tracker.snapshot()
    path = write(rows, "finished")
    statuses = [r["status"] for r in fixed + rows]
    failures: dict[str, int] = {}
    for r in fixed + rows:
        if r["status"] in ("failed", "invalid"):
            failures[r["error_kind"]] = failures.get(r["error_kind"], 0) + 1
    summary = RunSummary(run_id=run_id, total=len(statuses), done=statuses.count("done"),
                         skipped=statuses.count("skipped"),
                         failed=statuses.count("failed") + statuses.count("invalid"),
                         seconds=time.perf_counter() - start, report_path=path, failures=failures,
                         rendered=statuses.count("rendered"), refreshed=statuses.count("refreshed"),
                         claimed=statuses.count("claimed"))
    claimed = f", {summary.claimed} claimed by other runs" if summary.claimed else ""
    log.info("run %s finished: %d tuned, %d re-rendered, %d refreshed, %d skipped%s, %d failed in %.0f s", run_id,
             summary.done, summary.rendered, summary.refreshed, summary.skipped, claimed, summary.failed,
             summary.seconds)
    return summary


def execute_phase(action: str, items: list[dict], spec: ActorSpec, config: RunConfig,
                  tracker: RunProgress | None = None, settings: JobSettings | None = None) -> Iterator[dict]:
    """One Ray Data plan over `items` ({painting_id, task?, plan} rows); yields report rows as batches finish.

    refresh: plain tasks (no model); render: `RenderActor` pools; tune: `TuneActor` pools, `paintings_per_batch`
    paintings per optimisation."""
    if not items:
        return
    import ray
    from ray.data import ActorPoolStrategy

    # Ray re-runs a batch whose actor died or whose node was lost without limit (max_task_retries=-1: a finite
    # count is used up in milliseconds while a lost node's actor is merely "unavailable", which aborted the whole
    # run). A painting that crashes its actor every time (a native-library crash on one file) still ends as a
    # failure: the actor counts the painting's attempts and fails it after `ActorSpec.max_attempts`.
    quiet_data_context()
    settings = settings or config.settings
    if action == "refresh":
        batch = 32
        ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch)))
        results = ds.map_batches(refresh_batch, fn_kwargs={"spec": spec}, batch_size=batch, batch_format="numpy",
                                 num_cpus=0.25, max_retries=-1)
        if tracker is not None:
            tracker.begin(action, pool_size(0.0, 0.25))
    else:
        size = min(config.actors or pool_size(config.gpus_per_actor, config.cpus_per_actor), len(items))
        batch = max(1, settings.paintings_per_batch) if action == "tune" else 1
        actor = TuneActor if action == "tune" else RenderActor
        ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch)))
        results = ds.map_batches(
            actor, fn_constructor_args=(spec,), batch_size=batch, batch_format="numpy",
            compute=ActorPoolStrategy(size=size),
            num_gpus=config.gpus_per_actor or None, num_cpus=config.cpus_per_actor,
            max_restarts=-1, max_task_retries=-1,
        )
        if tracker is not None:
            tracker.begin(action, size)
    for row in results.iter_rows():
        yield {c: _plain(row[c]) for c in REPORT_COLUMNS}


def quiet_data_context() -> None:
    """Ray Data without its console progress bars (progress is artmator's own log lines, `pipeline.progress`) and
    without the notices that say so: a run's console shows only what concerns the run."""
    import warnings

    from ray.data import DataContext
    from ray.util.debug import log_once

    warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=Warning)
    DataContext.get_current().enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")      # Ray's "Progress bars disabled" warning: chosen, not a fault


def pool_size(gpus_per_actor: float, cpus_per_actor: float) -> int:
    """Actors that fit the cluster: by GPUs when actors use GPUs, else by CPUs leaving one for data tasks."""
    import ray

    res = ray.cluster_resources()
    if gpus_per_actor > 0:
        return max(1, int(res.get("GPU", 0) / gpus_per_actor))
    return max(1, int((res.get("CPU", 1) - 1) / cpus_per_actor)) if res.get("CPU", 1) > 1 else 1


def local_threads_per_actor(config: RunConfig, num_tasks: int) -> int:
    """On the embedded local Ray, split this machine's cores among the actors (0 on a cluster: Ray decides).

    Ray pins each actor's torch to `num_cpus` threads (1 by default), which left half of a 2-core machine idle
    while its single actor tuned: the in-process loop was 25 % faster per painting than `artmator run`.
    """
    if os.environ.get("RAY_ADDRESS"):
        return 0
    actors = min(config.actors or pool_size(config.gpus_per_actor, config.cpus_per_actor), max(1, num_tasks))
    return max(1, (os.cpu_count() or 1) // actors)


# glibc returns large freed blocks to the OS at once by default; tuning k paintings in a batch allocates tensors
# above its mmap threshold every step and page-faults them anew (k = 8 ran 2-9x slower). Keep them in the heap.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def init_ray() -> None:
    """Connect to RAY_ADDRESS when set, else start a local Ray sized to this machine."""
    import sys

    if not os.environ.get("RAY_ADDRESS") and "ray" not in sys.modules:
        # Ray enables token authentication for a new local cluster when RAY_AUTH_MODE is unset, and warns that it
        # chose so. The embedded cluster is this process's own: artmator chooses token mode itself (Ray then
        # creates ~/.ray/auth_token once, quietly). Ray reads the mode when it is imported, so this must come
        # first; a RAY_AUTH_MODE the user set is kept.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        # address="local": always a fresh cluster for this job, never another process's Ray on the same machine.
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", **MALLOC_ENV}})


def count_attempts(store: OutputStore, run_id: str) -> dict[str, int]:
    """Attempts per painting in this run, from the tiny attempt objects actors write (one listing)."""
    root = f"{store.run_dir(run_id)}/attempts"
    store.fs.invalidate_cache(root)
    try:
        paths = store.fs.find(root)
    except FileNotFoundError:
        return {}
    counts: dict[str, int] = {}
    for p in paths:
        pid = p[len(root) + 1:].split("/", 1)[0]
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def report_table(rows: list[dict], attempts: Mapping[str, int], run_id: str, config_hash: str,
                 fingerprints: Mapping[str, str] | None = None) -> pa.Table:
    """Rows -> report.parquet table: NaN/empty become nulls, attempts and plan fingerprints filled in."""
    out = []
    for r in rows:
        r = dict(r)
        for k, v in r.items():
            if (isinstance(v, float) and math.isnan(v)) or v == "" or (k == "delta_bytes" and v == -1):
                r[k] = None
        r["attempts"] = attempts.get(r["painting_id"], 0)
        r["fingerprint"] = (fingerprints or {}).get(r["painting_id"], r.get("fingerprint"))
        r["run_id"], r["config_hash"] = run_id, config_hash
        out.append(r)
    return pa.Table.from_pylist(out, schema=REPORT_SCHEMA)


def _plain(v):
    return v.item() if hasattr(v, "item") else v


# ------------------------------------------------------------------------------------------------ re-render

RENDER_CHANGES = ("render", "face_metrics", "device")
"""The settings `artmator render` changes (JobSettings sections); the rest is each painting's as committed."""


def recorded_render_changed(recorded: Mapping, changes: Mapping[tuple[str, ...], Any]) -> dict:
    """A commit's recorded render inputs (`changes.render_inputs`) with result-changing settings replaced."""
    render = json.loads(json.dumps(recorded))
    for path, value in changes.items():
        if path == ("face_metrics",):
            render["face_metrics"] = value
        elif path == ("render", "expressions"):
            render["expressions"] = list(value)
        elif path[0] == "render":
            render["render"][path[1]] = encode(value)
    render["files_format"] = FILES_FORMAT          # the new commit holds this version's set of files
    return render


def rerender(out_uri: str, storage_options: Mapping | None = None, *,
             changes: Mapping[tuple[str, ...], Any] | None = None, only: tuple[str, ...] = (),
             actors: int | None = None, gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0,
             threads_per_actor: int = 0, run_id: str | None = None, progress_every_s: float = 60.0,
             claim_ttl_s: float = DEFAULT_TTL_S) -> RunSummary:
    """`artmator render`: re-render committed paintings (all, or `only`) from their stored deltas, with their
    recorded render settings changed as given; the same `RenderActor` path `run` takes for `rendered` rows.

    `changes`: {JobSettings leaf path: value} under `RENDER_CHANGES`, e.g. {("render", "turntable_frames"): 5};
    a value the config refuses raises `SettingsError` naming it. Each painting keeps its recorded backbone
    (preset and weight URIs, from its marker), delta, tuned input and metadata; its renders, face metrics and
    result.json are new."""
    from artmator.pipeline.recommit import backbone_settings

    changes = dict(changes or {})
    outside = [".".join(p) for p in changes if p[0] not in RENDER_CHANGES]
    if outside:
        raise ValueError(f"artmator render changes render settings, face metrics and the device only, not {outside}")
    process = with_values(JobSettings(), changes)          # checks every value; speed-only render settings are ours
    changes_results = {p: v for p, v in changes.items() if RESULT_OF[p]}
    start = time.perf_counter()
    run_id = run_id or new_run_id()
    options = dict(storage_options or {})
    store = OutputStore(out_uri, options)
    commits = store.commits(set(only) or None)
    missing = sorted(set(only) - set(commits))
    if missing:
        raise ValueError(f"--only names paintings that are not committed in {store.uri}: {', '.join(missing[:10])}")
    rows: list[dict] = []
    groups: dict[str, list[dict]] = {}
    records: dict[str, dict] = {}
    for pid, commit in sorted(commits.items()):
        inputs, record = commit.doc.get("inputs"), commit.doc.get("backbone")
        if not isinstance(inputs, dict) or not isinstance(record, dict) or "render" not in inputs:
            rows.append(failed_row(pid, "config", "its commit records no render inputs (committed by an older "
                                                  "artmator?); run `artmator run --force --only` on it instead"))
            continue
        render = recorded_render_changed(inputs["render"], changes_results)
        fingerprints = commit.fingerprints._replace(render=digest(render))
        key = json.dumps(record, sort_keys=True)
        records[key] = record
        groups.setdefault(key, []).append({"painting_id": pid, "plan": json.dumps(
            {"action": "render", "fingerprints": fingerprints._asdict(), "inputs": {**inputs, "render": render},
             "backbone": record, "current": commit.version})})
    expressions = process.render.expressions if ("render", "expressions") in changes else None
    for record in records.values() if expressions else ():   # stills a backbone cannot make: refused before any work
        check_run_expressions(replace(process, backbone=backbone_settings(record)), options)
    store.write_run_config(run_id, {"run_id": run_id, "command": "render", "out": store.uri, "only": list(only),
                                    "changes": {".".join(p): encode(v) for p, v in changes.items()},
                                    "storage_options": redact_options(options)})
    work = {"render": sum(len(items) for items in groups.values())}
    tracker = RunProgress(run_id, work, history_estimates(store), progress_every_s,
                          on_tick=lambda done: store.write_report(run_id, report_table(
                              rows + done, count_attempts(store, run_id), run_id, ""), "running"))
    with tracker:
        for key, items in groups.items():
            settings = replace(process, backbone=backbone_settings(records[key]))
            config = RunConfig(manifest_uri="", out_uri=out_uri, settings=settings, storage_options=options,
                               actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor,
                               threads_per_actor=threads_per_actor, claim_ttl_s=claim_ttl_s)
            init_ray()
            spec = ActorSpec(settings_json=json.dumps(settings.to_dict()), out_uri=out_uri, storage_options=options,
                             run_id=run_id, config_hash="",
                             threads=threads_per_actor or local_threads_per_actor(config, len(items)),
                             max_attempts=config.max_task_retries + 1, claim_ttl_s=config.claim_ttl_s)
            for row in execute_phase("render", items, spec, config, tracker, settings):
                tracker.add("render", row)
        rows += tracker.snapshot()
    path = store.write_report(run_id, report_table(rows, count_attempts(store, run_id), run_id, ""))
    failures: dict[str, int] = {}
    for r in rows:
        if r["status"] == "failed":
            failures[r["error_kind"]] = failures.get(r["error_kind"], 0) + 1
    return RunSummary(run_id=run_id, total=len(rows), done=0, skipped=sum(r["status"] == "skipped" for r in rows),
                      failed=sum(failures.values()), seconds=time.perf_counter() - start, report_path=path,
                      failures=failures, rendered=sum(r["status"] == "rendered" for r in rows),
                      claimed=sum(r["status"] == "claimed" for r in rows))
