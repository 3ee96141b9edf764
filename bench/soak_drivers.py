"""Soak: two or three `artmator run` drivers started at random offsets on ONE manifest and output; then prove
each painting was tuned exactly once across all of their reports, and committed whole.

    python -m bench.soak_drivers                         # 2 and 3 drivers, 3 rounds each, 12 paintings
    python -m bench.soak_drivers --drivers 3 --rounds 1 --paintings 6

Each driver is its own process with its own local Ray (own --temp-dir under /tmp) and its own process group, as
two scheduler jobs or two operators would start them. A round starts the drivers `--max-offset` seconds apart
at most (random offsets, the first at 0), waits for all of them, kills any process of theirs still alive (by
id), and checks:

    tuned once            every painting is reported `done` by exactly one driver; the others report it
                          `claimed` (a live claim of another run: the message names it) or `skipped`
                          (committed by another run after theirs planned it)
    committed             every painting has a marker, its files verify (size + sha256), and the marker records
                          the claim of the run that reported it done
    claims released       no claim is left unreleased; no partial folder
    exit codes, strays    every driver exits 0; no process of a driver survives it

Prints one line per round and a summary, writes bench/results/soak_drivers_cpu.{json,md}; exit status 0 only
when every round passed every check.
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
from bench.soak_kill import CHILD, ROOT, RUN_ARGS, _catalogue


def run_args(steps: tuple[int, int]) -> list[str]:
    """soak_kill's tiny run options with `steps` (stage 1, stage 2): longer tuning overlaps the drivers more."""
    args = list(RUN_ARGS)
    args[args.index("--stage1-steps") + 1], args[args.index("--stage2-steps") + 1] = map(str, steps)
    return args


def _start(manifest: str, out: Path, log: Path, args: list[str]) -> tuple[subprocess.Popen, str]:
    ray_tmp = tempfile.mkdtemp(prefix="sd", dir="/tmp")             # short: Ray's socket paths are length-limited
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "ab") as fh:
        child = subprocess.Popen([sys.executable, "-c", CHILD, ray_tmp, "run", manifest, "--out", str(out),
                                  *args], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    return child, ray_tmp


def one_round(manifest: str, out: Path, drivers: int, offsets: list[float], logs: Path,
              timeout_s: float, args: list[str]) -> dict:
    """Start `drivers` drivers at `offsets` (seconds), wait for all, check the output; one result row."""
    from artmator.pipeline.claims import list_holders
    from artmator.pipeline.layout import claims_root
    from artmator.pipeline.storage import OutputStore

    start = time.time()
    running: list[tuple[subprocess.Popen, str]] = []
    seen: dict[int, set[int]] = {}
    for i, offset in enumerate(offsets):
        while time.time() < start + offset:
            time.sleep(0.05)
        running.append(_start(manifest, out, logs / f"driver{i}.log", args))
    deadline = start + timeout_s
    while time.time() < deadline and any(c.poll() is None for c, _ in running):
        for child, tmp in running:
            seen.setdefault(child.pid, set()).update(family(child.pid, tmp))
        time.sleep(0.2)
    codes, strays = [], 0
    for child, tmp in running:
        if child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.wait(timeout=60)
        codes.append(child.returncode)
        end = time.time() + 15
        left = (seen.get(child.pid, set()) | family(child.pid, tmp)) & set(processes())
        while left and time.time() < end:
            kill_all(left)                                          # Ray daemons of this driver, by id
            time.sleep(0.5)
            left = (left | family(child.pid, tmp)) & set(processes())
        strays += len(left)
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.time() - start

    store = OutputStore(str(out))
    reports = [r for r in store.read_reports().to_pylist()]
    runs = sorted({r["run_id"] for r in reports})
    good = {r["painting_id"] for r in reports if r["status"] != "invalid"}
    done_by: dict[str, list[str]] = {}
    others: dict[str, set[str]] = {}
    for r in reports:
        if r["status"] == "done":
            done_by.setdefault(r["painting_id"], []).append(r["run_id"])
        else:
            others.setdefault(r["painting_id"], set()).add(r["status"])
    commits = store.commits()
    tuned_once = sum(1 for pid in good if len(done_by.get(pid, [])) == 1)
    wrong_holder = [pid for pid, c in commits.items()
                    if (c.doc.get("claim") or {}).get("run_id") != (done_by.get(pid) or ["?"])[0]]
    problems = {pid: store.verify(pid) for pid in commits}
    per_driver = {run: {s: sum(1 for r in reports if r["run_id"] == run and r["status"] == s)
                        for s in ("done", "claimed", "skipped", "failed")} for run in runs}
    row = {"drivers": drivers, "offsets_s": " ".join(f"{o:.1f}" for o in offsets), "seconds": round(seconds, 1),
           "paintings": len(good), "tuned_once": tuned_once,
           "tuned_twice": sum(1 for v in done_by.values() if len(v) > 1),
           "committed": sum(1 for pid in good if pid in commits and not problems[pid]),
           "claimed_reports": sum(d["claimed"] for d in per_driver.values()),
           "skipped_reports": sum(d["skipped"] for d in per_driver.values()),
           "failed_reports": sum(d["failed"] for d in per_driver.values()),
           "marker_claims_match": len(wrong_holder) == 0,
           "unreleased_claims": len(list_holders(store.fs, claims_root(store.root))),
           "partial": len(store.partial_paintings()), "exit_codes": " ".join(map(str, codes)), "strays": strays,
           "finished_reports": len(runs),
           "per_driver": " / ".join(f"{d['done']} done, {d['claimed']} claimed, {d['skipped']} skipped"
                                    for d in per_driver.values())}
    others_ok = all(statuses <= {"claimed", "skipped"} for statuses in others.values())
    row["ok"] = (row["tuned_once"] == row["paintings"] == row["committed"] and row["tuned_twice"] == 0
                 and row["marker_claims_match"] and row["unreleased_claims"] == 0 and row["partial"] == 0
                 and all(c == 0 for c in codes) and strays == 0 and len(runs) == drivers and others_ok)
    return row


COLUMNS = ["drivers", "offsets_s", "seconds", "paintings", "tuned_once", "tuned_twice", "committed",
           "claimed_reports", "skipped_reports", "failed_reports", "unreleased_claims", "partial", "exit_codes",
           "strays", "per_driver", "ok"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", type=int, nargs="+", default=[2, 3], help="drivers per round (each count)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per driver count")
    parser.add_argument("--paintings", type=int, default=12)
    parser.add_argument("--max-offset", type=float, default=12.0, help="latest start of a driver, seconds")
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds a round may take")
    parser.add_argument("--steps", type=int, nargs=2, default=(20, 10), metavar=("STAGE1", "STAGE2"),
                        help="tuning steps: enough that the drivers' tuning overlaps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep catalogue, outputs and logs here")
    parser.add_argument("--out-dir", default=None, help="write the results here (default bench/results)")
    parser.add_argument("--name", default="soak_drivers_cpu")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="artmator-drivers-"))
    manifest = _catalogue(work / "catalog", args.paintings, bad=False)
    rows = []
    print(f"soak: {args.rounds} rounds each of {args.drivers} drivers on {args.paintings} paintings, starts up to "
          f"{args.max_offset:g} s apart, work dir {work}", flush=True)
    for drivers in args.drivers:
        for rnd in range(1, args.rounds + 1):
            offsets = [0.0] + sorted(rng.uniform(0, args.max_offset) for _ in range(drivers - 1))
            folder = work / f"d{drivers}-r{rnd}"
            folder.mkdir(parents=True, exist_ok=True)
            row = one_round(manifest, folder / "out", drivers, offsets, folder, args.timeout,
                            run_args(tuple(args.steps)))
            rows.append(row)
            print(f"{drivers} drivers, round {rnd}: {'OK' if row['ok'] else 'FAILED'} in {row['seconds']:.0f} s "
                  f"(starts {row['offsets_s']} s); tuned once {row['tuned_once']}/{row['paintings']}, twice "
                  f"{row['tuned_twice']}; committed {row['committed']}; {row['per_driver']}; unreleased claims "
                  f"{row['unreleased_claims']}; partial {row['partial']}; exit {row['exit_codes']}; stray "
                  f"processes {row['strays']}", flush=True)
    ok = all(r["ok"] for r in rows)
    total = sum(r["paintings"] for r in rows)
    print(f"tuned exactly once: {sum(r['tuned_once'] for r in rows)}/{total}; tuned twice: "
          f"{sum(r['tuned_twice'] for r in rows)}; committed: {sum(r['committed'] for r in rows)}/{total}; "
          f"stray processes: {sum(r['strays'] for r in rows)}")
    print("OK" if ok else "FAILED")
    import torch

    from bench.common import environment, write_results

    write_results(args.name, rows, {**environment(torch.device("cpu")), "cpus": os.cpu_count()}, COLUMNS,
                  notes=f"{args.paintings} paintings per round (tiny backbone, {args.steps[0]} + "
                        f"{args.steps[1]} steps, 32 px); each driver "
                        "its own process, local Ray and process group; starts at random offsets.",
                  out_dir=Path(args.out_dir) if args.out_dir else None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
