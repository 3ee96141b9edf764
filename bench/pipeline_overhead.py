"""Pipeline overhead: the same demo paintings through `pipeline.job.run` (local Ray, 1 actor) vs a plain loop.

    python -m bench.pipeline_overhead                    # 4 demo paintings, quick settings with few steps, CPU
    python -m bench.pipeline_overhead --paintings 1 --stage1-steps 1 --stage2-steps 1   # toy size (smoke test)

Both sides do the same work with the same settings and write the same outputs to a fresh temporary folder:
  in-process: load_models, then per painting the actor's flow (pipeline.flow.paint: face square and pose ->
              tune_paintings -> renders -> files) -> OutputStore.write_painting (marker last);
  Ray:        pipeline.job.run(RunConfig(actors=1, threads_per_actor=<this process's torch threads>)) on a local
              Ray that is started (and timed) before the run, so Ray startup is reported on its own.
The in-process loop runs before AND after the Ray run; its mean is the reference (drift from other load on the
machine shows as the difference between the two, reported as inproc_spread).

Equal cores (`--work-cores 1 --system-cores 0`, or on a bigger machine e.g. `--work-cores 8-15 --system-cores 0-7`):
the in-process loop runs pinned to the work cores with one torch thread per core; Ray is started from a process
pinned to the system cores, so the raylet, the GCS, Ray Data's scheduling and the driver stay there, and the
tuning actor is moved onto the work cores as soon as its process appears (a watcher thread, psutil; the actor
runs with the same thread count). Both sides then tune on the same dedicated cores and only the pipeline's own
cost remains in overhead_per_painting. Without these options nothing is pinned (Ray's processes share the cores).

Reported (seconds; one process, one run):
  ray_init                 ray.init of a local cluster (fixed, once per driver)
  run_total                pipeline.job.run wall time (Ray already up): hashing, plan/resume scan, actor start +
                           model load, tuning, writing, report
  actor_work               sum over paintings of the actor's own per-batch time (report `seconds_total`)
  fixed                    run_total - actor_work: actor process start, imports, model load, Ray Data scheduling,
                           driver-side plan and report (paid once per run / per actor)
  inproc_loop, model_load  the plain loop (mean of the two) and its one-off model load
  overhead_total           (run_total) / (model_load + inproc_loop) - 1
  overhead_per_painting    (actor_work - inproc_loop) / inproc_loop: the marginal per-painting cost of the
                           pipeline (attempt bookkeeping, Ray batch transport, thread differences)
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench.common import environment, write_results
from bench.tuning import DEMO
from artmator.model.render import RenderConfig
from artmator.pipeline.flow import context_of, load_context, paint
from artmator.pipeline.manifest import load_manifest, manifest_base_dir, resolve_uri
from artmator.pipeline.painting import result_flags
from artmator.pipeline.settings import JobSettings, load_models, quick_settings
from artmator.pipeline.storage import OutputStore


def bench_settings(stage1_steps: int, stage2_steps: int, render_resolution: int, frames: int) -> JobSettings:
    s = quick_settings("tiny")
    tune = replace(s.tune, stage1=replace(s.tune.stage1, steps=stage1_steps),
                   stage2=replace(s.tune.stage2, steps=stage2_steps))
    # Face metrics off: the in-process loop below measures the tuning path, not the face scorer.
    return replace(s, tune=tune, render=RenderConfig(resolution=render_resolution, turntable_frames=frames,
                                                     expressions=("happiness",)), face_metrics=False)


def write_manifest(n: int, folder: Path) -> str:
    """The first n demo rows (repeated with new ids when n > 4), image URIs made absolute."""
    table = pq.read_table(DEMO)
    base = manifest_base_dir(str(DEMO))
    rows = table.to_pylist()
    out = []
    for i in range(n):
        r = dict(rows[i % len(rows)])
        r["painting_id"] = f"{r['painting_id']}-{i}"
        r["image_uri"] = resolve_uri(r["image_uri"], base)
        out.append(r)
    path = folder / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(out, schema=table.schema), path)
    return str(path)


def inprocess(manifest: str, settings: JobSettings, out: str, config_hash: str, models=None) -> tuple[float, float]:
    """(model load seconds, loop seconds): the actor's painting flow (`pipeline.flow.paint`) without Ray."""
    t0 = time.perf_counter()
    context = context_of(settings, models) if models is not None else load_context(settings)
    t1 = time.perf_counter()
    tasks, problems = load_manifest(manifest)
    assert not problems, problems
    store = OutputStore(out)
    for task in tasks:
        [outcome] = paint([task], context)
        assert outcome.ok, (outcome.error_kind, outcome.message)
        flags = result_flags(outcome.files)
        store.write_painting(task.painting_id, outcome.files, {"run_id": "inprocess", "config_hash": config_hash,
                                                               "flags": flags})
    return t1 - t0, time.perf_counter() - t1


def parse_cores(text: str | None) -> set[int] | None:
    """'0-3,6' -> {0, 1, 2, 3, 6}."""
    if not text:
        return None
    cores: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cores.update(range(int(lo), int(hi or lo) + 1))
    return cores


class ActorPinner:
    """Moves the tuning actor's process (and its threads) onto `cores` as soon as it appears under this process."""

    def __init__(self, cores: set[int]):
        import threading

        self.cores, self.pinned, self._stop = sorted(cores), set(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.05):
            for proc in me.children(recursive=True):
                try:
                    if proc.pid not in self.pinned and "MapWorker" in " ".join(proc.cmdline()):
                        proc.cpu_affinity(self.cores)
                        for thread in proc.threads():      # threads started before the move keep their mask
                            psutil.Process(thread.id).cpu_affinity(self.cores)
                        self.pinned.add(proc.pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
                    continue

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run(paintings: int, stage1_steps: int, stage2_steps: int, render_resolution: int, frames: int,
        out_dir: Path | None = None, name: str = "pipeline_overhead_cpu", work_cores: set[int] | None = None,
        system_cores: set[int] | None = None) -> list[dict]:
    import os

    affinity, threads = os.sched_getaffinity(0), torch.get_num_threads()
    try:
        return _run(paintings, stage1_steps, stage2_steps, render_resolution, frames, out_dir, name, work_cores,
                    system_cores)
    finally:                                  # the caller's process gets its cores and threads back
        os.sched_setaffinity(0, affinity)
        torch.set_num_threads(threads)


def _run(paintings, stage1_steps, stage2_steps, render_resolution, frames, out_dir, name, work_cores,
         system_cores) -> list[dict]:
    import contextlib
    import os

    import ray

    from artmator.pipeline.job import RunConfig
    from artmator.pipeline.job import run as job_run

    settings = bench_settings(stage1_steps, stage2_steps, render_resolution, frames)
    if work_cores:
        os.sched_setaffinity(0, work_cores)
        torch.set_num_threads(len(work_cores))
    threads = torch.get_num_threads()
    pinned = 0
    with tempfile.TemporaryDirectory(prefix="artmator-overhead-") as tmp:
        tmp = Path(tmp)
        manifest = write_manifest(paintings, tmp)
        models = load_models(settings)
        config_hash = settings.result_hash(models.backbone.base_hash())
        # Warm-up (first-call costs: lazy imports, allocator) on one painting, not timed.
        (tmp / "warm").mkdir()
        inprocess(write_manifest(1, tmp / "warm"), settings, str(tmp / "warm-out"), config_hash, models)
        load_a, loop_a = inprocess(manifest, settings, str(tmp / "inproc-a"), config_hash)

        if system_cores:
            os.sched_setaffinity(0, system_cores)     # Ray's processes inherit this mask
        start = time.perf_counter()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address="local", num_cpus=max(2, threads), include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
        ray_init = time.perf_counter() - start
        try:
            with ActorPinner(work_cores) if work_cores else contextlib.nullcontext() as pinner:
                summary = job_run(RunConfig(manifest_uri=manifest, out_uri=str(tmp / "ray-out"), settings=settings,
                                            actors=1, threads_per_actor=threads))
            pinned = len(pinner.pinned) if pinner else 0
        finally:
            if started_here:
                ray.shutdown()
            if work_cores:
                os.sched_setaffinity(0, work_cores)
        if not summary.ok:
            raise RuntimeError(f"the Ray run failed paintings: {summary.failures}")
        report = pq.read_table(summary.report_path).to_pylist()
        actor_work = sum(r["seconds_total"] for r in report if r["status"] == "done")

        load_b, loop_b = inprocess(manifest, settings, str(tmp / "inproc-b"), config_hash)
        same = sorted(OutputStore(str(tmp / "inproc-a")).committed_ids()) == sorted(
            OutputStore(str(tmp / "ray-out")).committed_ids())

    loop = (loop_a + loop_b) / 2
    load = (load_a + load_b) / 2
    row = {"paintings": paintings, "ray_init": ray_init, "run_total": summary.seconds, "actor_work": actor_work,
           "fixed": summary.seconds - actor_work, "inproc_loop": loop, "inproc_spread": abs(loop_a - loop_b),
           "model_load": load, "overhead_total": summary.seconds / (load + loop) - 1,
           "overhead_per_painting": (actor_work - loop) / loop, "same_ids_committed": same,
           "actors_pinned": pinned}
    print(json.dumps(row, indent=1))
    env = environment(torch.device("cpu")) | {"stage1_steps": stage1_steps, "stage2_steps": stage2_steps,
                                              "render_resolution": render_resolution, "turntable_frames": frames,
                                              "actors": 1, "threads_per_actor": threads,
                                              "work_cores": _cores_text(work_cores),
                                              "system_cores": _cores_text(system_cores)}
    notes = ("Same paintings, settings and outputs; seconds. overhead_total = run_total / (model_load + "
             "inproc_loop) - 1 (includes the fixed costs, which a long run amortises); overhead_per_painting = "
             "(actor_work - inproc_loop) / inproc_loop. ray_init is not part of run_total.")
    write_results(name, [row], env, list(row), notes=notes, out_dir=out_dir)
    return [row]


def _cores_text(cores: set[int] | None) -> str:
    return ",".join(map(str, sorted(cores))) if cores else "shared"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paintings", type=int, default=4)
    p.add_argument("--stage1-steps", type=int, default=10)
    p.add_argument("--stage2-steps", type=int, default=5)
    p.add_argument("--render-resolution", type=int, default=64)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--name", default="pipeline_overhead_cpu")
    p.add_argument("--work-cores", default=None, help="Cores of the tuning (both sides), e.g. 1 or 8-15.")
    p.add_argument("--system-cores", default=None, help="Cores of Ray's own processes and the driver, e.g. 0.")
    a = p.parse_args(argv)
    run(a.paintings, a.stage1_steps, a.stage2_steps, a.render_resolution, a.frames, a.out_dir, a.name,
        parse_cores(a.work_cores), parse_cores(a.system_cores))


if __name__ == "__main__":
    main()
