"""The tuning actor without Ray: `tune_and_commit` per-painting failures, commits, the attempt guard, `TuneActor`."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from artmator.pipeline.actor import REPORT_COLUMNS, ActorSpec, TuneActor, _with_device, tune_and_commit
from artmator.pipeline.flow import context_of
from artmator.pipeline.job import count_attempts
from artmator.pipeline.manifest import PaintingTask
from artmator.pipeline.settings import load_models
from artmator.pipeline.storage import OutputStore
from tests.pipeline.ray_fixtures import png_bytes, tiny_settings

SETTINGS = tiny_settings()


@pytest.fixture(scope="module")
def models():
    return load_models(SETTINGS)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        (folder / f"g{i}.png").write_bytes(png_bytes(40 + i))
    (folder / "notes.png").write_text("this is a text file, not a painting")
    return folder


def _spec(out: Path, **kw) -> ActorSpec:
    return ActorSpec(settings_json=json.dumps(SETTINGS.to_dict()), out_uri=str(out), storage_options={},
                     run_id="r1", config_hash="c0ffee", **kw)


def _task(row: int, pid: str, image: Path, **kw) -> PaintingTask:
    return PaintingTask(row=row, painting_id=pid, image_uri=str(image), yaw_deg=0.0, pitch_deg=0.0, **kw)


@pytest.mark.timeout(120)
def test_one_bad_painting_never_fails_the_batch(models, images, tmp_path):
    store = OutputStore(str(tmp_path))
    tasks = [_task(0, "good", images / "g0.png", title="A title", extra={"accession_number": "1923.4"}),
             _task(1, "text-file", images / "notes.png"),
             _task(2, "bad-expression", images / "g1.png", expressions=("no_such_expression",)),
             _task(3, "good-2", images / "g2.png", expressions=())]
    rows = tune_and_commit(tasks, context_of(SETTINGS, models), store, _spec(tmp_path))

    assert [r["painting_id"] for r in rows] == ["good", "text-file", "bad-expression", "good-2"]
    assert all(set(r) == set(REPORT_COLUMNS) for r in rows)
    by_id = {r["painting_id"]: r for r in rows}
    assert by_id["good"]["status"] == "done" and by_id["good"]["delta_bytes"] > 0
    assert by_id["text-file"]["status"] == "failed" and by_id["text-file"]["error_kind"] == "image"
    assert "notes.png" in by_id["text-file"]["message"]
    assert by_id["bad-expression"]["error_kind"] == "expression"
    assert "no_such_expression" in by_id["bad-expression"]["message"]
    assert set(store.committed("c0ffee")) == {"good", "good-2"}
    assert store.verify("good") == [] and store.verify("good-2") == []
    result = json.loads(store.read_file("good", "result.json"))
    assert result["metadata"]["title"] == "A title" and result["expressions"] == ["happiness"]
    assert result["extra"] == {"accession_number": "1923.4"}          # pass-through columns reach result.json
    marker = store.read_marker("good")
    assert "random_weights" in marker["flags"] and marker["action"] == "done"
    assert marker["inputs"]["image"]["sha256"] == hashlib.sha256((images / "g0.png").read_bytes()).hexdigest()
    assert marker["fingerprints"]["image"] == marker["inputs"]["image"]["sha256"][:16]
    assert {"delta.safetensors", "input.png", "reference.png", "result.json"} <= set(marker["files"])
    # an explicit empty expression list renders no stills
    assert not any(rel.startswith("renders/expressions/") for rel in store.read_marker("good-2")["files"])
    assert count_attempts(store, "r1") == {"good": 1, "text-file": 1, "bad-expression": 1, "good-2": 1}


@pytest.mark.timeout(120)
def test_painting_whose_actor_keeps_dying_is_failed_not_retried_forever(models, images, tmp_path):
    store = OutputStore(str(tmp_path))
    earlier = tmp_path / "runs" / "r1" / "attempts" / "crasher"     # two earlier attempts of this run ended
    earlier.mkdir(parents=True)                                        # with the actor dying mid-painting
    for name in ("a", "b"):
        (earlier / name).write_bytes(b"")
    tasks = [_task(0, "crasher", images / "g0.png"), _task(1, "fine", images / "g1.png")]
    rows = tune_and_commit(tasks, context_of(SETTINGS, models), store, _spec(tmp_path, max_attempts=2))
    assert rows[0]["status"] == "failed" and rows[0]["error_kind"] == "actor_died"
    assert "2 attempts" in rows[0]["message"]
    assert rows[1]["status"] == "done"
    assert set(store.committed_ids()) == {"fine"}
    assert count_attempts(store, "r1") == {"crasher": 3, "fine": 1}


@pytest.mark.timeout(120)
def test_tune_actor_call_and_batched_tuning(images, tmp_path):
    settings = replace(SETTINGS, paintings_per_batch=2, device="cuda")    # no CUDA here: the actor falls back
    spec = replace(_spec(tmp_path), settings_json=json.dumps(settings.to_dict()))
    actor = TuneActor(spec)
    assert actor.settings.device == "cpu"
    batch = {"painting_id": np.array(["b0", "b1"]),
             "task": np.array([json.dumps(_task(i, f"b{i}", images / f"g{i}.png").as_row()) for i in range(2)])}
    out = actor(batch)
    assert set(out) == set(REPORT_COLUMNS)
    assert out["painting_id"] == ["b0", "b1"] and out["status"] == ["done", "done"]
    assert set(OutputStore(str(tmp_path)).committed("c0ffee")) == {"b0", "b1"}


def test_with_device_keeps_cpu_and_drops_unavailable_cuda():
    assert _with_device(replace(SETTINGS, device="cpu")).device == "cpu"
    import torch

    if not torch.cuda.is_available():
        assert _with_device(replace(SETTINGS, device="cuda:1")).device == "cpu"


@pytest.mark.timeout(300)
def test_whole_painting_is_aligned_and_face_metrics_reach_result_report_and_marker(models, tmp_path):
    """Defaults (find faces, face metrics) on a whole painting: the detected face is tuned, the renders are
    scored by the pretrained face networks, and the face flags land in result.json, the report and the marker."""
    from tests.pipeline.faces_fixtures import jpeg_bytes, no_face_painting, whole_painting

    (tmp_path / "whole.jpg").write_bytes(jpeg_bytes(whole_painting()))
    (tmp_path / "land.jpg").write_bytes(jpeg_bytes(no_face_painting()))
    settings = replace(SETTINGS, image=replace(SETTINGS.image, find_faces=True), face_metrics=True)
    store = OutputStore(str(tmp_path / "out"))
    tasks = [PaintingTask(row=0, painting_id="whole", image_uri=str(tmp_path / "whole.jpg")),
             PaintingTask(row=1, painting_id="land", image_uri=str(tmp_path / "land.jpg"))]
    rows = {r["painting_id"]: r for r in tune_and_commit(tasks, context_of(settings, models), store,
                                                          _spec(tmp_path))}
    assert rows["land"]["status"] == "failed" and rows["land"]["error_kind"] == "face"
    assert "no_face" in rows["land"]["message"]
    row = rows["whole"]
    assert row["status"] == "done" and row["pose_source"] == "landmarks" and row["face_confidence"] > 0.5
    doc = json.loads(store.read_file("whole", "result.json"))
    face = doc["face"]
    assert set(face) >= {"detected_fraction", "identity_consistency", "likeness", "pose_error_deg", "expressions"}
    assert row["face_detected_fraction"] == pytest.approx(face["detected_fraction"])
    # A random tiny backbone renders no face: the scorer says so, and the flag is everywhere.
    assert face["detected_fraction"] < 0.5 and "no_face_in_renders" in doc["quality"]["flags"]
    assert "no_face_in_renders" in row["flags"].split(",")
    marker = store.read_marker("whole")
    assert "no_face_in_renders" in marker["flags"] and "pose_estimated" in marker["flags"]
    assert set(REPORT_COLUMNS) <= set(row)
    # Provenance: the painting's web copy, and a model card naming the image and the weights by sha256.
    import hashlib
    import io

    from PIL import Image

    painting = Image.open(io.BytesIO(store.read_file("whole", "painting.jpg")))
    assert painting.format == "JPEG" and painting.size == Image.open(tmp_path / "whole.jpg").size
    image_sha = hashlib.sha256((tmp_path / "whole.jpg").read_bytes()).hexdigest()
    assert doc["provenance"]["image_sha256"] == image_sha == marker["inputs"]["image"]["sha256"]
    card = store.read_file("whole", "model_card.md").decode()
    assert card.startswith("# Model card: whole") and "AI-generated 3D interpretation" in card
    assert f"Image sha256: `{image_sha}`" in card and doc["base_sha256"] in card
    assert "Licence of the weights: unknown" in card and "trainedAlgorithmicMedia" in card


@pytest.mark.timeout(240)
def test_claimed_paintings_are_left_to_their_holder_and_work_committed_meanwhile_is_not_redone(models, images,
                                                                                                 tmp_path):
    from artmator.pipeline import changes
    from artmator.pipeline.actor import wire_plan
    from artmator.pipeline.claims import Claims, list_holders
    from artmator.pipeline.layout import claims_root

    store = OutputStore(str(tmp_path))
    other = Claims.of_store(store, "r-other").take("held", "tune")    # a live worker of another run, this host
    tasks = [_task(0, "held", images / "g0.png"), _task(1, "free", images / "g1.png")]
    base = changes.base_identity(SETTINGS)
    plans = [wire_plan(changes.fresh_plan(t, SETTINGS, base), SETTINGS) for t in tasks]   # planned before any commit
    context = context_of(SETTINGS, models)
    rows = {r["painting_id"]: r for r in tune_and_commit(tasks, context, store, _spec(tmp_path), plans)}
    assert rows["held"]["status"] == "claimed" and "run r-other (tune)" in rows["held"]["message"]
    assert rows["free"]["status"] == "done" and not store.is_committed("held")
    marker = store.read_marker("free")
    assert marker["claim"]["run_id"] == "r1" and marker["claim"]["purpose"] == "tune"
    assert [h.subject for h in list_holders(store.fs, claims_root(store.root))] == ["held"]   # r1 let go of its own

    other.release()                                   # the holder gave up without committing: a later run tunes it
    again = {r["painting_id"]: r for r in tune_and_commit(tasks, context, store, replace(_spec(tmp_path), run_id="r2"),
                                                          plans)}
    assert again["held"]["status"] == "done"
    assert again["free"]["status"] == "skipped" and "committed by run r1 after this run planned it" in \
        again["free"]["message"]
    assert store.read_marker("free") == marker        # not tuned twice
    assert list_holders(store.fs, claims_root(store.root)) == []
