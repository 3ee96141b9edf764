"""Manifest reading, validation (every problem at once), typed tasks, and the shipped demo catalog."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from artmator.pipeline.manifest import (MANIFEST_SCHEMA, Crop, ManifestError, PaintingTask, Problem, load_manifest,
                               manifest_base_dir, read_manifest, resolve_uri,
                               split_manifest, task_from_row, validate_manifest)

DEMO = Path(__file__).resolve().parents[2] / "manifests" / "demo"
RIGHTS = "https://creativecommons.org/publicdomain/mark/1.0/"


def good_rows(n: int = 3) -> list[dict]:
    return [{"painting_id": f"p{i}", "image_uri": f"img/p{i}.png", "yaw_deg": 10.0, "pitch_deg": -5.0,
             "title": f"Portrait {i}", "rights": RIGHTS, "expressions": ["happiness"]} for i in range(n)]


def table(rows: list[dict]) -> pa.Table:
    keys = list(dict.fromkeys(k for row in rows for k in row))  # from_pylist alone takes the first row's keys
    return pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])


def with_row(**overrides) -> pa.Table:
    """Three good rows, the second changed by `overrides`."""
    rows = good_rows()
    rows[1].update(overrides)
    return table(rows)


def test_valid_manifest_gives_typed_tasks_and_keeps_unknown_columns():
    t = pa.table({
        "painting_id": ["a1", "B.2"],
        "image_uri": ["img/a1.png", "s3://museum/b2.jpg"],
        "yaw_deg": pa.array([15, None], pa.int64()),  # ints are accepted and cast
        "pitch_deg": pa.array([-3, None], pa.int32()),
        "crop": [[1, 2, 30, 40], None],
        "date": [1665, None],  # an integer year becomes text
        "expressions": [["happiness", "exp/smile.mat"], []],
        "accession_number": ["1923.4", None],
        "on_view": [True, False],
    })
    assert validate_manifest(t, "/museum/catalog") == []
    a, b = split_manifest(t, "/museum/catalog")[0]
    assert a == PaintingTask(row=0, painting_id="a1", image_uri="/museum/catalog/img/a1.png", yaw_deg=15.0,
                             pitch_deg=-3.0, crop=Crop(1, 2, 30, 40), date="1665",
                             expressions=("happiness", "/museum/catalog/exp/smile.mat"),
                             extra={"accession_number": "1923.4", "on_view": True})
    assert isinstance(a.yaw_deg, float) and not a.needs_pose_search
    assert b.image_uri == "s3://museum/b2.jpg" and b.needs_pose_search and b.expressions == ()
    assert b.extra == {"accession_number": None, "on_view": False}
    assert task_from_row(a.as_row()) == a


def test_struct_crop_and_pandas_style_types_are_accepted():
    crop = pa.array([{"y": 2, "x": 1, "w": 3, "h": 4}], pa.struct([("y", pa.int32()), ("x", pa.int32()),
                                                                    ("w", pa.int16()), ("h", pa.int64())]))
    t = pa.table({"painting_id": pa.array(["a"], pa.large_string()),
                  "image_uri": pa.array(["x.png"]).dictionary_encode(), "crop": crop,
                  "title": pa.nulls(1), "expressions": pa.array([["neutral"]], pa.large_list(pa.large_string()))})
    assert validate_manifest(t) == []
    (task,) = split_manifest(t)[0]
    assert task.crop == Crop(1, 2, 3, 4) and task.image_uri == "x.png" and task.expressions == ("neutral",)


BAD_ROWS = [
    (dict(painting_id=None), "painting_id", "required"),
    (dict(painting_id=""), "painting_id", "empty"),
    (dict(painting_id="../x"), "painting_id", "path separator"),
    (dict(painting_id="a/b"), "painting_id", "path separator"),
    (dict(painting_id="/abs"), "painting_id", "absolute"),
    (dict(painting_id="a\x00b"), "painting_id", "control"),
    (dict(painting_id=".."), "painting_id", "names a directory"),
    (dict(painting_id="x" * 129), "painting_id", "at most 128"),
    (dict(painting_id="Mona Lisa"), "painting_id", "only A-Z"),
    (dict(image_uri=None), "image_uri", "required"),
    (dict(image_uri="  "), "image_uri", "empty"),
    (dict(image_uri="img.png "), "image_uri", "whitespace"),
    (dict(image_uri="htps://host/x.png"), "image_uri", "does not know"),
    (dict(image_uri="https://bob:secret@host/x.png"), "image_uri", "password"),
    (dict(yaw_deg=math.nan), "yaw_deg", "finite"),
    (dict(pitch_deg=math.inf), "pitch_deg", "finite"),
    (dict(yaw_deg=90.5), "yaw_deg", "outside [-90, 90]"),
    (dict(pitch_deg=-61.0), "pitch_deg", "outside [-60, 60]"),
    (dict(yaw_deg=None), "yaw_deg", "give both"),
    (dict(crop=[1, 2, 3]), "crop", "exactly four"),
    (dict(crop=[-1, 0, 3, 3]), "crop", ">= 0"),
    (dict(crop=[0, 0, 0, 3]), "crop", "> 0"),
    (dict(rights="javascript:alert(1)"), "rights", "http(s) URI"),
    (dict(source_url="Public domain"), "source_url", "http(s) URI"),
    (dict(expressions=["Big Smile"]), "expressions", "names like"),
    (dict(expressions=["happiness", ""]), "expressions", "names like"),
    (dict(expressions=["happiness", None]), "expressions", "names like"),
    (dict(expressions=["happiness", "happiness"]), "expressions", "twice"),
]


@pytest.mark.parametrize("overrides,column,reason", BAD_ROWS, ids=[f"{c}-{r}" for _, c, r in BAD_ROWS])
def test_each_bad_value_is_reported_for_its_row_only(overrides, column, reason):
    t = with_row(**overrides)
    problems = validate_manifest(t)
    assert [(p.row, p.column) for p in problems] == [(1, column)], problems
    assert reason in problems[0].reason
    tasks, split_problems = split_manifest(t)
    assert [task.painting_id for task in tasks] == ["p0", "p2"] and split_problems == problems


def test_every_problem_is_reported_at_once():
    rows = good_rows(6)
    rows[0].update(painting_id="dup")
    rows[2].update(painting_id="dup", yaw_deg=math.nan, crop=[0, 0, -1, 5])
    rows[3].update(painting_id="DUP")
    rows[4].update(image_uri=None, pitch_deg=100.0)
    problems = validate_manifest(table(rows))
    found = {(p.row, p.column) for p in problems}
    assert found == {(0, "painting_id"), (2, "painting_id"), (2, "yaw_deg"), (2, "crop"), (3, "painting_id"),
                     (4, "image_uri"), (4, "pitch_deg")}
    dup = [p for p in problems if p.row == 0][0]
    assert "duplicate" in dup.reason and "rows 2" in dup.reason and "letter case" in dup.reason
    assert [t.painting_id for t in split_manifest(table(rows))[0]] == ["p1", "p5"]
    assert [p.row for p in problems] == sorted(p.row for p in problems)


def test_manifest_level_problems_stop_every_row():
    t = table(good_rows()).drop_columns(["image_uri"])
    (p,) = validate_manifest(t)
    assert p == Problem(None, None, "image_uri", p.reason) and "missing" in p.reason
    assert split_manifest(t)[0] == []

    t = table(good_rows()).set_column(2, "yaw_deg", pa.array(["10", "11", "12"]))
    problems = validate_manifest(t)
    assert [(p.row, p.column) for p in problems] == [(None, "yaw_deg")] and "expected numbers" in problems[0].reason

    t = table(good_rows()).rename_columns(["painting_id", "image_uri", "yaw_deg", "pitch_deg", "Title", "rights",
                                           "expressions"])
    problems = validate_manifest(t)
    assert [(p.row, p.column) for p in problems] == [(None, "Title")] and "case-sensitive" in problems[0].reason

    t = pa.table([pa.array(["a"]), pa.array(["x"]), pa.array(["y"])], names=["painting_id", "image_uri", "image_uri"])
    assert [p.column for p in validate_manifest(t)] == ["image_uri"]

    t = table(good_rows()).set_column(4, "crop", pa.array([1.0, 2.0, 3.0]))
    assert [(p.row, p.column) for p in validate_manifest(t)] == [(None, "crop")]

    assert [p.row for p in validate_manifest(table(good_rows()).slice(0, 0))] == [None]


def test_problem_text_names_row_id_and_column():
    (p,) = validate_manifest(with_row(yaw_deg=120.0))
    assert str(p) == "row 1 ('p1'): yaw_deg: yaw_deg 120.0 is outside [-90, 90] degrees"


def test_validating_10000_rows_is_fast():
    n = 10_000
    rng = np.random.default_rng(0)
    t = pa.table({"painting_id": [f"NG{i:05d}" for i in range(n)],
                  "image_uri": [f"s3://museum/img/{i}.jpg" for i in range(n)],
                  "yaw_deg": rng.uniform(-80, 80, n), "pitch_deg": rng.uniform(-50, 50, n),
                  "crop": [[0, 0, 512, 512]] * n, "title": ["Portrait"] * n, "rights": [RIGHTS] * n,
                  "expressions": [["happiness"]] * n, "accession_number": [str(i) for i in range(n)]})
    start = time.perf_counter()
    tasks, problems = split_manifest(t, "s3://museum")
    elapsed = time.perf_counter() - start
    assert problems == [] and len(tasks) == n
    ids = t.column("painting_id").to_pylist()
    ids[::2] = ["bad/id"] * (n // 2)  # half the rows bad: the problem path must stay vectorised too
    start = time.perf_counter()
    problems = validate_manifest(t.set_column(0, "painting_id", pa.array(ids)))
    elapsed_bad = time.perf_counter() - start
    assert len(problems) == n // 2 + n // 2  # unsafe + duplicate, on each bad row
    print(f"split_manifest of {n} valid rows: {elapsed:.3f} s; validate with {n // 2} bad rows: {elapsed_bad:.3f} s")
    assert elapsed < 3.0 and elapsed_bad < 3.0


def test_read_manifest_errors_are_clear(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(str(tmp_path / "missing.parquet"))
    (tmp_path / "catalog.csv").write_text("painting_id,image_uri\na,b\n")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        read_manifest(str(tmp_path / "catalog.csv"))
    pq.write_table(table(good_rows()).slice(0, 0), tmp_path / "empty.parquet")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(str(tmp_path / "empty.parquet"))
    with pytest.raises(ManifestError, match="cannot open"):
        read_manifest("nosuchprotocol://x/m.parquet")


def test_relative_uris_resolve_against_the_manifest_folder(tmp_path):
    (tmp_path / "cat").mkdir()
    pq.write_table(table(good_rows(2)), tmp_path / "cat" / "manifest.parquet")
    tasks, problems = load_manifest(str(tmp_path / "cat" / "manifest.parquet"))
    assert problems == [] and tasks[0].image_uri == str(tmp_path / "cat" / "img" / "p0.png")
    assert manifest_base_dir("https://h/a/m.parquet?sig=1") == "https://h/a"
    assert resolve_uri("../img/x.png", "s3://b/cat") == "s3://b/img/x.png"
    assert resolve_uri("/abs/x.png", "s3://b/cat") == "/abs/x.png"
    assert resolve_uri("gs://b/x.png", "/local") == "gs://b/x.png"
    assert resolve_uri("x.png", None) == "x.png"


@pytest.mark.s3
@pytest.mark.timeout(60)
def test_read_manifest_from_s3(s3_bucket, s3_options):
    import s3fs

    fs = s3fs.S3FileSystem(**s3_options)
    with fs.open(f"{s3_bucket}/catalog/manifest.parquet", "wb") as f:
        pq.write_table(table(good_rows(2)), f)
    fs.pipe_file(f"{s3_bucket}/catalog/notes.parquet", b"not parquet")
    tasks, problems = load_manifest(f"{s3_bucket}/catalog/manifest.parquet", s3_options)
    assert problems == [] and tasks[1].image_uri == f"{s3_bucket}/catalog/img/p1.png"
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        read_manifest(f"{s3_bucket}/catalog/notes.parquet", s3_options)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(f"{s3_bucket}/catalog/nope.parquet", s3_options)


def test_demo_manifest_validates_and_its_images_exist():
    path = DEMO / "manifest.parquet"
    t = read_manifest(str(path))
    assert t.schema.field("painting_id").type == MANIFEST_SCHEMA.field("painting_id").type
    tasks, problems = load_manifest(str(path))
    assert problems == [] and len(tasks) == t.num_rows == 4
    assert sum(task.needs_pose_search for task in tasks) == 1
    readme = (DEMO / "README.md").read_text()
    for task in tasks:
        assert Path(task.image_uri).parent == DEMO and not Path(
            t.column("image_uri")[task.row].as_py()).is_absolute()
        with Image.open(task.image_uri) as img:
            assert img.format == "PNG" and img.size == (256, 256)
        assert Path(task.image_uri).stat().st_size < 64_000
        assert task.rights.startswith("https://creativecommons.org/publicdomain/")
        assert task.title and task.artist and task.date and task.credit_line and task.source_url
        assert "happiness" in task.expressions and task.extra["accession_number"].startswith("DEMO-")
        assert task.painting_id in readme and Path(task.image_uri).name in readme
