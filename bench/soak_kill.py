"""Soak: SIGKILL the `artmator run` driver at random moments, resume, repeat; then prove nothing was lost or redone.

    python -m bench.soak_kill                 # 20 rounds, 80 paintings (about 8-10 minutes on 2 CPU cores)
    python -m bench.soak_kill --rounds 5 --paintings 20

One round in four is killed at a random moment after its start (often while Ray and the actors start up); the
others a random 0-5 s after the round's first new commit, i.e. while paintings are being tuned and written.
Each round starts `artmator run` in its own process group with its own local Ray (own --temp-dir under /tmp), so
killing it never touches another Ray on the machine; after the kill every process of that round (the process group,
its descendants, and anything whose command line names the round's Ray temp dir) is SIGKILLed by pid and the
script checks none survives. After the rounds, one last run without a kill finishes the catalogue. It then prints:

    committed once each   every good painting has exactly one marker and its files verify (size + sha256)
    lost                  good paintings without a marker after the final run
    duplicated            committed paintings that were tuned again later (their marker changed after it first
                          appeared), or reported `done` by more than one run
    partial visible       committed paintings with missing or altered files (partial folders without a marker are
                          ignored by resume and the gallery; their count is printed separately)
    stray processes       processes of killed rounds still alive

Exit status 0 only when lost, duplicated, partial visible and stray processes are all 0.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.proctree import family, kill_all, processes

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys, ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=sys.argv[1])
from artmator.pipeline.cli import main
main(sys.argv[2:])
"""
RUN_ARGS = ["--stage1-steps", "3", "--stage2-steps", "2", "--frames", "3", "--render-resolution", "32",
            "--resolution", "32", "--expressions", "happiness", "--no-head-prior", "--no-gallery", "--actors", "1",
            "--no-find-faces", "--no-face-metrics"]  # generated blobs: ready-made "face crops", no face to score


_processes, _family, _kill = processes, family, kill_all


def _catalogue(folder: Path, n: int, bad: bool = True) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.pipeline.ray_fixtures import png_bytes

    folder.mkdir(parents=True, exist_ok=True)
    ids, uris, yaws = [], [], []
    for i in range(n):
        (folder / f"s{i:03d}.png").write_bytes(png_bytes(1000 + i))
        ids.append(f"s{i:03d}")
        uris.append(f"s{i:03d}.png")
        yaws.append(float(5 * (i % 4)))
    if bad:
        (folder / "broken.png").write_bytes(b"")                   # two bad rows: failures, never "lost"
        ids += ["bad-empty-image", "bad-yaw"]
        uris += ["broken.png", "s000.png"]
        yaws += [0.0, 500.0]
    pq.write_table(pa.table({"painting_id": ids, "image_uri": uris, "yaw_deg": pa.array(yaws, pa.float64()),
                             "pitch_deg": pa.array([0.0] * len(ids), pa.float64())}), folder / "manifest.parquet")
    return str(folder / "manifest.parquet")


def _markers(out: Path) -> dict[str, bytes]:
    from artmator.pipeline.storage import OutputStore

    store = OutputStore(str(out))
    return {pid: store.fs.cat_file(ref.path) for pid, ref in sorted(store.scan().current.items())}


def _one_round(manifest: str, out: Path, kill_after: float | None, log: Path,
               after_commit: float | None = None) -> tuple[str, int, float]:
    """Run `artmator run` once and SIGKILL it `kill_after` s after its start or, when `after_commit` is given,
    that many seconds after the round's first new commit (so the kill lands while actors tune and write), whichever
    comes first; None: let it finish. Returns (how it ended, stray processes, seconds)."""
    committed_before = set(_markers(out))
    first_commit: float | None = None
    ray_tmp = tempfile.mkdtemp(prefix="soak", dir="/tmp")         # short: Ray's socket paths are length-limited
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    start = time.time()
    with open(log, "ab") as fh:
        child = subprocess.Popen([sys.executable, "-c", CHILD, ray_tmp, "run", manifest, "--out", str(out),
                                  *RUN_ARGS], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        family: set[int] = set()
        deadline = start + (kill_after if kill_after is not None else 1800)
        while child.poll() is None and time.time() < deadline:
            family |= _family(child.pid, ray_tmp)
            if after_commit is not None and first_commit is None and set(_markers(out)) - committed_before:
                first_commit = time.time()
                deadline = min(deadline, first_commit + after_commit)
            time.sleep(0.1)
        how = f"exit {child.poll()}" if child.poll() is not None else "SIGKILL"
        if child.poll() is None:
            family |= _family(child.pid, ray_tmp)
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _kill(family)
        child.wait(timeout=60)
        end = time.time() + 15
        strays = family | _family(child.pid, ray_tmp)
        while time.time() < end:
            strays = {p for p in strays if p in _processes()} | _family(child.pid, ray_tmp)
            if not strays:
                break
            _kill(strays)                                          # reparented Ray processes of this round
            time.sleep(0.5)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return how, len(strays), time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--paintings", type=int, default=80, help="good paintings in the catalogue")
    parser.add_argument("--min-kill", type=float, default=6.0, help="earliest kill, seconds after the start")
    parser.add_argument("--max-kill", type=float, default=35.0, help="latest kill, seconds after the start")
    parser.add_argument("--after-commit", type=float, default=5.0,
                        help="most rounds are killed up to this many seconds after their first commit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep the catalogue, outputs and logs here")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="artmator-soak-"))
    manifest = _catalogue(work / "catalog", args.paintings)
    out, log = work / "out", work / "runs.log"
    good = {f"s{i:03d}" for i in range(args.paintings)}
    first_seen: dict[str, bytes] = {}
    redone: set[str] = set()
    strays = kills = 0
    t0 = time.time()
    print(f"soak: {args.rounds} rounds, {args.paintings} good + 2 bad paintings, kills at "
          f"{args.min_kill:g}-{args.max_kill:g} s, work dir {work}", flush=True)
    for rnd in range(1, args.rounds + 1):
        kill_after = rng.uniform(args.min_kill, args.max_kill)
        # 1 round in 4: a kill at a random moment (often during start-up); else a few seconds after the round's
        # first commit, while paintings are being tuned and written.
        after_commit = None if rng.random() < 0.25 else rng.uniform(0.0, args.after_commit)
        how, stray, secs = _one_round(manifest, out, kill_after, log, after_commit)
        kills += how == "SIGKILL"
        strays += stray
        now = _markers(out)
        for pid, data in now.items():
            if pid in first_seen and first_seen[pid] != data:
                redone.add(pid)
            first_seen.setdefault(pid, data)
        partial = sorted(p.name for p in (out / "paintings").glob("*") if p.name not in now) \
            if (out / "paintings").exists() else []
        plan = f"{kill_after:4.1f} s" if after_commit is None else f"1st commit +{after_commit:3.1f} s"
        print(f"round {rnd:2d}: {how:8s} after {secs:5.1f} s (kill planned: {plan:>18s}); committed "
              f"{len(set(now) & good):3d}/{len(good)}; "
              f"partial folders {len(partial)}; stray processes {stray}", flush=True)
    how, stray, secs = _one_round(manifest, out, None, log)             # the final, uninterrupted resume
    strays += stray
    print(f"final  : {how:8s} after {secs:5.1f} s", flush=True)

    from artmator.pipeline.storage import OutputStore

    store = OutputStore(str(out))
    final = _markers(out)
    for pid, data in final.items():
        if pid in first_seen and first_seen[pid] != data:
            redone.add(pid)
    reports = store.read_reports().to_pylist()
    done_runs: dict[str, set[str]] = {}
    for r in reports:
        if r["status"] == "done":
            done_runs.setdefault(r["painting_id"], set()).add(r["run_id"])
    redone |= {pid for pid, runs in done_runs.items() if len(runs) > 1}
    verified = {pid: store.verify(pid) for pid in final}
    lost = sorted(good - set(final))
    visible_partial = sorted(pid for pid, problems in verified.items() if problems)
    once = sum(1 for pid in good if pid in final and not verified[pid] and pid not in redone)
    failed = {r["painting_id"]: r["error_kind"] for r in reports if r["status"] in ("failed", "invalid")}
    print(f"rounds {args.rounds} ({kills} killed mid-run), {time.time() - t0:.0f} s in all")
    print(f"committed once each: {once}/{len(good)}")
    print(f"lost: {len(lost)}{' ' + str(lost) if lost else ''}")
    print(f"duplicated: {len(redone)}{' ' + str(sorted(redone)) if redone else ''}")
    print(f"partial visible: {len(visible_partial)}{' ' + str(visible_partial) if visible_partial else ''}"
          f" (partial folders ignored: {len(store.partial_paintings())})")
    print(f"stray processes: {strays}")
    print(f"bad rows reported, not lost: {dict(sorted(failed.items()))}")
    ok = not lost and not redone and not visible_partial and strays == 0 and once == len(good)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
