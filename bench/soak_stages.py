"""Soak: SIGKILL every stage of a catalog's life at random moments — `prepare`, `run` (tune), `run` after a
metadata edit (refresh), `run` with more frames (re-render) and `gallery` — resume each, and prove that nothing
was lost, done twice, or visible half-written, and that no process survived.

    python -m bench.soak_stages                      # 8 paintings, 2 kills per stage (about 10 minutes, 2 cores)
    python -m bench.soak_stages --paintings 4 --kills 1

Each stage runs its command in its own process group (the Ray-using ones with their own local Ray and temp dir);
each attempt but the last is SIGKILLed — the first (and every other one) a random 0-2 s after the stage's first
visible progress (a review image, a new commit, a published media folder), the others at a random moment between
the start and just past the time the first attempt took to show progress — together
with every process of its tree (by id). The last attempt runs to the end. While attempts run and after each kill
the readers' view is checked; after each stage its outcome:

    lost                  prepare: catalogue rows missing from the manifest; run stages: paintings without a
                          commit holding the stage's fingerprints; gallery: committed paintings not on the site
    duplicated            a painting tuned again after its first commit (its delta changed), or committed again
                          for a stage after a commit with the stage's fingerprints was seen, or reported with the
                          stage's status by two runs
    partial visible       a current commit whose listed files are missing or altered; a review page whose
                          images are missing; a gallery page, manifest or index card pointing at missing media or
                          at media of two versions; manifest, report and review page naming different prepare runs
                          after a stage finished
    stray processes       processes of killed attempts still alive after the kill
    claims left           claims still held by a live process after a stage finished (a killed holder's claims are
                          taken over at once on this host, where its processes are gone)

Prints one line per attempt and a summary; writes bench/results/soak_stages_cpu.{json,md}; exit status 0 only
when every count is 0.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.proctree import family, kill_all, processes

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys
if sys.argv[2] != "gallery":
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=sys.argv[1])
from artmator.pipeline.cli import main
main(sys.argv[2:])
"""
RUN_ARGS = ["--stage1-steps", "3", "--stage2-steps", "2", "--frames", "3", "--render-resolution", "32",
            "--resolution", "32", "--expressions", "happiness", "--no-head-prior", "--no-gallery", "--actors", "1",
            "--no-face-metrics", "--progress-every", "1"]


# ------------------------------------------------------------------------------------------------ the catalog

def catalogue(folder: Path, n: int) -> str:
    """A CSV of `n` whole paintings with a face (the painted astronaut placed differently on each canvas)."""
    from tests.pipeline.faces_fixtures import jpeg_bytes, whole_painting

    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = ["painting_id,image_uri,title"]
    for i in range(n):
        at = (200 + 40 * (i % 5), 200 + 30 * (i // 5 % 4))
        (folder / "img" / f"c{i:02d}.jpg").write_bytes(jpeg_bytes(whole_painting(at=at, mirror=bool(i % 2))))
        lines.append(f"c{i:02d},img/c{i:02d}.jpg,Portrait {i}")
    (folder / "catalog.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "catalog.csv")


def retitle(manifest: str, to: str) -> str:
    """The prepared manifest with every title changed (a metadata edit: a refresh, no tuning)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(manifest)
    titles = pa.array([f"{t} (corrected)" for t in table.column("title").to_pylist()], pa.string())
    pq.write_table(table.set_column(table.schema.get_field_index("title"), "title", titles), to)
    return to


# ------------------------------------------------------------------------------------------------ readers' view

def site_problems(site: Path) -> list[str]:
    """What a reader of a gallery site would see broken: an index card, page or IIIF manifest pointing at a
    missing file, or a page / manifest whose media come from more than one m-<key>/ folder."""
    problems = []
    index = (site / "index.html").read_text() if (site / "index.html").exists() else ""
    problems += [f"index: {src}" for src in re.findall(r'src="(p/[^"]+)"', index) if not (site / src).is_file()]
    for page in site.glob("p/*/index.html"):
        text = page.read_text()
        refs = [r for r in re.findall(r'(?:src|href)="([^"#]+)"', text) if not r.startswith("../../")
                and r != "manifest.json"]
        data = re.search(r'id="viewer-data">(.*?)</script>', text)
        refs += [e["src"] for e in json.loads(data.group(1))["expressions"]] if data else []
        if len({r.split("/", 1)[0] for r in refs}) != 1:
            problems.append(f"{page.parent.name}/index.html shows media of several versions")
        problems += [f"{page.parent.name}/index.html: {r}" for r in refs if not (page.parent / r).is_file()]
    for manifest in site.glob("p/*/manifest.json"):
        urls = [u.split("/p/", 1)[1] for u in re.findall(r'"id": "([^"]+\.(?:webm|mp4|webp|png))"',
                                                          manifest.read_text())]
        if len({u.split("/")[1] for u in urls}) > 1:
            problems.append(f"{manifest.parent.name}/manifest.json shows media of several versions")
        problems += [f"{manifest.parent.name}/manifest.json: {u}" for u in urls if not (site / "p" / u).is_file()]
    return problems


def review_problems(page: Path) -> list[str]:
    """Images of a prepare review page that do not exist."""
    if not page.exists():
        return []
    return [src for src in re.findall(r'<img[^>]+src="([^"]+)"', page.read_text())
            if not (page.parent / src).is_file()]


def commit_problems(out: Path) -> list[str]:
    """Current commits whose listed files are missing or altered (what a reader would get)."""
    from artmator.pipeline.layout import IntegrityError, read_verified
    from artmator.pipeline.storage import OutputStore

    store = OutputStore(str(out))
    problems = []
    for pid, commit in store.commits().items():
        for rel in commit.files:
            try:
                read_verified(store.fs, commit, rel)
            except (IntegrityError, OSError) as exc:
                problems.append(f"{pid}/{rel}: {exc}")
    return problems


def held_claims(folder: Path) -> int:
    """Claims still held by a live process (a killed worker's claims are taken over by the next one that needs
    the painting; a painting nobody needs again keeps its dead claim, which `status` lists as expired)."""
    from artmator.pipeline.claims import list_holders, process_alive
    from artmator.pipeline.storage import OutputStore

    holders = list_holders(OutputStore(str(folder)).fs, str(folder))
    return sum(1 for h in holders if h.live() and process_alive(h.pid, h.pid_started))


def markers(out: Path) -> dict[str, dict]:
    """painting_id -> {version, fingerprints, delta path} of the current commits."""
    from artmator.pipeline.storage import OutputStore

    store = OutputStore(str(out))
    return {pid: {"pid": pid, "version": c.version, "fp": c.fingerprints, "delta": c.files.get("delta.safetensors")}
            for pid, c in store.commits().items()}


# ------------------------------------------------------------------------------------------------- attempts

def attempt(args: list[str], log: Path, kill: Callable[[float], bool] | None, watch: Callable[[], None],
            timeout_s: float = 1800) -> tuple[str, int, float]:
    """Run one command; `kill(elapsed)` says when to SIGKILL it (None: let it finish). `watch()` runs every poll
    (readers' checks, marker tracking). Returns (how it ended, stray processes, seconds)."""
    ray_tmp = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    start = time.time()
    with open(log, "ab") as fh:
        child = subprocess.Popen([sys.executable, "-c", CHILD, ray_tmp, *args], cwd=ROOT, env=env, stdout=fh,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        seen: set[int] = set()
        killed = False
        watched = 0.0
        while child.poll() is None and time.time() - start < timeout_s:
            seen |= family(child.pid, ray_tmp)
            if time.time() - watched >= 1.0:          # readers' checks read every commit: once a second
                watch()
                watched = time.time()
            if kill is not None and kill(time.time() - start):
                seen |= family(child.pid, ray_tmp)
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                kill_all(seen)
                killed = True
                break
            time.sleep(0.15)
        if child.poll() is None and not killed:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        how = "SIGKILL" if killed else f"exit {child.returncode}"
        end = time.time() + 15
        left = (seen | family(child.pid, ray_tmp)) & set(processes())
        while left and time.time() < end:
            kill_all(left)
            time.sleep(0.5)
            left = (left | family(child.pid, ray_tmp)) & set(processes())
    shutil.rmtree(ray_tmp, ignore_errors=True)
    watch()
    return how, len(left), time.time() - start


# ---------------------------------------------------------------------------------------------------- stages

class Soak:
    def __init__(self, work: Path, n: int, kills: int, rng: random.Random, max_kill: float, after: float):
        self.work, self.n, self.kills, self.rng = work, n, kills, rng
        self.max_kill, self.after = max_kill, after
        self.catalog = catalogue(work / "catalog", n)
        self.manifest = str(work / "prep" / "faces.parquet")
        self.manifest2 = str(work / "prep" / "faces-retitled.parquet")
        self.out, self.site = work / "out", work / "out" / "gallery"
        self.log = work / "commands.log"
        self.rows: list[dict] = []
        self.deltas: dict[str, object] = {}       # painting -> its delta entry since its first commit
        self.progress_at: dict[str, float] = {}   # stage -> seconds to its first progress, in its first attempt

    def _kill_rule(self, name: str, k: int, progress: Callable[[], bool]) -> Callable[[float], bool]:
        """Attempt k: a random 0-`after` s after the stage's first progress (even k: lands while it works), or at a
        random moment between the start and a little after the stage's first progress in an earlier attempt
        (odd k: often while Ray starts; `max_kill` when no progress was seen yet)."""
        if k % 2 == 1:
            at = self.rng.uniform(1.0, min(self.max_kill, self.progress_at.get(name, self.max_kill) + self.after + 1))
            return lambda elapsed: elapsed >= at
        delay = self.rng.uniform(0.0, self.after)
        state: dict = {"asked": -1.0}

        def rule(elapsed: float) -> bool:
            if "t" not in state and elapsed - state["asked"] >= 0.3:
                state["asked"] = elapsed
                if progress():
                    state["t"] = elapsed
                    self.progress_at.setdefault(name, elapsed)
            return ("t" in state and elapsed >= state["t"] + delay) or elapsed >= self.max_kill * 3
        return rule

    def stage(self, name: str, args: list[str], progress: Callable[[], bool], visible: Callable[[], list[str]],
              target: Callable[[dict], bool] | None = None) -> dict:
        """Kill the stage's command `kills` times, then let it finish; count what the readers saw."""
        row = {"stage": name, "attempts": 0, "killed": 0, "strays": 0, "partial_visible": 0, "seconds": 0.0}
        firsts: dict[str, str] = {}               # painting -> version of its first commit with the target prints
        redone: set[str] = set()
        bad: list[str] = []

        def watch() -> None:
            problems = visible()
            if problems:
                bad.extend(problems)
            self._track_deltas(redone)
            if target is not None:
                for pid, m in markers(self.out).items():
                    if target(m):
                        if pid in firsts and firsts[pid] != m["version"]:
                            redone.add(pid)
                        firsts.setdefault(pid, m["version"])

        for k in range(self.kills + 1):
            last = k == self.kills
            how, strays, secs = attempt(args, self.log, None if last else self._kill_rule(name, k, progress), watch)
            row["attempts"] += 1
            row["killed"] += how == "SIGKILL"
            row["strays"] += strays
            row["seconds"] += secs
            print(f"  {name:8s} attempt {k + 1}: {how:8s} after {secs:5.1f} s; stray processes {strays}; "
                  f"partial visible so far {len(set(bad))}", flush=True)
        row["ended"] = how
        row["partial_visible"] = len(set(bad))
        row["partial_examples"] = sorted(set(bad))[:3]
        row["duplicated"] = len(redone)
        return row

    def _track_deltas(self, redone: set[str]) -> None:
        for pid, m in markers(self.out).items():
            if m["delta"] is None:
                continue
            if pid in self.deltas and self.deltas[pid] != m["delta"]:
                redone.add(pid)                    # tuned again after its first commit
            self.deltas.setdefault(pid, m["delta"])

    def run(self) -> list[dict]:
        import pyarrow.parquet as pq

        from artmator.pipeline.storage import OutputStore

        review = Path(self.manifest).with_name("faces.review.html")
        assets = Path(self.manifest).with_name("faces.review")

        # 1. prepare
        row = self.stage("prepare", ["prepare", self.catalog, "-o", self.manifest, "--actors", "1"],
                         progress=lambda: assets.exists() and any(assets.rglob("*.jpg")),
                         visible=lambda: review_problems(review))
        ids = pq.read_table(self.manifest).column("painting_id").to_pylist()
        runs = {pq.read_schema(self.manifest).metadata[b"artmator.prepare_run"],
                pq.read_schema(self.manifest.replace(".parquet", ".report.parquet")).metadata[
                    b"artmator.prepare_run"]}
        page_run = re.search(r'artmator-prepare-run" content="([^"]+)"', review.read_text()).group(1)
        folders = sorted(p.name for p in assets.iterdir() if p.name != "_claims")
        row["lost"] = self.n - len(ids)
        row["partial_visible"] += (len(runs) != 1) + (page_run.encode() not in runs) + (folders != [page_run])
        row["claims_left"] = held_claims(assets / "_claims")
        self.rows.append(row)
        store = OutputStore(str(self.out))

        def run_stage(name: str, manifest: str, extra: list[str], status: str, key: str | None) -> None:
            before = markers(self.out)

            def target(m: dict) -> bool:           # a commit this stage made
                old = before.get(m["pid"])
                if key is None:
                    return old is None
                return old is not None and getattr(m["fp"], key) != getattr(old["fp"], key)

            r = self.stage(name, ["run", manifest, "--out", str(self.out), *RUN_ARGS, *extra],
                           progress=lambda: any(target(m) for m in markers(self.out).values()),
                           visible=lambda: commit_problems(self.out), target=target)
            now = markers(self.out)
            r["lost"] = sum(1 for pid in ids if pid not in now or not target(now[pid]))
            by_pid: dict[str, set[str]] = {}
            for rep in store.read_reports().to_pylist():
                if rep["status"] == status:
                    by_pid.setdefault(rep["painting_id"], set()).add(rep["run_id"])
            r["duplicated"] += sum(1 for runs_ in by_pid.values() if len(runs_) > 1)
            r["claims_left"] = held_claims(self.out / "claims")
            r["partial_visible"] += len(commit_problems(self.out))
            self.rows.append(r)

        # 2. tune, 3. refresh (titles corrected), 4. re-render (one more frame)
        run_stage("tune", self.manifest, [], "done", None)
        retitle(self.manifest, self.manifest2)
        run_stage("refresh", self.manifest2, [], "refreshed", "metadata")
        run_stage("render", self.manifest2, ["--frames", "4"], "rendered", "render")

        # 5. gallery
        row = self.stage("gallery", ["gallery", str(self.out), "--wait", "60"],
                         progress=lambda: any(self.site.glob("p/*/m-*")), visible=lambda: site_problems(self.site))
        shown = {p.parent.name for p in self.site.glob("p/*/index.html")}
        text = (self.site / "index.html").read_text()
        row["lost"] = sum(1 for pid in ids if pid not in shown or f'data-painting="{pid}"' not in text
                          or "(corrected)" not in (self.site / "p" / pid / "index.html").read_text())
        row["duplicated"] = 0
        row["partial_visible"] += len(site_problems(self.site))
        row["claims_left"] = held_claims(self.site / "_claims")
        self.rows.append(row)
        return self.rows


COLUMNS = ["stage", "attempts", "killed", "seconds", "lost", "duplicated", "partial_visible", "strays",
           "claims_left", "ended"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paintings", type=int, default=8)
    parser.add_argument("--kills", type=int, default=2, help="SIGKILLed attempts per stage before the last one")
    parser.add_argument("--max-kill", type=float, default=25.0, help="latest random kill, seconds after a start")
    parser.add_argument("--after-progress", type=float, default=2.0,
                        help="kills after the first progress land up to this many seconds later")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out-dir", default=None, help="write the results here (default bench/results)")
    parser.add_argument("--name", default="soak_stages_cpu")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="artmator-stages-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.paintings} paintings, {args.kills} kills per stage, work dir {work}", flush=True)
    t0 = time.time()
    rows = Soak(work, args.paintings, args.kills, random.Random(args.seed), args.max_kill,
                args.after_progress).run()
    for r in rows:
        print(f"{r['stage']:8s}: {r['killed']} killed, then {r['ended']}; lost {r['lost']}, duplicated "
              f"{r['duplicated']}, partial visible {r['partial_visible']}"
              f"{' ' + str(r['partial_examples']) if r['partial_examples'] else ''}, stray processes {r['strays']}, "
              f"claims left {r['claims_left']}")
    totals = {k: sum(r[k] for r in rows) for k in ("lost", "duplicated", "partial_visible", "strays",
                                                   "claims_left")}
    ok = not any(totals.values()) and all(r["ended"] == "exit 0" for r in rows)
    print(f"{sum(r['killed'] for r in rows)} kills in {time.time() - t0:.0f} s: lost {totals['lost']}, duplicated "
          f"{totals['duplicated']}, partial visible {totals['partial_visible']}, stray processes {totals['strays']}, "
          f"claims left {totals['claims_left']}")
    print("OK" if ok else "FAILED")
    import torch

    from bench.common import environment, write_results

    write_results(args.name, rows, {**environment(torch.device("cpu")), "cpus": os.cpu_count()}, COLUMNS,
                  notes=f"{args.paintings} whole paintings (prepare finds the faces), tiny backbone 3 + 2 steps, "
                        "32 px; "
                        f"{args.kills} SIGKILLs per stage, seed {args.seed}.",
                  out_dir=Path(args.out_dir) if args.out_dir else None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
