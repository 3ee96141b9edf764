"""Incremental catalogs on a real local Ray (and moto S3): each change gets the cheapest correct action.

metadata edit -> refreshed (no model: only the refresh phase runs); render setting -> rendered from the stored
delta (no tuning); image bytes / pose / crop / tuning setting -> tuned again; nothing -> skipped. Plus `plan`
(and its --json counts against the run that follows), `render --only`, `run --force --only`, pass-through
columns in result.json and the gallery, a crash at every write of a re-commit, and readers during re-commits.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artmator.pipeline import job, layout, storage
from artmator.pipeline.cli import main
from artmator.pipeline.job import RunConfig, make_plan, run
from artmator.pipeline.recommit import refresh_and_commit
from artmator.pipeline.storage import OutputStore
from tests.pipeline.ray_fixtures import png_bytes

IDS = ("a", "b", "c")
QUICK = ["--stage1-steps", "3", "--stage2-steps", "2", "--frames", "3", "--render-resolution", "32",
         "--resolution", "32", "--expressions", "happiness", "--no-head-prior", "--no-find-faces",
         "--no-face-metrics"]


def write_catalog(folder, rows: list[dict], storage_options: dict | None = None, images=None) -> str:
    """A manifest with a pass-through column (accession_number) and optional crops; images `<id>.png` in
    `images` (default: next to the manifest), or a row's own image_uri."""
    prefix = f"{images}/" if images is not None else ""
    table = pa.table({
        "painting_id": [r["painting_id"] for r in rows],
        "image_uri": [r.get("image_uri", f"{prefix}{r['painting_id']}.png") for r in rows],
        "yaw_deg": pa.array([r.get("yaw_deg", 0.0) for r in rows], pa.float64()),
        "pitch_deg": pa.array([r.get("pitch_deg", 0.0) for r in rows], pa.float64()),
        "crop": pa.array([r.get("crop") for r in rows], pa.list_(pa.int64())),
        "title": [r.get("title", f"Portrait {r['painting_id']}") for r in rows],
        "accession_number": [r.get("accession_number", f"ACC-{r['painting_id']}") for r in rows],
    })
    uri = f"{folder}/manifest.parquet"
    with fsspec.open(uri, "wb", **dict(storage_options or {})) as f:
        pq.write_table(table, f)
    return uri


def write_image(folder, name: str, seed: int, storage_options: dict | None = None) -> None:
    fs, root = fsspec.core.url_to_fs(str(folder), **dict(storage_options or {}))
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(f"{root.rstrip('/')}/{name}", png_bytes(seed))


def cli_settings(args: list[str] = QUICK):
    """The JobSettings `artmator run` builds from these options (so CLI calls and `run()` calls agree)."""
    from artmator.pipeline.incremental_command import plan
    from artmator.pipeline.options import SETTINGS_LEAVES, given_values, resolve_settings

    ctx = plan.make_context("plan", ["manifest.parquet", *args])
    return resolve_settings(given_values(ctx, dict(ctx.params), SETTINGS_LEAVES))


def base_rows() -> list[dict]:
    return [{"painting_id": pid} for pid in IDS]


@pytest.fixture
def phases(monkeypatch) -> list[str]:
    """The Ray Data phases each run executes (a spy around `job.execute_phase`, in this driver process)."""
    seen: list[str] = []
    real = job.execute_phase

    def spy(action, items, *args, **kwargs):
        if items:
            seen.append(action)
        return real(action, items, *args, **kwargs)

    monkeypatch.setattr(job, "execute_phase", spy)
    return seen


@pytest.fixture(scope="module")
def committed(ray_local, tmp_path_factory) -> Path:
    """A catalog of three paintings, tuned and committed once for the module (tests work on copies)."""
    root = tmp_path_factory.mktemp("committed")
    for i, pid in enumerate(IDS):
        write_image(root / "catalog", f"{pid}.png", 10 + i)
    manifest = write_catalog(root / "catalog", base_rows(), images=root / "catalog")
    summary = run(RunConfig(manifest_uri=manifest, out_uri=str(root / "out"), settings=cli_settings(),
                            run_id="base", progress_every_s=0))
    assert summary.ok and summary.done == 3, summary
    return root


def copy_of(committed: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the committed output and its manifest; the images stay where they were committed from (a
    manifest naming other image files is a change: their stamps differ)."""
    shutil.copytree(committed / "out", tmp_path / "out")
    shutil.copy2(committed / "catalog" / "manifest.parquet", tmp_path / "manifest.parquet")
    return tmp_path, tmp_path / "out"


def images_of(committed: Path) -> Path:
    return committed / "catalog"


def statuses(summary) -> dict[str, str]:
    return {r["painting_id"]: r["status"] for r in pq.read_table(summary.report_path).to_pylist()}


def marker(out: Path, pid: str) -> dict:
    return OutputStore(str(out)).read_marker(pid)


def quality(store: OutputStore, pid: str) -> float:
    return json.loads(store.read_file(pid, "result.json"))["quality"]["lpips_ref"]


@pytest.mark.timeout(600)
def test_each_change_gets_the_cheapest_correct_action(committed, tmp_path, phases):
    catalog, out = copy_of(committed, tmp_path)
    settings = cli_settings()
    config = RunConfig(manifest_uri=str(catalog / "manifest.parquet"), out_uri=str(out), settings=settings,
                       progress_every_s=0)
    store = OutputStore(str(out))
    first = {pid: marker(out, pid) for pid in IDS}
    lpips = {pid: quality(store, pid) for pid in IDS}

    # -- nothing changed: everything skipped, no phase runs at all
    assert make_plan(config).counts() == {"tune": 0, "render": 0, "refresh": 0, "skip": 3, "invalid": 0,
                                          "failed_before": 0}
    summary = run(replace(config, run_id="same"))
    assert statuses(summary) == {pid: "skipped" for pid in IDS} and phases == []
    assert {pid: marker(out, pid) for pid in IDS} == first

    # -- metadata only (a title, a pass-through column): refreshed; only the model-free refresh phase runs
    rows = base_rows()
    rows[0]["title"] = "Portrait of a Lady (corrected)"
    rows[1]["accession_number"] = "ACC-b-2026"
    write_catalog(catalog, rows, images=images_of(committed))
    plan = make_plan(config)
    assert plan.counts()["refresh"] == 2 and plan.counts()["skip"] == 1
    assert {r.task.painting_id: r.reason for r in plan.of("refresh")} == {"a": "metadata changed",
                                                                         "b": "metadata changed"}
    summary = run(replace(config, run_id="meta"))
    assert statuses(summary) == {"a": "refreshed", "b": "refreshed", "c": "skipped"}
    assert phases == ["refresh"]                                    # no tuning or render actor: no model loaded
    for pid in ("a", "b"):
        now = marker(out, pid)
        assert now["action"] == "refreshed" and now["version"] != first[pid]["version"]
        for rel in ("delta.safetensors", "input.png", "reference.png", "renders/turntable/000.png"):
            assert now["files"][rel] == first[pid]["files"][rel]      # kept where it lies, not rewritten
        assert now["files"]["result.json"]["path"].startswith(now["version"] + "/")
        assert store.verify(pid) == []
    result = json.loads(store.read_file("a", "result.json"))
    assert result["metadata"]["title"] == "Portrait of a Lady (corrected)"
    assert json.loads(store.read_file("b", "result.json"))["extra"] == {"accession_number": "ACC-b-2026"}
    assert {pid: quality(store, pid) for pid in IDS} == lpips                # tuning's numbers carried over
    phases.clear()

    # -- a render setting (turntable frames): rendered from the stored delta, no tuning
    config = replace(config, settings=replace(settings, render=replace(settings.render, turntable_frames=4)))
    plan = make_plan(config)
    assert plan.counts()["render"] == 3
    before = {pid: marker(out, pid) for pid in IDS}
    summary = run(replace(config, run_id="frames"))
    assert statuses(summary) == {pid: "rendered" for pid in IDS} and phases == ["render"]
    for pid in IDS:
        now = marker(out, pid)
        assert now["files"]["delta.safetensors"] == first[pid]["files"]["delta.safetensors"]
        assert sum(rel.startswith("renders/turntable/") for rel in now["files"]) == 4
        assert now["fingerprints"]["tune"] == before[pid]["fingerprints"]["tune"]
        assert now["seconds"]["tune"] == first[pid]["seconds"]["tune"] and now["seconds"]["render"] > 0
        assert json.loads(store.read_file(pid, "result.json"))["turntable"]["frames"] == 4
        assert quality(store, pid) == lpips[pid] and store.verify(pid) == []
    phases.clear()

    # -- tuning inputs: new image bytes (a), a new pose (b), a crop (c): tuned again; a tuning setting: all of them
    write_image(catalog, "a.png", 99)                                  # this copy's own, different image
    rows[0]["image_uri"] = str(catalog / "a.png")
    rows[1]["yaw_deg"] = 10.0
    rows[2]["crop"] = [4, 4, 56, 56]
    write_catalog(catalog, rows, images=images_of(committed))
    plan = make_plan(config)
    assert {r.task.painting_id: r.reason for r in plan.of("tune")} == {
        "a": "image bytes changed", "b": "tuning inputs changed", "c": "tuning inputs changed"}
    assert plan.rehashed == ["a"]
    counts = plan.counts()
    summary = run(replace(config, run_id="retune"))
    assert statuses(summary) == {pid: "done" for pid in IDS} and phases == ["tune"]
    assert counts["tune"] == summary.done                           # the plan said what the run did
    assert all(marker(out, pid)["files"]["delta.safetensors"] != first[pid]["files"]["delta.safetensors"]
               for pid in IDS)
    steps = replace(config, settings=replace(config.settings, tune=replace(
        settings.tune, stage2=replace(settings.tune.stage2, steps=3))))
    assert make_plan(steps).counts()["tune"] == 3

    # -- the same bytes elsewhere (a copy, a re-upload: the stamp moves): re-hashed once, recorded by a refresh,
    #    then skipped
    shutil.copyfile(images_of(committed) / "c.png", catalog / "c.png")
    rows[2]["image_uri"] = str(catalog / "c.png")
    write_catalog(catalog, rows, images=images_of(committed))
    plan = make_plan(config)
    assert plan.rehashed == ["c"] and [r.reason for r in plan.of("refresh")] == ["image stamp moved, bytes unchanged"]
    run(replace(config, run_id="touched"))
    again = make_plan(config)
    assert again.rehashed == [] and again.counts()["skip"] == 3


@pytest.mark.timeout(600)
def test_plan_json_render_only_force_and_pass_through_columns(committed, tmp_path):
    catalog, out = copy_of(committed, tmp_path)
    manifest = str(catalog / "manifest.parquet")
    runner = CliRunner()

    result = runner.invoke(main, ["plan", manifest, "--out", str(out), *QUICK, "--frames", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"tune": 0, "render": 3, "refresh": 0, "skip": 0, "invalid": 0,
                                         "failed_before": 0}
    result = runner.invoke(main, ["plan", manifest, "--out", str(out), *QUICK, "--frames", "5", "--actors", "2"])
    assert result.exit_code == 0, result.output
    assert "re-render from the stored delta: 3 (render inputs changed 3)" in result.output
    assert "estimated time:" in result.output and "no history yet for render" in result.output
    # the weights' licence is metadata (the model cards): a refresh; the mesh grid is a render setting
    for extra, action in ((["--weights-license", "CC-BY-NC-SA-4.0"], "refresh"), (["--mesh-resolution", "16"], "render")):
        result = runner.invoke(main, ["plan", manifest, "--out", str(out), *QUICK, *extra, "--json"])
        assert result.exit_code == 0, result.output
        counts = json.loads(result.output)
        assert counts[action] == 3 and counts["tune"] == 0, (extra, counts)
    delta = marker(out, "c")["files"]["delta.safetensors"]
    result = runner.invoke(main, ["run", manifest, "--out", str(out), *QUICK, "--only", "c", "--weights-license",
                                  "CC-BY-NC-SA-4.0", "--no-gallery", "--progress-every", "0"])
    assert result.exit_code == 0 and "0 committed, 0 re-rendered, 1 refreshed" in result.output, result.output
    card = OutputStore(str(out)).read_file("c", "model_card.md").decode()
    assert "Licence of the weights: CC-BY-NC-SA-4.0" in card
    assert marker(out, "c")["files"]["delta.safetensors"] == delta

    before = {pid: marker(out, pid) for pid in IDS}
    result = runner.invoke(main, ["render", str(out), "--frames", "5", "--only", "a", "--no-gallery",
                                  "--progress-every", "0"])
    assert result.exit_code == 0, result.output
    assert "1 re-rendered, 0 failed" in result.output
    assert marker(out, "b") == before["b"] and marker(out, "c") == before["c"]
    after = marker(out, "a")
    assert after["action"] == "rendered" and after["inputs"]["render"]["render"]["turntable_frames"] == 5
    assert after["files"]["delta.safetensors"] == before["a"]["files"]["delta.safetensors"]
    assert sum(rel.startswith("renders/turntable/") for rel in after["files"]) == 5
    result = runner.invoke(main, ["render", str(out), "--only", "nope", "--no-gallery"])
    assert result.exit_code == 1 and "not committed" in result.output

    # the render history now estimates a plan's time
    result = runner.invoke(main, ["plan", manifest, "--out", str(out), *QUICK, "--frames", "5"])
    assert "re-render from the stored delta: 2" in result.output and "render 2 x" in result.output

    result = runner.invoke(main, ["run", manifest, "--out", str(out), *QUICK, "--only", "b", "--force",
                                  "--no-gallery", "--progress-every", "0"])
    assert result.exit_code == 0, result.output
    assert "1 committed, 0 re-rendered, 0 refreshed, 0 skipped" in result.output
    assert marker(out, "b")["files"]["delta.safetensors"] != before["b"]["files"]["delta.safetensors"]
    assert marker(out, "c") == before["c"]
    reports = sorted((out / "runs").glob("*/report.parquet"), key=lambda p: p.stat().st_mtime)
    assert [r["painting_id"] for r in pq.read_table(reports[-1]).to_pylist()] == ["b"]
    result = runner.invoke(main, ["run", manifest, "--out", str(out), *QUICK, "--only", "zz", "--no-gallery"])
    assert result.exit_code == 1 and "--only names ids that are not in the manifest: zz" in result.output

    from artmator.pipeline.gallery import build_gallery

    build_gallery(str(out), str(out / "gallery"))
    page = (out / "gallery" / "p" / "c" / "index.html").read_text()
    assert 'class="extra">ACC-c<' in page and "accession_number" in page
    iiif = json.loads((out / "gallery" / "p" / "c" / "manifest.json").read_text())
    assert {"label": {"none": ["accession_number"]}, "value": {"none": ["ACC-c"]}} in iiif["metadata"] or any(
        "ACC-c" in json.dumps(m) for m in iiif["metadata"])


@pytest.mark.timeout(300)
def test_a_crash_at_any_write_of_a_refresh_is_redone_or_kept_never_lost(committed, tmp_path, monkeypatch):
    """The race: a refresh killed between any two writes. A rerun's plan then redoes it when its marker was not
    written and skips it when it was; the painting is committed (whole) at every point."""
    catalog, out = copy_of(committed, tmp_path)
    rows = base_rows()
    config = RunConfig(manifest_uri=str(catalog / "manifest.parquet"), out_uri=str(out), settings=cli_settings())
    store = OutputStore(str(out))
    real_write, real_rm_file, real_rm = storage.atomic_write, store.fs.rm_file, store.fs.rm
    spec = job.ActorSpec(settings_json="{}", out_uri=str(out), storage_options={}, run_id="crash", config_hash="")
    writes = 3 + 3          # result.json, model_card.md, marker, then removing the old marker and the two old files
    for crash_at in range(writes):
        rows[0]["title"] = f"Title {crash_at}"
        write_catalog(catalog, rows, images=images_of(committed))
        [row] = make_plan(config).of("refresh")
        calls = []

        def counted(fn):
            def call(*args, **kwargs):
                if "/claims/" in str(args[0] if args else ""):   # the claim's bookkeeping, not a commit's write
                    return fn(*args, **kwargs)
                calls.append(args[0] if args else None)
                if len(calls) > crash_at:                  # killed: nothing after this point happens
                    raise OSError(f"killed at write {crash_at} (injected)")
                return fn(*args, **kwargs)
            return call

        monkeypatch.setattr(storage, "atomic_write", counted(real_write))
        monkeypatch.setattr(store.fs, "rm_file", counted(real_rm_file))
        monkeypatch.setattr(store.fs, "rm", counted(real_rm))
        outcome = refresh_and_commit("a", json.loads(json.dumps(job.wire_plan(row, config.settings))), store, spec)
        monkeypatch.undo()
        assert outcome["status"] == "failed" and "injected" in outcome["message"]
        marker_written = crash_at >= 3
        after = make_plan(config)
        assert {r.task.painting_id: r.action for r in after.rows}["a"] == ("skip" if marker_written else "refresh")
        commit = store.read_commit("a")
        for rel in commit.files:
            layout.read_verified(store.fs, commit, rel)
        title = json.loads(store.read_file("a", "result.json"))["metadata"]["title"]
        assert (title == f"Title {crash_at}") is marker_written
    # what the killed attempts left behind goes with the next commit
    rows[0]["title"] = "Final"
    write_catalog(catalog, rows, images=images_of(committed))
    [row] = make_plan(config).of("refresh")
    assert refresh_and_commit("a", job.wire_plan(row, config.settings), store, spec)["status"] == "refreshed"
    assert store.verify("a") == []


@pytest.mark.timeout(600)
def test_readers_never_see_a_painting_gone_during_recommits(committed, tmp_path):
    catalog, out = copy_of(committed, tmp_path)
    settings = cli_settings()
    config = RunConfig(manifest_uri=str(catalog / "manifest.parquet"), out_uri=str(out),
                       settings=replace(settings, render=replace(settings.render, turntable_frames=2)),
                       progress_every_s=0)
    stop, problems, reads = threading.Event(), [], [0]

    def reader():
        store = OutputStore(str(out))
        while not stop.is_set():
            for pid in IDS:
                commit = store.read_commit(pid)
                if commit is None:
                    problems.append(f"{pid} not committed at some point")
                    continue
                try:
                    for rel in commit.files:
                        layout.read_verified(store.fs, commit, rel)
                    reads[0] += 1
                except layout.IntegrityError as err:
                    newer = store.read_commit(pid)   # only a newer commit may have taken the files away
                    if newer is None or layout.version_order(newer.version) <= layout.version_order(commit.version):
                        problems.append(f"{pid}: {err} with no newer commit")
            time.sleep(0.05)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        summary = run(config)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert summary.rendered == 3 and problems == [] and reads[0] > 0


@pytest.mark.s3
@pytest.mark.timeout(600)
def test_refresh_and_render_on_s3(ray_local, s3_bucket, s3_options):
    catalog = f"{s3_bucket}/catalog"
    for i, pid in enumerate(("s1", "s2")):
        write_image(catalog, f"{pid}.png", 20 + i, s3_options)
    rows = [{"painting_id": "s1"}, {"painting_id": "s2"}]
    manifest = write_catalog(catalog, rows, s3_options)
    settings = cli_settings()
    config = RunConfig(manifest_uri=manifest, out_uri=f"{s3_bucket}/out", settings=settings,
                       storage_options=s3_options, progress_every_s=0)
    assert run(replace(config, run_id="s3-base")).done == 2
    store = OutputStore(f"{s3_bucket}/out", s3_options)
    first = store.read_marker("s1")

    rows[0]["title"] = "Renamed on S3"
    write_catalog(catalog, rows, s3_options)
    summary = run(replace(config, run_id="s3-meta"))
    assert (summary.refreshed, summary.skipped) == (1, 1)
    assert json.loads(store.read_file("s1", "result.json"))["metadata"]["title"] == "Renamed on S3"

    frames = replace(config, settings=replace(settings, render=replace(settings.render, turntable_frames=2)))
    assert make_plan(frames).counts()["render"] == 2
    summary = run(replace(frames, run_id="s3-frames"))
    assert summary.rendered == 2 and summary.ok
    now = store.read_marker("s1")
    assert now["files"]["delta.safetensors"] == first["files"]["delta.safetensors"]
    assert all(store.verify(pid) == [] for pid in ("s1", "s2"))
    version_folders = {p.split("/paintings/s1/")[1].split("/")[0] for p in store.fs.find(store.painting_dir("s1"))}
    assert version_folders == {first["version"], now["version"]}   # the delta's folder and the new renders' only
