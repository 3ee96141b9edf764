"""Every benchmark at toy size (1-2 identities, 32 px, a step or two) writing to tmp_path, so they don't rot.

The numbers are meaningless at this size; the tests check that each command runs end to end and writes its
JSON + Markdown results.
"""
from __future__ import annotations

import json

import pytest


def _written(tmp_path, name: str) -> dict:
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.md").read_text().startswith(f"# {name}")
    assert data["rows"] and data["environment"]["torch"]
    return data


def test_quality_smoke(tmp_path):
    from bench import quality

    quality.main(["--identities", "1", "--views", "3", "--resolution", "32", "--stage1-steps", "1",
                  "--stage2-steps", "1", "--out-dir", str(tmp_path), "--name", "q"])
    rows = _written(tmp_path, "q")["rows"]
    assert rows[0]["method"] == quality.CEILING and "psnr_novel" not in rows[0]   # the teacher: face metrics only
    assert [r["method"] for r in rows][3:] == list(quality.METHODS)
    for r in rows[1:]:
        assert 0 <= r["ssim_novel"] <= 1 and r["psnr_novel"] > 0 and r["lpips_frontal"] >= 0
    for r in rows:                                      # face metrics (pretrained face-api nets) on every row
        assert 0 <= r["detected_fraction"] <= 1 and r["teacher_identity_pairs"].endswith("/2")
        assert r["teacher_identity"] is None or -1 <= r["teacher_identity"] <= 1
        assert len(r["faces_per_identity"]) == 1


def test_quality_masked_metrics_ignore_background():
    import torch

    from bench.quality import masked_metrics

    a = torch.zeros(1, 3, 32, 32)
    b = a.clone()
    b[..., :16] = 1.0                                   # differs only on the left half
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 16:] = True                               # the face is the right half
    m = masked_metrics(b, a, mask, lambda x, y: (x - y).abs().flatten(1).mean(1))
    assert m["lpips"].item() == 0 and m["ssim"].item() == pytest.approx(1.0) and m["psnr"].item() > 100


def test_quality_face_summary_means_over_what_exists():
    from bench.quality import face_summary
    from artmator.model.faces.metrics import FaceMetrics

    per = [{"metrics": FaceMetrics(1.0, 0.95, 0.9, 4.0), "teacher_identity": [0.9, None]},
           {"metrics": FaceMetrics(0.5, None, None, 12.0), "teacher_identity": [0.7, 0.8]}]
    row = face_summary(per)
    assert row["detected_fraction"] == 0.75 and row["identity_consistency"] == 0.95
    assert row["identity_consistency_n"] == 1 and row["likeness_n"] == 1 and row["pose_error_deg"] == 8.0
    assert row["teacher_identity"] == pytest.approx(0.8) and row["teacher_identity_pairs"] == "3/4"
    assert row["face_flags"] == {"no_face_in_renders": 1, "pose_mismatch": 1}


def test_diversity_smoke(tmp_path):
    from bench import diversity

    diversity.main(["--identities", "3", "--yaws", "0", "--resolution", "32", "--stage1-steps", "1",
                    "--stage2-steps", "1", "--out-dir", str(tmp_path)])
    rows = _written(tmp_path, "diversity_tiny_cpu")["rows"]
    assert rows[0]["ratio_to_base"] == 1.0 and rows[1]["mean_pairwise_lpips"] > 0


def test_perf_smoke(tmp_path):
    from bench import perf

    # aot_eager: torch.compile's real capture without a C++ compiler (the GPU script uses inductor)
    perf.main(["--configs", "tiny:32", "--repeats", "1", "--out-dir", str(tmp_path), "--name", "p",
               "--precisions", "fp32", "bf16", "--compile", "fp32", "--compile-backend", "aot_eager"])
    rows = _written(tmp_path, "p")["rows"]
    assert [(r["precision"], r["compile"]) for r in rows] == [("fp32", False), ("bf16", False), ("fp32", True)]
    row = rows[0]
    assert row["gflop_per_step"] > 0 and row["ratio_to_matmul"] > 0 and row["cpu_ratio_to_matmul"] > 0
    assert sum(row[f"% {k}"] for k in perf.PARTS) == pytest.approx(100, abs=1)
    assert row["max_abs_diff_vs_fp32"] == 0                       # fp32 eager is the yardstick itself
    assert 0 < rows[1]["max_abs_diff_vs_fp32"] < 1 and rows[2]["max_abs_diff_vs_fp32"] < 1e-4
    assert row["peak_memory_mb"] > 0 and row["checkpoint_rays"] is None
    # the timers are removed again: a plain render still works and is not instrumented
    import artmator.model.anifacegan.rays as rays
    assert rays.make_rays.__name__ == "make_rays"


def test_perf_with_checkpointed_rays(tmp_path):
    from bench import perf

    perf.main(["--configs", "tiny:32", "--repeats", "1", "--out-dir", str(tmp_path), "--name", "c",
               "--checkpoint-rays", "128"])
    [row] = _written(tmp_path, "c")["rows"]
    assert row["checkpoint_rays"] == 128 and row["gflop_per_step"] > 0 and row["peak_memory_mb"] > 0


def test_perf_rows_for_hit_slots_and_every_slot(tmp_path):
    from bench import perf

    perf.main(["--configs", "tiny:32", "--repeats", "1", "--out-dir", str(tmp_path), "--name", "s",
               "--slots", "hits", "all"])
    hits, every = _written(tmp_path, "s")["rows"]
    assert (hits["slots"], every["slots"]) == ("hits", "all")
    # the head prior leaves most slots empty: evaluating them all is the same step with more matmul work
    assert every["gflop_per_step"] > 1.3 * hits["gflop_per_step"]


def test_official_needs_a_checkout_of_the_official_code(tmp_path, capsys):
    # The side-by-side run itself needs the official repository (never part of this project): bench/README.md.
    from bench import official

    with pytest.raises(SystemExit):
        official.main(["--official-dir", str(tmp_path)])
    assert "not a checkout of the official AniFaceGAN repository" in capsys.readouterr().err


def test_official_import_shims_only_stand_in_for_what_is_missing(monkeypatch):
    import importlib.util
    import sys

    from bench import official

    for name in official.UNUSED_IMPORTS:
        monkeypatch.delitem(sys.modules, name, raising=False)
    installed = importlib.util.find_spec("matplotlib") is not None
    added = official.import_shims()
    assert added == ([] if installed else ["matplotlib", "matplotlib.pyplot"])
    for name in added:
        assert sys.modules[name].__name__ == name
        monkeypatch.delitem(sys.modules, name)


def test_tuning_smoke(tmp_path):
    from bench import tuning

    tuning.main(["batch", "--ks", "1", "2", "--stage1-steps", "1", "--stage2-steps", "1", "--resolution", "32",
                 "--out-dir", str(tmp_path)])
    assert [r["k"] for r in _written(tmp_path, "tuning_batch_tiny_cpu")["rows"]] == [1, 2]
    tuning.main(["delta", "--paintings", "1", "--stage1-steps", "1", "--stage2-steps", "1", "--resolution", "32",
                 "--out-dir", str(tmp_path)])
    rows = _written(tmp_path, "tuning_delta_tiny_cpu")["rows"]
    assert rows[-1]["ratio"] < 0.01                     # the official preset's default delta is < 1 % of G


def test_tuning_savings_smoke(tmp_path):
    from bench import tuning

    tuning.main(["savings", "--identities", "2", "--views", "3", "--stage1-steps", "4", "--stage2-steps", "4",
                 "--resolution", "32", "--clip-view-resolution", "16", "--stage1-stop", "1", "1", "0.9", "2",
                 "--stage2-stop", "1", "1", "0.9", "3", "--no-face-metrics", "--out-dir", str(tmp_path),
                 "--name", "s"])
    tables = json.loads((tmp_path / "s.json").read_text())["tables"]
    rows = {r["config"]: r for r in tables["savings"]}
    assert list(rows) == ["unreduced", "early stop", "CLIP views at 16 px", "early stop + CLIP views at 16 px"]
    assert rows["unreduced"]["stage1_steps"] == "4.0 / 4" and rows["early stop"]["stage2_steps"] == "3.0 / 3"
    assert rows["CLIP views at 16 px"]["stage2_step_gflop"] < rows["unreduced"]["stage2_step_gflop"]
    assert rows["early stop"]["tflop_per_painting"] < rows["unreduced"]["tflop_per_painting"]
    assert [r["init"] for r in tables["stage-1 latent re-use"]][0].startswith("own random")
    assert {r["stage"] for r in tables["plateau replay"]} == {"stage 1", "stage 2"}


def test_painting_cost_smoke(tmp_path):
    from bench import painting_cost

    painting_cost.main(["--ks", "1", "2", "--measure-steps", "1", "1", "--resolution", "32", "--frames", "2",
                        "--render-resolution", "32", "--no-warmup", "--slots", "all", "--out-dir", str(tmp_path),
                        "--name", "c"])
    written = json.loads((tmp_path / "c.json").read_text())
    assert written["settings"]["slots"] == "all"
    assert written["facts"]["hit_fraction"] == 1                        # every slot evaluated
    rows = written["tables"]["per painting"]
    assert [r["k"] for r in rows] == [1, 2]
    for r in rows:
        assert r["total_s"] == pytest.approx(r["stage1_s"] + r["stage2_s"] + r["renders_s"])
        assert r["tflop_per_painting"] > 0 and r["night_8"] == pytest.approx(8 * r["night_1"], abs=8)


def test_render_smoke(tmp_path):
    from bench import render

    render.main(["--preset", "tiny", "--resolutions", "32", "--repeats", "1", "--out-dir", str(tmp_path)])
    _written(tmp_path, "render_tiny_cpu")


@pytest.mark.timeout(120)
def test_scale_smoke(tmp_path):
    from bench import scale

    scale.main(["--rows", "200", "--paintings", "20", "--out-dir", str(tmp_path)])
    rows = {r["what"]: r for r in _written(tmp_path, "scale_cpu")["rows"]}
    assert rows["validate_manifest"]["detail"] == "0 problems"
    assert rows["scan(): listing of commits/ (every fingerprint, no marker read)"]["detail"] == "ok"
    assert rows["committed(): listing + every marker read"]["n"] == 20
    assert rows["plan, nothing changed (manifest read, image stamps listed, scan, decide)"]["detail"] == "ok"
    assert rows["plan, every title changed (manifest read, image stamps listed, scan, decide)"]["detail"] == "ok"


@pytest.mark.timeout(240)
def test_pipeline_overhead_smoke(tmp_path):
    from bench import pipeline_overhead

    pipeline_overhead.main(["--paintings", "1", "--stage1-steps", "1", "--stage2-steps", "1",
                            "--render-resolution", "32", "--frames", "2", "--out-dir", str(tmp_path)])
    row = _written(tmp_path, "pipeline_overhead_cpu")["rows"][0]
    assert row["same_ids_committed"] and row["run_total"] > 0


def test_mesh_smoke(tmp_path):
    from bench import mesh

    mesh.main(["--identities", "1", "--mesh-resolutions", "24", "--frames", "2", "--render-resolution", "24",
               "--out-dir", str(tmp_path), "--name", "m"])
    doc = _written(tmp_path, "m")
    [row] = doc["tables"]["by grid"]
    assert row["grid"] == 24 and row["faces"] > 100 and row["glb_kb"] > 1
    assert 0.5 < row["iou"] <= 1 and row["psnr_db"] > 10       # the head prior's mesh sits on its renders
    assert (tmp_path / "m_compare.png").is_file()
    [morph] = doc["tables"]["expression morph targets"]
    assert morph["expression"] == "happiness" and morph["max_shift"] > 0 and morph["target_kb"] > 0
    assert 0.5 < morph["iou_morphed"] <= 1 and (tmp_path / "m_happiness_compare.png").is_file()


@pytest.mark.timeout(240)
def test_pipeline_overhead_on_dedicated_cores(tmp_path):
    import os

    from bench import pipeline_overhead

    before = os.sched_getaffinity(0)
    pipeline_overhead.main(["--paintings", "1", "--stage1-steps", "1", "--stage2-steps", "1", "--render-resolution",
                            "32", "--frames", "2", "--out-dir", str(tmp_path), "--work-cores", "1",
                            "--system-cores", "0"])
    result = _written(tmp_path, "pipeline_overhead_cpu")
    assert result["rows"][0]["actors_pinned"] == 1 and result["rows"][0]["same_ids_committed"]
    assert result["environment"]["work_cores"] == "1" and result["environment"]["threads_per_actor"] == 1
    assert os.sched_getaffinity(0) == before
