"""`artmator validate`, `artmator status` and `artmator run` as a user calls them (click), exit codes and output."""
from __future__ import annotations

import io
import json

import click
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from artmator.model import load_backbone
from artmator.model.delta import apply_delta, decode_delta, delta_latent
from artmator.pipeline.cli import main
from artmator.pipeline.run_command import DEMO_MANIFEST, parse_storage_options
from artmator.pipeline.storage import OutputStore
from tests.pipeline.ray_fixtures import write_images, write_manifest
from tests.pipeline.test_report import build_out_folder

QUICK = ["--stage1-steps", "3", "--stage2-steps", "2", "--frames", "3", "--render-resolution", "32",
         "--resolution", "32", "--expressions", "happiness", "--no-head-prior", "--no-gallery", "--no-find-faces", "--no-face-metrics"]


def test_validate_good_manifest_exits_0():
    result = CliRunner().invoke(main, ["validate", str(DEMO_MANIFEST)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "4 valid rows, 0 problems"


def test_validate_lists_every_problem_and_exits_1(tmp_path):
    manifest = write_manifest(str(tmp_path / "m.parquet"), [
        {"painting_id": "ok", "image_uri": "ok.png", "yaw_deg": 0.0, "pitch_deg": 0.0},
        {"painting_id": "far-left", "image_uri": "a.png", "yaw_deg": 500.0, "pitch_deg": 0.0},
        {"painting_id": "../escape", "image_uri": "b.png"},
        {"painting_id": "ok", "image_uri": "c.png"},
    ])
    result = CliRunner().invoke(main, ["validate", manifest])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1] == "0 valid rows, 4 problems", result.output     # a duplicated id invalidates both rows
    assert "row 1 ('far-left'): yaw_deg: yaw_deg 500.0 is outside [-90, 90] degrees" in lines
    assert any(line.startswith("row 2 ('../escape'): painting_id:") and "path separator" in line for line in lines)
    assert sum(line.startswith(("row 0 ('ok'): painting_id: duplicate", "row 3 ('ok'): painting_id: duplicate"))
               for line in lines) == 2


def test_validate_unusable_manifests(tmp_path):
    (tmp_path / "not.parquet").write_text("painting_id,image_uri\n")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "not.parquet")])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "missing.parquet")])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    pq.write_table(pa.table({"painting_id": ["a"]}), tmp_path / "no-image.parquet")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "no-image.parquet")])
    assert result.exit_code == 1 and "manifest: image_uri:" in result.output


def test_status_command(tmp_path):
    build_out_folder(tmp_path)
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 paintings committed" in result.output and "2 failed (latest attempt), 1 partial" in result.output
    assert "  image: 1  e.g. p3: empty:" in result.output and "  manifest: 1  e.g. p4: yaw_deg" in result.output


def test_parse_storage_options():
    options = parse_storage_options(("anon=false", 'config_kwargs={"connect_timeout": 2}', "profile=museum"),
                                    "http://127.0.0.1:9000")
    assert options == {"anon": False, "config_kwargs": {"connect_timeout": 2}, "profile": "museum",
                       "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}
    with pytest.raises(click.BadParameter):
        parse_storage_options(("no-equals-sign",), None)


@pytest.mark.timeout(300)
def test_run_command_exit_codes(ray_local, tmp_path):
    write_images(str(tmp_path), {"a.png": 1})
    (tmp_path / "empty.png").write_bytes(b"")
    manifest = write_manifest(str(tmp_path / "m.parquet"), [
        {"painting_id": "a", "image_uri": "a.png", "yaw_deg": 0.0, "pitch_deg": 0.0},
        {"painting_id": "empty", "image_uri": "empty.png", "yaw_deg": 0.0, "pitch_deg": 0.0},
    ])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", manifest, "--out", str(out), *QUICK])
    assert result.exit_code == 1, result.output                     # something failed: exit 1
    assert "1 committed, 0 re-rendered, 0 refreshed, 0 skipped (unchanged), 1 failed" in result.output
    assert "  failed (image): 1" in result.output and "report: " in result.output
    from artmator.pipeline.storage import OutputStore

    assert OutputStore(str(out)).committed_ids() == {"a"}

    pq.write_table(pa.table({"painting_id": ["a"]}), tmp_path / "broken.parquet")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "broken.parquet"), "--out", str(out), *QUICK])
    assert result.exit_code == 1 and "Error: the manifest cannot be used" in result.output


TRIPLANE = ["--preset", "triplane-tiny", "--stage1-steps", "3", "--stage2-steps", "2", "--frames", "3",
            "--render-resolution", "32", "--resolution", "32", "--no-find-faces", "--no-face-metrics"]


def test_run_refuses_expressions_for_a_backbone_without_them_before_starting(tmp_path):
    write_images(str(tmp_path), {"a.png": 1})
    manifest = write_manifest(str(tmp_path / "m.parquet"), [{"painting_id": "a", "image_uri": "a.png"}])
    result = CliRunner().invoke(main, ["run", manifest, "--out", str(tmp_path / "out"), *TRIPLANE,
                                       "--expressions", "happiness", "--no-gallery"])
    assert result.exit_code == 1 and "Error: the triplane-tiny backbone has no expression codes" in result.output
    assert "leave --expressions out" in result.output and not (tmp_path / "out" / "paintings").exists()


@pytest.mark.timeout(420)
def test_run_with_the_triplane_backbone_commits_paintings_and_a_gallery(ray_local, tmp_path):
    """A second, differently built backbone through the same stages, deltas, renders, Ray job and gallery.

    A manifest row asking for an expression still is tuned and rendered all the same, flagged: the manifest is the
    catalog's wish list, shared by runs on any backbone (a run's own --expressions is refused instead)."""
    write_images(str(tmp_path), {"a.png": 1, "b.png": 2})
    manifest = str(tmp_path / "m.parquet")
    pq.write_table(pa.table({"painting_id": ["a", "b", "smiling"], "image_uri": ["a.png", "b.png", "a.png"],
                             "yaw_deg": [0.0, 15.0, 0.0], "pitch_deg": [0.0, 0.0, 0.0],
                             "expressions": [None, None, ["happiness"]]}), manifest)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", manifest, "--out", str(out), *TRIPLANE])
    assert result.exit_code == 0, result.output
    assert "3 committed, 0 re-rendered, 0 refreshed, 0 skipped (unchanged), 0 failed" in result.output
    assert "gallery: " in result.output
    store = OutputStore(str(out))
    commits = store.commits()
    assert set(commits) == {"a", "b", "smiling"}

    def result_of(pid: str) -> dict:
        return json.loads(store.read_file(pid, "result.json", commits[pid]))

    smiling = result_of("smiling")
    assert smiling["expressions"] == [] and "expressions_unsupported" in smiling["quality"]["flags"]
    backbone = load_backbone("triplane-tiny", seed=0)
    for pid in ("a", "b"):
        files, doc = commits[pid].files, result_of(pid)
        assert "expressions_unsupported" not in doc["quality"]["flags"]
        assert not any(f.startswith("renders/expressions/") for f in files)
        assert sorted(f for f in files if f.startswith("renders/turntable/")) == [
            f"renders/turntable/{i:03d}.png" for i in range(3)]
        assert doc["expressions"] == [] and doc["resolution"] == 32 and "random_weights" in doc["quality"]["flags"]
        delta = decode_delta(store.read_file(pid, "delta.safetensors", commits[pid]))
        assert delta.metadata.preset == "triplane-tiny" and set(delta.metadata.latent) == {"w"}
        assert any(n.endswith(".conv.lora_A") for n in delta.tensors), "the convolutions were not adapted"
        assert delta.metadata.base_sha256 == backbone.base_hash()
        with torch.no_grad():                                # the delta alone re-renders the committed reference
            again = apply_delta(backbone, delta).render_latent(delta_latent(delta), delta.metadata.yaw_deg,
                                                               delta.metadata.pitch_deg, 32).image
        reference = store.read_file(pid, "reference.png", commits[pid])
        committed = np.asarray(Image.open(io.BytesIO(reference)).convert("RGB"), dtype=np.float32)
        rendered = ((again[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
        assert np.abs(committed - rendered).max() <= 1.0 + 1e-3
    site = out / "gallery"
    assert "a" in (site / "index.html").read_text() and len(list((site / "p" / "b").glob("m-*/turntable.webm"))) == 1
    assert not list((site / "p" / "smiling").glob("expr/*"))
    # Re-rendering committed tri-plane paintings from their deltas: new frames fine, stills refused before any work.
    refused = CliRunner().invoke(main, ["render", str(out), "--expressions", "happiness", "--no-gallery"])
    assert refused.exit_code == 1 and "the triplane-tiny backbone has no expression codes" in refused.output
    again = CliRunner().invoke(main, ["render", str(out), "--only", "b,smiling", "--frames", "4", "--no-gallery"])
    assert again.exit_code == 0 and "2 re-rendered, 0 failed" in again.output, again.output
    turntable = [f for f in store.commits({"b"})["b"].files if f.startswith("renders/turntable/")]
    assert len(turntable) == 4
