"""Fixtures and helpers of the reliability tests: tiny models loaded once, manifests with hostile columns, an
in-process "run without Ray" (the real `plan` + `tune_and_commit` + report path), process-tree killing.

The Ray and moto fixtures are the pipeline tests' own (one Ray and one moto server per test session).
"""
from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.proctree import alive, descendants  # noqa: F401 - re-exported to the tests
from artmator.pipeline.actor import ActorSpec, failed_row, tune_and_commit, wire_plan
from artmator.pipeline.flow import context_of
from artmator.pipeline.job import RunConfig, count_attempts, make_plan, report_table
from artmator.pipeline.settings import JobSettings, load_models
from artmator.pipeline.storage import OutputStore
from tests.pipeline.conftest import ray_local, s3_bucket, s3_endpoint, s3_options  # noqa: F401  (fixtures)
from tests.pipeline.ray_fixtures import png_bytes, tiny_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD_ID = "good-1"


@pytest.fixture(scope="session")
def rel_settings() -> JobSettings:
    """The cheapest settings that still run both stages and every output (one step each, 2 frames, no stills)."""
    s = tiny_settings(stage1=1, stage2=1)
    return replace(s, render=replace(s.render, turntable_frames=2, expressions=()))


@pytest.fixture(scope="session")
def rel_models(rel_settings):
    return load_models(rel_settings)


# ---------------------------------------------------------------------------------------------- manifests

_COLUMN_TYPES = {"painting_id": pa.string(), "image_uri": pa.string(), "yaw_deg": pa.float64(),
                 "pitch_deg": pa.float64(), "title": pa.string(), "artist": pa.string(), "rights": pa.string(),
                 "credit_line": pa.string(), "source_url": pa.string(), "date": pa.string()}


def manifest_table(rows: list[dict], types: Mapping[str, pa.DataType] | None = None) -> pa.Table:
    """A manifest table with the union of the rows' columns (missing values null), typed by `types`."""
    names: list[str] = []
    for r in rows:
        names += [k for k in r if k not in names]
    types = {**_COLUMN_TYPES, **dict(types or {})}
    return pa.table({n: pa.array([r.get(n) for r in rows], types.get(n)) for n in names})


def write_table(path: Path, table: pa.Table) -> str:
    pq.write_table(table, path)
    return str(path)


def good_row(folder: Path, painting_id: str = GOOD_ID, seed: int = 1) -> dict:
    (folder / f"{painting_id}.png").write_bytes(png_bytes(seed))
    return {"painting_id": painting_id, "image_uri": f"{painting_id}.png", "yaw_deg": 0.0, "pitch_deg": 0.0,
            "title": "A good painting"}


# ------------------------------------------------------------------------------------ run without Ray

def inline_run(manifest_uri: str, out_uri: str, settings: JobSettings, models, run_id: str = "run-inline",
               storage_options: dict | None = None) -> tuple[dict[str, list[dict]], OutputStore]:
    """What `pipeline.job.run` does, minus Ray: plan, ONE tune_and_commit batch of every row to tune, report.

    Every valid painting is tuned in the same batch (paintings_per_batch = number of tasks), so a bad painting
    really runs alongside the good one. Returns (painting_id -> report rows, store).
    """
    storage_options = dict(storage_options or {})
    store = OutputStore(out_uri, storage_options)
    config = RunConfig(manifest_uri=manifest_uri, out_uri=out_uri, settings=settings, storage_options=storage_options)
    plan = make_plan(config, store)
    rows = plan.invalid + plan.failed_before
    todo = plan.of("tune")
    if todo:
        spec = ActorSpec(settings_json=json.dumps(settings.to_dict()), out_uri=out_uri,
                         storage_options=storage_options, run_id=run_id, config_hash=plan.config_hash,
                         max_attempts=4)
        rows += tune_and_commit([r.task for r in todo], context_of(settings, models, storage_options), store, spec,
                                plans=[wire_plan(r, settings) for r in todo])
    rows += [{**failed_row(r.task.painting_id, "", ""), "status": "skipped"} for r in plan.of("skip")]
    table = report_table(rows, count_attempts(store, run_id), run_id, plan.config_hash,
                         {r.task.painting_id: r.failure_key for r in plan.rows})
    store.write_report(run_id, table)
    by_id: dict[str, list[dict]] = {}
    for r in table.to_pylist():
        by_id.setdefault(r["painting_id"], []).append(r)
    return by_id, store


def markers(out: Path) -> dict[str, bytes]:
    store = OutputStore(str(out))
    return {pid: store.fs.cat_file(ref.path) for pid, ref in sorted(store.scan().current.items())}


# ---------------------------------------------------------------------------------------- processes

def supervise(child, timeout_s: float = 360) -> tuple[int | None, set[int]]:
    """Wait for a child started with `start_new_session=True`, tracking its process tree; then make sure every
    process of that tree is dead. Returns (exit code or None when it timed out, the pids seen)."""
    import time

    family: set[int] = set()
    try:
        deadline = time.time() + timeout_s
        while child.poll() is None and time.time() < deadline:
            family |= descendants(child.pid)
            time.sleep(0.2)
        code = child.poll()
    finally:
        kill_tree(child.pid, family)
        child.wait(timeout=30)
    return code, family


def kill_tree(pid: int, family: set[int]) -> None:
    """SIGKILL the process group of `pid` and every process in `family` (by id; only processes we started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in family | descendants(pid):
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ------------------------------------------------------------------------------------------ object store outage

class Moto:
    """A moto S3 server on a fixed 127.0.0.1 port that can be stopped and restarted in this process (data kept)."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self._cls = ThreadedMotoServer
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def options(self) -> dict:
        """s3fs storage options that fail fast while the server is down (fake credentials)."""
        return {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": self.endpoint},
                "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}

    def stop(self) -> None:
        self.server.stop()

    def start_again(self) -> None:
        for _ in range(50):
            try:
                self.server = self._cls(ip_address="127.0.0.1", port=self.port, verbose=False)
                self.server.start()
                return
            except OSError:                                         # port still in TIME_WAIT / being released
                time.sleep(0.2)
        raise AssertionError("could not restart the S3 server on its port")


@pytest.fixture
def moto(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    server = Moto()
    try:
        yield server
    finally:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - already stopped
            pass
