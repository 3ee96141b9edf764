"""Injected faults on real Ray and a real S3 server: nothing finished is lost or duplicated, every failure has a reason.

1. Actors die (`os._exit(1)` in the test-only `FaultyTuneActor` subclass, deterministic per painting and attempt): Ray restarts the actor and re-runs the batch; every painting is committed once and the report
   records `attempts` > 1 exactly for the killed ones.
2. The object store goes away mid-run (a moto S3 server on 127.0.0.1 stopped for ~12 s, then restarted in the
   same process, data kept): the run ends cleanly (storage failures with a reason, or a storage error), and a
   resume commits every painting exactly once; committed paintings verify, no marker lacks its files.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pyarrow.parquet as pq
import pytest

from artmator.pipeline.errors import classify
from artmator.pipeline.job import RunConfig, run
from artmator.pipeline.storage import OutputStore
from tests.pipeline.ray_fixtures import good_rows, write_images, write_manifest
from tests.reliability.conftest import ROOT, alive, markers, moto, supervise  # noqa: F401 (fixture)
from tests.reliability.faulty_actor import FRACTION_ENV, SEED_ENV, fault_exit_decision

RUN_ARGS = ["--stage1-steps", "2", "--stage2-steps", "1", "--frames", "2", "--render-resolution", "32",
            "--resolution", "32", "--expressions", "happiness", "--no-head-prior", "--no-gallery", "--actors", "1", "--no-find-faces", "--no-face-metrics"]
# The child gets its own local Ray (own temp dir) so the fault settings' environment reaches its workers and so
# killing it can never touch the test session's Ray. Its job runs the test-only FaultyTuneActor.
CHILD = """
import sys, ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=sys.argv[1])
from artmator.pipeline import job
from tests.reliability.faulty_actor import FaultyTuneActor
job.TuneActor = FaultyTuneActor
from artmator.pipeline.cli import main
main(sys.argv[2:])
"""


def _pick_seed(ids: list[str], fraction: float) -> tuple[int, dict[str, int]]:
    """A fault seed under which >= 2 paintings die on their first attempt and every one survives its second."""
    for seed in range(1000):
        first_ok = {}
        for pid in ids:
            first_ok[pid] = next(a for a in range(1, 10) if not fault_exit_decision(pid, a, fraction, seed))
        if sum(a > 1 for a in first_ok.values()) >= 2 and max(first_ok.values()) == 2:
            return seed, first_ok
    raise AssertionError("no suitable seed")


@pytest.mark.timeout(420)
def test_actor_crashes_are_retried_and_counted(tmp_path):
    rows = good_rows(4, prefix="crash")
    ids = [r["painting_id"] for r in rows]
    fraction = 0.3
    seed, expected_attempts = _pick_seed(ids, fraction)
    write_images(str(tmp_path), {r["image_uri"]: 40 + i for i, r in enumerate(rows)})
    manifest = write_manifest(str(tmp_path / "manifest.parquet"), rows)
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="rf", dir="/tmp")            # short: Ray's socket paths are length-limited
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({FRACTION_ENV: str(fraction), SEED_ENV: str(seed),
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    log_path = tmp_path / "child.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD, ray_tmp, "run", manifest, "--out", str(out),
                                  *RUN_ARGS], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        code, family = supervise(child)
    end = time.time() + 20
    while time.time() < end and any(alive(p) for p in family):
        time.sleep(0.2)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-4000:]
    assert not [p for p in family if alive(p)], "processes of the run survive it"

    store = OutputStore(str(out))
    assert sorted(markers(out)) == sorted(ids)
    assert all(store.verify(pid) == [] for pid in ids) and store.partial_paintings() == []
    reports = list(out.glob("runs/*/report.parquet"))
    assert len(reports) == 1
    report = {r["painting_id"]: r for r in pq.read_table(reports[0]).to_pylist()}
    assert sorted(report) == sorted(ids)
    assert all(r["status"] == "done" for r in report.values()), report
    got = {pid: report[pid]["attempts"] for pid in ids}
    assert got == expected_attempts, f"attempts {got}, fault hook killed {expected_attempts}"
    assert sum(a > 1 for a in got.values()) >= 2


# ------------------------------------------------------------------------------------------ object store outage

def _s3_markers(fs, root: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    try:
        paths = fs.find(f"{root}/commits")
    except FileNotFoundError:
        return {}
    return {p.split("/")[-2]: fs.cat_file(p) for p in paths}


@pytest.mark.timeout(420)
def test_object_store_outage_mid_run_then_resume(ray_local, moto, tmp_path, rel_settings):
    import s3fs

    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": moto.endpoint},
               "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("outage-bucket")
    rows = good_rows(8, prefix="o")
    ids = [r["painting_id"] for r in rows]
    write_images(str(tmp_path), {r["image_uri"]: 60 + i for i, r in enumerate(rows)})
    manifest = write_manifest(str(tmp_path / "manifest.parquet"), rows)
    out_uri = "s3://outage-bucket/out"

    outcome: dict = {}

    def first_run():
        try:
            outcome["summary"] = run(RunConfig(manifest_uri=manifest, out_uri=out_uri, settings=rel_settings,
                                               storage_options=options, cpus_per_actor=1.0, run_id="outage-1"))
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    thread = threading.Thread(target=first_run, daemon=True)
    thread.start()
    deadline = time.time() + 240
    before: dict[str, bytes] = {}
    while time.time() < deadline and thread.is_alive() and not before:
        before = _s3_markers(fs, "outage-bucket/out")
        time.sleep(0.3)
    assert before, f"nothing committed before the outage: {outcome}"
    assert thread.is_alive() and len(before) < len(ids), "the run ended before the outage could start"
    moto.stop()                                                    # ---- the object store is gone
    time.sleep(12)
    moto.start_again()                                             # ---- back, same process, same data
    thread.join(timeout=240)
    assert not thread.is_alive(), "the run hangs after the object store came back"

    if "error" in outcome:                                         # stopped: with a storage error, nothing else
        assert classify(outcome["error"])[0] == "storage", repr(outcome["error"])
    else:  # finished: the retries bridged the outage, or the paintings it hit failed as storage errors only
        s1 = outcome["summary"]
        assert set(s1.failures) <= {"storage"}, s1.failures
        failed = [r for r in pq.read_table(s1.report_path, filesystem=OutputStore(out_uri, options).fs).to_pylist()
                  if r["status"] == "failed"]
        assert all("EndpointConnectionError" in r["message"] for r in failed), failed
    store = OutputStore(out_uri, options)
    after_outage = store.committed()
    assert set(before) <= set(after_outage)
    for pid in after_outage:                                       # nothing committed is torn
        assert store.verify(pid) == [], store.verify(pid)

    s2 = run(RunConfig(manifest_uri=manifest, out_uri=out_uri, settings=rel_settings, storage_options=options,
                       cpus_per_actor=1.0, run_id="outage-2"))
    assert s2.ok and s2.failed == 0, s2
    final = _s3_markers(fs, "outage-bucket/out")
    assert sorted(final) == sorted(ids)
    assert {pid: final[pid] for pid in before} == before, "a painting committed before the outage was redone"
    done_in_resume = {r["painting_id"] for r in pq.read_table(s2.report_path, filesystem=store.fs).to_pylist()
                      if r["status"] == "done"}
    assert done_in_resume == set(ids) - set(after_outage), "the resume redid committed work or skipped some"
    assert s2.done + s2.skipped == len(ids)
    assert all(store.verify(pid) == [] for pid in ids)
    assert store.partial_paintings() == []
    listing = [p for p in store.fs.find(store.paintings_root)]
    assert all(any(p.startswith(f"{store.paintings_root}/{pid}/") for pid in ids) for p in listing)
