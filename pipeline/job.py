"""The catalog job: manifest -> skip committed -> Ray Data map_batches(TuneActor, ActorPoolStrategy) -> report.

Works on a local Ray started on the fly and on an existing cluster (RAY_ADDRESS). Actors commit paintings to
storage themselves; the driver only collects report rows, so killing the driver loses nothing committed and a
rerun skips every painting whose commit marker matches this run's config hash.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import pyarrow as pa

from artmator.pipeline.actor import REPORT_COLUMNS, ActorSpec, TuneActor, failed_row
from artmator.pipeline.report import REPORT_SCHEMA
from artmator.pipeline.manifest import PaintingTask, load_manifest
from artmator.pipeline.settings import JobSettings, load_backbone_only, uses_random_models
from artmator.pipeline.storage import OutputStore, redact_options, redact_uri


@dataclass(frozen=True)
class RunConfig:
    """One `artmator run`."""

    manifest_uri: str
    out_uri: str
    settings: JobSettings
    storage_options: dict = field(default_factory=dict)
    actors: int | None = None            # actor pool size (None: from the cluster's resources)
    gpus_per_actor: float = 0.0          # fractional values pack several actors per GPU
    cpus_per_actor: float = 1.0
    threads_per_actor: int = 0           # torch threads in each actor (0: Ray's default for its CPUs)
    retry_failed: bool = False           # also redo paintings that failed deterministically in earlier runs
    max_task_retries: int = 3            # a painting whose actor died this many more times fails (actor_died)
    run_id: str | None = None


@dataclass
class RunSummary:
    run_id: str
    total: int                           # rows in the manifest
    done: int                            # committed in this run
    skipped: int                         # already committed (same config) or earlier deterministic failure
    failed: int
    seconds: float
    report_path: str
    failures: dict[str, int]             # error_kind -> count

    @property
    def ok(self) -> bool:
        return self.failed == 0


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def plan(config: RunConfig, store: OutputStore, config_hash: str) -> tuple[list[PaintingTask], list[dict], int]:
    """(tasks to run, report rows of invalid rows and skipped earlier failures, number already committed)."""
    tasks, problems = load_manifest(config.manifest_uri, config.storage_options or None)
    manifest_level = [p for p in problems if p.row is None]
    if manifest_level:
        raise ValueError("the manifest cannot be used: " + "; ".join(str(p) for p in manifest_level))
    rows = []
    by_row: dict[int, list] = {}
    for p in problems:
        by_row.setdefault(p.row, []).append(p)
    for row, probs in sorted(by_row.items()):
        pid = probs[0].painting_id or f"row-{row}"
        rows.append({**failed_row(pid, "manifest", "; ".join(f"{p.column}: {p.reason}" for p in probs)),
                     "status": "invalid"})
    committed = store.committed(config_hash)
    pending = [t for t in tasks if t.painting_id not in committed]
    if not config.retry_failed:
        earlier = deterministic_failures(store, config_hash)
        for t in pending:
            if t.painting_id in earlier:
                rows.append({**failed_row(t.painting_id, *earlier[t.painting_id]), "status": "skipped"})
        pending = [t for t in pending if t.painting_id not in earlier]
    return pending, rows, len(committed.keys() & {t.painting_id for t in tasks})


def deterministic_failures(store: OutputStore, config_hash: str) -> dict[str, tuple[str, str]]:
    """painting_id -> (kind, message) of failures in earlier runs with this config that retrying cannot fix."""
    from artmator.pipeline.errors import DETERMINISTIC

    reports = store.read_reports()
    if reports.num_rows == 0 or "config_hash" not in reports.column_names:
        return {}
    out = {}
    for r in reports.to_pylist():
        if r.get("config_hash") == config_hash and r.get("status") == "failed" and r.get("error_kind") in DETERMINISTIC:
            out[r["painting_id"]] = (r["error_kind"], r.get("message") or "")
    return out


def run(config: RunConfig, progress: Callable[[int, int], None] | None = None) -> RunSummary:
    """Run the job; returns the summary after writing runs/<run_id>/report.parquet."""
    import ray

    start = time.perf_counter()
    run_id = config.run_id or new_run_id()
    store = OutputStore(config.out_uri, config.storage_options)
    backbone = load_backbone_only(replace(config.settings, device="cpu"), config.storage_options)  # hash only
    config_hash = config.settings.result_hash(backbone.base_hash())
    from artmator.pipeline.settings import settings_json

    store.write_run_config(run_id, {"run_id": run_id, "manifest": redact_uri(config.manifest_uri),
                                    "out": store.uri, "config_hash": config_hash,
                                    "storage_options": redact_options(config.storage_options),
                                    "settings": json.loads(settings_json(config.settings, redact_uri)),
                                    "actors": config.actors, "gpus_per_actor": config.gpus_per_actor,
                                    "cpus_per_actor": config.cpus_per_actor})
    tasks, rows, already = plan(config, store, config_hash)
    if tasks:
        init_ray()
        spec = ActorSpec(settings_json=json.dumps(config.settings.to_dict()), out_uri=config.out_uri,
                         storage_options=dict(config.storage_options), run_id=run_id, config_hash=config_hash,
                         random_models=uses_random_models(config.settings),
                         threads=config.threads_per_actor or local_threads_per_actor(config, len(tasks)),
                         max_attempts=config.max_task_retries + 1)
        rows += list(_execute(tasks, spec, config, progress))
    attempts = count_attempts(store, run_id)
    table = report_table(rows, attempts, run_id, config_hash)
    path = store.write_report(run_id, table)
    statuses = table.column("status").to_pylist()
    failures: dict[str, int] = {}
    for s, k in zip(statuses, table.column("error_kind").to_pylist()):
        if s in ("failed", "invalid"):
            failures[k] = failures.get(k, 0) + 1
    return RunSummary(run_id=run_id, total=already + len(statuses), done=statuses.count("done"),
                      skipped=already + statuses.count("skipped"),
                      failed=statuses.count("failed") + statuses.count("invalid"),
                      seconds=time.perf_counter() - start, report_path=path, failures=failures)


def _execute(tasks: list[PaintingTask], spec: ActorSpec, config: RunConfig, progress):
    """The Ray Data plan; yields report rows as actors finish batches."""
    import warnings

    import ray
    from ray.data import ActorPoolStrategy, DataContext

    # Ray re-runs a batch whose actor died or whose node was lost without limit (max_task_retries=-1: a finite
    # count is used up in milliseconds while a lost node's actor is merely "unavailable", which aborted the whole
    # run). A painting that crashes its actor every time (a native-library crash on one file) still ends as a
    # failure: the actor counts the painting's attempts and fails it after `ActorSpec.max_attempts`.
    warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=Warning)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    size = config.actors or pool_size(config.gpus_per_actor, config.cpus_per_actor)
    batch = max(1, config.settings.paintings_per_batch)
    items = [{"painting_id": t.painting_id, "task": json.dumps(t.as_row())} for t in tasks]
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch)))
    results = ds.map_batches(
        TuneActor, fn_constructor_args=(spec,), batch_size=batch, batch_format="numpy",
        compute=ActorPoolStrategy(size=min(size, len(tasks))),
        num_gpus=config.gpus_per_actor or None, num_cpus=config.cpus_per_actor,
        max_restarts=-1, max_task_retries=-1,
    )
    done = 0
    for row in results.iter_rows():
        done += 1
        if progress is not None:
            progress(done, len(tasks))
        yield {c: _plain(row[c]) for c in REPORT_COLUMNS}


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





def report_table(rows: list[dict], attempts: Mapping[str, int], run_id: str, config_hash: str) -> pa.Table:
    """Rows -> report.parquet table: NaN/empty become nulls, attempts filled in (0 for never-started rows)."""
    out = []
    for r in rows:
        r = dict(r)
        for k, v in r.items():
            if (isinstance(v, float) and math.isnan(v)) or v == "" or (k == "delta_bytes" and v == -1):
                r[k] = None
        r["attempts"] = attempts.get(r["painting_id"], 0)
        r["run_id"], r["config_hash"] = run_id, config_hash
        out.append(r)
    return pa.Table.from_pylist(out, schema=REPORT_SCHEMA)


def _plain(v):
    return v.item() if hasattr(v, "item") else v

