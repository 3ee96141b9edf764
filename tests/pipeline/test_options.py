"""Command-line options derived from the config dataclasses: every setting has one, --config reads a config.json
back, explicit options override it, and bad values are errors that name the option or key."""
from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from artmator.model import official_weights
from artmator.pipeline.cli import main
from artmator.pipeline.config_schema import leaves, with_values
from artmator.pipeline.job import RunConfig, RunSummary
from artmator.pipeline.options import settings_options
from artmator.pipeline.prepare import PrepareConfig
from artmator.pipeline.run_command import RUN_ARGUMENTS
from artmator.pipeline.settings import JobSettings, paper_settings, quick_settings, settings_json
from artmator.pipeline.storage import OutputStore, redact_config
from tests.pipeline.settings_cases import leaf_args, other_value

LEAVES = leaves(JobSettings)


@click.command()
@settings_options
def resolved(settings: JobSettings) -> None:
    """A command that only resolves its settings (the same decorator as `run` and `tune`)."""
    click.get_current_context().obj["settings"] = settings


def parse(*args: str) -> JobSettings:
    box: dict = {}
    result = CliRunner().invoke(resolved, list(args), obj=box)
    assert result.exit_code == 0, result.output
    return box["settings"]


def fails(*args: str) -> str:
    result = CliRunner().invoke(resolved, list(args), obj={})
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return result.output


@pytest.mark.parametrize("command", ["run", "tune"])
def test_run_and_tune_have_an_option_for_every_setting(command):
    params = {p.name: p for p in main.commands[command].params}
    for leaf in LEAVES:
        assert leaf.dest in params, f"{command} has no option for {leaf.name}"
        assert set(leaf.flags) <= set(params[leaf.dest].opts), leaf.name


def test_run_and_prepare_options_come_from_their_configs():
    run_params = {p.name for p in main.commands["run"].params}
    for leaf in leaves(RunConfig):
        if leaf.path[0] not in RUN_ARGUMENTS:
            assert leaf.dest in run_params, leaf.name
    prepare_params = {p.name for p in main.commands["prepare"].params}
    assert {leaf.dest for leaf in leaves(PrepareConfig)} <= prepare_params


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.name)
def test_every_setting_is_set_by_its_option(leaf):
    value = other_value(leaf, leaf.get(quick_settings()))
    assert leaf.get(parse(*leaf_args(leaf, value))) == value
    for alias in leaf.flags[1:]:                                            # the short names users know
        args = leaf_args(leaf, value)
        args = [alias if a == leaf.flags[0] else ("--no-" + alias[2:] if a == "--no-" + leaf.flags[0][2:] else a)
                for a in args]
        assert leaf.get(parse(*args)) == value, alias


def test_the_readme_flags_keep_working():
    s = parse("--preset", "tiny", "--settings", "paper", "--clip", "tiny-random", "--lpips", "alex=/w/alex.pth",
              "--stage1-steps", "3", "--stage2-steps", "4", "--delta-mode", "full", "--rank", "2", "--resolution",
              "32", "--render-resolution", "48", "--frames", "5", "--expressions", "happiness,/m/smile.mat",
              "--seed", "7", "--device", "cpu", "--no-head-prior", "--no-find-faces", "--no-face-metrics",
              "--paintings-per-batch", "2", "--weights", "generator=/w/g.pth")
    assert (s.tune.stage1.steps, s.tune.stage2.steps, s.tune.delta.mode, s.tune.delta.rank) == (3, 4, "full", 2)
    assert (s.tune.resolution, s.render.resolution, s.render.turntable_frames, s.tune.seed) == (32, 48, 5, 7)
    assert s.render.expressions == ("happiness", "/m/smile.mat") and s.tune.encoders.lpips.net == "alex"
    assert not s.image.find_faces and not s.face_metrics and s.paintings_per_batch == 2
    assert s.backbone.weights == (("generator", "/w/g.pth"),) and s.tune.stage1.lr == paper_settings().tune.stage1.lr


def test_defaults_follow_the_backbone_preset():
    assert parse() == quick_settings()
    assert parse("--preset", "anifacegan") == paper_settings()
    assert parse("--preset", "anifacegan", "--settings", "quick") == quick_settings("anifacegan")


def test_official_root_gives_every_part_and_explicit_weights_win():
    s = parse("--preset", "anifacegan", "--official-root", "s3://b/AniFaceGAN", "--weights", "deform=/w/dif.pth")
    expected = {**official_weights("s3://b/AniFaceGAN"), "deform": "/w/dif.pth"}
    assert s.backbone.weight_map() == expected and not s.backbone.head_prior


def test_bad_values_are_errors_naming_the_option():
    assert "Invalid value for '--stage1-steps': 'sixty' is not an integer" in fails("--stage1-steps", "sixty")
    assert "No such option '--stage3-steps'" in fails("--stage3-steps", "1")
    assert "Invalid value for '--delta-rank': DeltaConfig.rank must be an integer >= 1" in fails("--rank", "0")
    assert "Invalid value for '--stage1-steps': stage 1 needs steps >= 0" in fails("--stage1-steps", "-1")
    assert "'clip' is not one of artmator, pti" in fails("--stage2-objective", "clip")
    assert "expected 3 comma-separated values" in fails("--image-background", "1,2")
    out = fails("--weights", "decoder=/w.pth")
    assert "its parts are ['generator', 'deform', 'vae_id', 'vae_exp']" in out and "'--backbone-weights'" in out
    assert "'stylegan9' is not one of anifacegan, tiny" in fails("--preset", "stylegan9")


def _every_leaf_changed(base: JobSettings) -> JobSettings:
    return with_values(base, {leaf.path: other_value(leaf, leaf.get(base)) for leaf in LEAVES})


def test_round_trip_cli_to_config_json_to_config(tmp_path):
    """Every setting given on the command line -> config.json as `tune` writes it -> --config: the same settings
    and resume hash; options given beside --config override it."""
    target = _every_leaf_changed(quick_settings())
    args = [a for leaf in LEAVES for a in leaf_args(leaf, leaf.get(target))]
    from_cli = parse(*args)
    assert from_cli == target
    config = tmp_path / "config.json"
    config.write_text(settings_json(from_cli, redact_config))
    from_file = parse("--config", str(config))
    assert from_file == from_cli and from_file.result_hash("b") == from_cli.result_hash("b")
    over = parse("--config", str(config), "--stage1-steps", "11", "--no-face-metrics")
    assert over == with_values(from_cli, {("tune", "stage1", "steps"): 11, ("face_metrics",): False})
    # the run's record (OUT/runs/<id>/config.json, written through the store like `run` does) reads back too
    store = OutputStore(str(tmp_path / "out"))
    store.write_run_config("r1", {"run_id": "r1", "config_hash": "h", "settings": from_cli.to_dict()})
    assert parse("--config", str(tmp_path / "out" / "runs" / "r1" / "config.json")) == from_cli


def test_a_partial_config_changes_only_what_it_names_and_bad_keys_are_errors(tmp_path):
    config = tmp_path / "partial.json"
    config.write_text(json.dumps({"tune": {"stage2": {"steps": 3}}, "render": {"fps": 6}}))
    s = parse("--config", str(config))
    assert s == with_values(quick_settings(), {("tune", "stage2", "steps"): 3, ("render", "fps"): 6.0})
    config.write_text(json.dumps({"tune": {"stage2": {"setps": 3}}}))
    out = fails("--config", str(config))
    assert "Invalid value for --config: unknown setting 'tune.stage2.setps': did you mean 'steps'?" in out
    config.write_text(json.dumps({"render": {"turntable_frames": "many"}}))
    assert "render.turntable_frames: 'many' is not an integer" in fails("--config", str(config))
    config.write_text(json.dumps({"backbone": ["tiny"]}))
    assert "backbone: expected an object of BackboneSettings settings" in fails("--config", str(config))
    config.write_text(json.dumps([1, 2]))
    assert "a settings file holds a JSON object, got list" in fails("--config", str(config))
    config.write_text("{not json")
    assert "is not JSON" in fails("--config", str(config))
    assert "does not exist" in fails("--config", str(tmp_path / "missing.json"))


def test_the_resume_hash_ignores_run_resources(tmp_path, monkeypatch):
    """`artmator run` as a user calls it: thread counts, actors, output folder, device, batching and chunking
    leave the settings' resume hash alone; a tuning setting changes it."""
    import artmator.pipeline.job as job

    seen: list[RunConfig] = []

    def fake_run(config: RunConfig, progress=None) -> RunSummary:           # the job itself is tested elsewhere
        seen.append(config)
        return RunSummary(config.run_id or "r", 0, 0, 0, 0, 0.0, "report", {})

    monkeypatch.setattr(job, "run", fake_run)

    def config_hash(*args: str) -> str:
        result = CliRunner().invoke(main, ["run", "m.parquet", "--no-gallery", *args])
        assert result.exit_code == 0, result.output
        return seen[-1].settings.result_hash("base")

    reference = config_hash("--out", str(tmp_path / "a"))
    assert config_hash("--out", str(tmp_path / "b"), "--threads-per-actor", "3", "--actors", "2",
                       "--cpus-per-actor", "0.5", "--gpus-per-actor", "0.25", "--max-task-retries", "1",
                       "--retry-failed", "--device", "cuda:0", "--paintings-per-batch", "4",
                       "--render-frame-batch", "2", "--render-chunk-rays", "4096") == reference
    assert seen[-1].threads_per_actor == 3 and seen[-1].actors == 2 and seen[-1].retry_failed
    assert config_hash("--out", str(tmp_path / "a"), "--stage1-steps", "61") != reference
    result = CliRunner().invoke(main, ["run", "m.parquet", "--cpus-per-actor", "0"])
    assert result.exit_code == 2 and "cpus_per_actor >= 0.1" in result.output


def test_prepare_options_reject_bad_values(tmp_path):
    result = CliRunner().invoke(main, ["prepare", "c.csv", "-o", str(tmp_path / "m.parquet"), "--min-confidence", "2"])
    assert result.exit_code == 2 and "min_confidence must be in (0, 1)" in result.output
    result = CliRunner().invoke(main, ["prepare", "c.csv", "-o", str(tmp_path / "m.parquet"), "--all-faces", "--thumb-side", "x"])
    assert result.exit_code == 2 and "'x' is not an integer" in result.output


def test_help_lists_preset_defaults():
    text = CliRunner().invoke(main, ["tune", "--help"], terminal_width=200).output
    assert "--stage1-steps INT" in text and "quick: 60, paper: 300" in text
    assert "--render-turntable-frames, --frames INT" in text and "--config FILE" in text


def test_render_and_plan_options_come_from_the_same_sources():
    """`plan` takes exactly `run`'s options; `render` takes every render setting, face metrics and the device
    (changes to what each commit recorded), and the run resources it uses."""
    from artmator.pipeline.config_schema import leaves
    from artmator.pipeline.gallery.publication import Publication

    publication = {leaf.dest for leaf in leaves(Publication)}    # how the gallery describes itself: not a plan's
    run_params = {p.name for p in main.commands["run"].params}
    plan_params = {p.name for p in main.commands["plan"].params}
    assert run_params - {"gallery", "log_level", "log_format"} - publication <= plan_params
    assert not publication & plan_params
    render_params = {p.name: p for p in main.commands["render"].params}
    gallery_params = {p.name for p in main.commands["gallery"].params}
    assert publication <= run_params and publication <= set(render_params) and publication <= gallery_params
    for leaf in LEAVES:
        if leaf.path[0] in ("render", "face_metrics", "device"):
            assert leaf.dest in render_params and set(leaf.flags) <= set(render_params[leaf.dest].opts), leaf.name
        else:
            assert leaf.dest not in render_params, leaf.name
    assert {"only", "actors", "gpus_per_actor", "threads_per_actor", "progress_every_s"} <= set(render_params)
    assert "--progress-every" in render_params["progress_every_s"].opts


def test_render_refuses_bad_changes_before_any_work(tmp_path):
    result = CliRunner().invoke(main, ["render", str(tmp_path), "--frames", "0", "--no-gallery"])
    assert result.exit_code == 2 and "Invalid value for '--render-turntable-frames'" in result.output, result.output
    result = CliRunner().invoke(main, ["render", str(tmp_path), "--render-psi", "x", "--no-gallery"])
    assert result.exit_code == 2 and "'x' is not a number" in result.output


def test_recorded_render_inputs_change_only_where_told():
    from artmator.pipeline.changes import render_inputs
    from artmator.pipeline.job import recorded_render_changed

    recorded = render_inputs(None, quick_settings())
    assert "frame_batch" not in recorded["render"] and "chunk_rays" not in recorded["render"]   # speed only
    changed = recorded_render_changed(recorded, {("render", "turntable_frames"): 5, ("face_metrics",): False,
                                                 ("render", "expressions"): ("neutral",)})
    assert changed["render"] == {**recorded["render"], "turntable_frames": 5}
    assert changed["expressions"] == ["neutral"] and changed["face_metrics"] is False
    assert recorded_render_changed(recorded, {}) == recorded


def test_optional_lists_and_presets_without_an_official_layout():
    assert parse("--expressions", "none").render.expressions is None          # the backbone's own stills
    assert parse("--expressions", "").render.expressions == ()                 # no stills
    assert parse("--expressions", "happiness,", "--expressions", "neutral").render.expressions == ("happiness", "neutral")
    assert parse("--preset", "triplane-tiny") == quick_settings("triplane-tiny")   # a demo preset: quick settings
    out = fails("--preset", "triplane-tiny", "--official-root", "/checkout")
    assert "Invalid value for --official-root: the triplane-tiny preset has no official checkout layout" in out
