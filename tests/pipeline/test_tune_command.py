"""`artmator tune`: one painting to a folder; same seed on CPU -> identical outputs; clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
import torch
from PIL import Image

from artmator.model.delta import load_delta

from artmator.pipeline.cli import main

DEMO = Path(__file__).resolve().parents[2] / "manifests" / "demo" / "astronaut_oil.png"
FAST = ["--no-head-prior", "--no-find-faces", "--no-face-metrics", "--stage1-steps", "2", "--stage2-steps", "2", "--resolution", "32",
        "--render-resolution", "32", "--frames", "3", "--expressions", "happiness"]


def _tune(out: Path, *extra: str):
    result = CliRunner().invoke(main, ["tune", str(DEMO), "--yaw", "0", "--pitch", "0", "--out", str(out), *FAST, *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.timeout(300)
def test_tune_writes_outputs_and_is_deterministic(tmp_path):
    res = _tune(tmp_path / "a")
    _tune(tmp_path / "b")
    a, b = tmp_path / "a", tmp_path / "b"
    expected = {"delta.safetensors", "reference.png", "result.json", "config.json", "renders/turntable.webp",
                "renders/turntable/000.png", "renders/turntable/002.png", "renders/expressions/happiness.png"}
    files = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    assert expected <= files
    for rel in expected - {"result.json", "config.json", "delta.safetensors"}:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs between two runs with one seed"
    # safetensors orders its metadata map differently per process: compare the delta's content, not bytes.
    da, db = load_delta(str(a / "delta.safetensors")), load_delta(str(b / "delta.safetensors"))
    assert da.metadata == db.metadata and da.tensors.keys() == db.tensors.keys()
    assert all(torch.equal(da.tensors[k], db.tensors[k]) for k in da.tensors)
    result = json.loads((a / "result.json").read_text())
    assert len(result["losses"]["stage1"]) == 2 and len(result["losses"]["total"]) == 2
    assert result["steps"] == {"stage1": 2, "stage2": 2}
    assert {"stage1", "stage2"} <= set(result["timings"]) and result["delta_bytes"] > 0
    assert result["quality"]["lpips_ref"] >= 0 and "random_weights" in result["quality"]["flags"]
    assert Image.open(a / "renders/turntable.webp").n_frames == 4  # ping-pong: 0 1 2 1
    assert "reference LPIPS" in res.output and str(a.resolve()) in res.output
    config = json.loads((a / "config.json").read_text())
    assert config["tune"]["stage1"]["steps"] == 2 and config["render"]["turntable_frames"] == 3


@pytest.mark.timeout(300)
def test_early_stopping_options_and_the_steps_used_in_result_json(tmp_path):
    # a 90 % drop per step is never reached: each stage stops at its minimum step count, not at 12
    stop = [a for stage, least in (("stage1", "3"), ("stage2", "4")) for a in (
        f"--{stage}-steps", "12", f"--{stage}-early-stop-patience", "1", f"--{stage}-early-stop-window", "1",
        f"--{stage}-early-stop-min-rel-improvement", "0.9", f"--{stage}-early-stop-min-steps", least)]
    _tune(tmp_path / "a", *stop)
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["steps"] == {"stage1": 3, "stage2": 4}
    assert len(result["losses"]["stage1"]) == 3 and len(result["losses"]["total"]) == 4
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["tune"]["stage2"]["early_stop"] == {"patience": 1, "window": 1, "min_rel_improvement": 0.9,
                                                      "min_steps": 4}


@pytest.mark.timeout(300)
def test_other_seed_changes_result(tmp_path):
    _tune(tmp_path / "a")
    _tune(tmp_path / "c", "--seed", "7")
    da, dc = load_delta(str(tmp_path / "a/delta.safetensors")), load_delta(str(tmp_path / "c/delta.safetensors"))
    assert any(not torch.equal(da.tensors[k], dc.tensors[k]) for k in da.tensors)


def test_bad_inputs_have_clear_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["tune", str(DEMO), "--yaw", "0", "--out", str(tmp_path / "x"), *FAST])
    assert r.exit_code != 0 and "both --yaw and --pitch" in r.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"<html>not an image</html>")
    r = runner.invoke(main, ["tune", str(bad), "--yaw", "0", "--pitch", "0", "--out", str(tmp_path / "y"), *FAST])
    assert r.exit_code == 1 and "(image): not_an_image" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["tune", str(DEMO), "--yaw", "0", "--pitch", "0", "--crop", "1,2,3", "--out",
                             str(tmp_path / "z"), *FAST])
    assert r.exit_code != 0 and "X,Y,W,H" in r.output


@pytest.mark.timeout(300)
def test_tune_takes_a_whole_painting_finds_aligns_and_poses_the_face(tmp_path):
    from tests.pipeline.faces_fixtures import jpeg_bytes, no_face_painting, whole_painting

    (tmp_path / "whole.jpg").write_bytes(jpeg_bytes(whole_painting()))
    args = [a for a in FAST if a not in ("--no-find-faces", "--no-face-metrics")]
    result = CliRunner().invoke(main, ["tune", str(tmp_path / "whole.jpg"), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 0, result.output
    assert "(landmarks); face detected" in result.output and "face metrics: face in " in result.output
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert doc["pose"]["source"] == "landmarks" and doc["pose"]["estimated"] is True
    assert doc["face_input"]["alignment_source"] == "detected" and abs(doc["face_input"]["alignment"]["cx"] - 555) < 25
    assert "pose_estimated" in doc["quality"]["flags"]
    face = doc["face"]                                               # face-aware metrics of the renders
    assert 0.0 <= face["detected_fraction"] <= 1.0 and set(face["expressions"]) >= {"neutral"}
    (tmp_path / "land.jpg").write_bytes(jpeg_bytes(no_face_painting()))
    result = CliRunner().invoke(main, ["tune", str(tmp_path / "land.jpg"), "--out", str(tmp_path / "n"), *args])
    assert result.exit_code == 1 and "(face): no_face" in result.output and "Traceback" not in result.output


@pytest.mark.timeout(300)
def test_tune_with_the_triplane_backbone_and_its_expression_edge(tmp_path):
    """`--preset triplane-tiny`: the same command and files, no expression stills by default; asking for one on a
    backbone without expression codes fails before any tuning, saying why and what to do."""
    args = [a for a in FAST if a not in ("--expressions", "happiness")]
    result = CliRunner().invoke(main, ["tune", str(DEMO), "--yaw", "10", "--pitch", "0", "--out", str(tmp_path / "t"),
                                       "--preset", "triplane-tiny", *args])
    assert result.exit_code == 0, result.output
    out = tmp_path / "t"
    assert (out / "renders/turntable/002.png").is_file() and not (out / "renders/expressions").exists()
    doc = json.loads((out / "result.json").read_text())
    assert doc["expressions"] == [] and doc["pose"]["yaw_deg"] == 10.0
    assert load_delta(str(out / "delta.safetensors")).metadata.preset == "triplane-tiny"
    assert json.loads((out / "config.json").read_text())["backbone"]["preset"] == "triplane-tiny"
    refused = CliRunner().invoke(main, ["tune", str(DEMO), "--yaw", "0", "--pitch", "0", "--out", str(tmp_path / "x"),
                                        "--preset", "triplane-tiny", *FAST])
    assert refused.exit_code == 1 and "painting (expression): the triplane-tiny backbone has no expression codes" \
        in refused.output and not (tmp_path / "x").exists()
