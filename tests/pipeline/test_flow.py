"""The painting flow is one: `artmator tune` and the tuning actor give the same files for the same painting and
settings, and `paint` keeps every painting's outcome independent without writing anything."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from artmator.model.delta import load_delta
from artmator.pipeline.actor import ActorSpec, TuneActor
from artmator.pipeline.cli import main
from artmator.pipeline.flow import context_of, paint
from artmator.pipeline.manifest import PaintingTask
from artmator.pipeline.settings import load_models, settings_json
from artmator.pipeline.storage import OutputStore, redact_config
from tests.pipeline.ray_fixtures import png_bytes, tiny_settings

SETTINGS = tiny_settings()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.timeout(300)
def test_tune_and_the_actor_write_the_same_painting(tmp_path):
    image = tmp_path / "portrait.png"
    image.write_bytes(png_bytes(7))
    config = tmp_path / "config.json"
    config.write_text(settings_json(SETTINGS, redact_config))

    result = CliRunner().invoke(main, ["tune", str(image), "--yaw", "10", "--pitch", "-5", "--id", "portrait",
                                       "--config", str(config), "--out", str(tmp_path / "tune")])
    assert result.exit_code == 0, result.output

    spec = ActorSpec(settings_json=json.dumps(SETTINGS.to_dict()), out_uri=str(tmp_path / "run"), storage_options={},
                     run_id="r1", config_hash="h")
    task = PaintingTask(row=0, painting_id="portrait", image_uri=str(image), yaw_deg=10.0, pitch_deg=-5.0,
                        title="portrait")
    out = TuneActor(spec)({"painting_id": np.array(["portrait"]), "task": np.array([json.dumps(task.as_row())])})
    assert out["status"] == ["done"], out["message"]

    by_tune = _files(tmp_path / "tune")
    store = OutputStore(str(tmp_path / "run"))
    commit = store.read_commit("portrait")                         # the committed version, as the gallery reads it
    by_actor = {rel: store.read_file("portrait", rel, commit) for rel in commit.files}
    assert set(by_tune) - {"config.json"} == set(by_actor)
    assert json.loads(by_tune["config.json"]) == SETTINGS.to_dict()
    images = [k for k in by_actor if k.endswith((".png", ".webp"))]
    assert len(images) >= 5
    for rel in images:
        assert by_tune[rel] == by_actor[rel], f"{rel} differs between tune and the actor"
    da = load_delta(str(tmp_path / "tune" / "delta.safetensors"))
    db = load_delta(commit.path_of("delta.safetensors"))
    assert da.metadata == db.metadata and all(torch.equal(da.tensors[k], db.tensors[k]) for k in da.tensors)
    ra, rb = (json.loads(files["result.json"]) for files in (by_tune, by_actor))
    for doc in (ra, rb):
        doc.pop("timings")
    assert ra == rb


@pytest.mark.timeout(120)
def test_paint_returns_one_outcome_per_task_and_writes_nothing(tmp_path):
    (tmp_path / "good.png").write_bytes(png_bytes(3))
    (tmp_path / "empty.png").write_bytes(b"")
    tasks = [PaintingTask(row=0, painting_id="empty", image_uri=str(tmp_path / "empty.png"), yaw_deg=0.0,
                          pitch_deg=0.0),
             PaintingTask(row=1, painting_id="good", image_uri=str(tmp_path / "good.png"), yaw_deg=0.0,
                          pitch_deg=0.0, expressions=())]
    before = sorted(p.name for p in tmp_path.iterdir())
    empty, good = paint(tasks, context_of(SETTINGS, load_models(SETTINGS)))
    assert (empty.ok, empty.error_kind) == (False, "image") and "empty" in empty.message
    assert good.ok and good.face.pose_source == "given" and good.tuned.painting_id == "good"
    assert {"delta.safetensors", "reference.png", "result.json"} <= set(good.files)
    assert not any(k.startswith("renders/expressions/") for k in good.files)        # the row asked for none
    assert sorted(p.name for p in tmp_path.iterdir()) == before
