"""The config schema: leaves and option names derived from field metadata, strict JSON, text round trips."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest

from artmator.model.fields import setting
from artmator.pipeline.config_schema import (SettingsError, decode, encode, format_text, leaves, parse_text,
                                             with_values)
from artmator.pipeline.settings import JobSettings, paper_settings, quick_settings
from tests.pipeline.settings_cases import other_value

LEAVES = leaves(JobSettings)


def _all_fields(cls, path=()):
    """Every init field of a dataclass tree, nested dataclasses included."""
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield (*path, f.name), f
        if dataclasses.is_dataclass(hints[f.name]) and not hasattr(hints[f.name], "from_spec"):
            yield from _all_fields(hints[f.name], (*path, f.name))


def test_every_field_of_the_settings_tree_is_documented_and_reaches_a_leaf():
    names = {leaf.name for leaf in LEAVES}
    for path, f in _all_fields(JobSettings):
        assert f.metadata.get("help"), f"{'.'.join(path)} has no help text"
        # every field is a leaf itself or the section above leaves
        assert ".".join(path) in names or any(n.startswith(".".join(path) + ".") for n in names), path
    assert len(LEAVES) > 50 and len({leaf.dest for leaf in LEAVES}) == len(LEAVES)
    flags = [f for leaf in LEAVES for f in leaf.flags]
    assert len(flags) == len(set(flags))


def test_option_names_follow_prefixes_and_aliases():
    by_name = {leaf.name: leaf.flags for leaf in LEAVES}
    assert by_name["tune.stage1.steps"] == ("--stage1-steps",)              # tune's fields are unprefixed
    assert by_name["tune.seed"] == ("--seed",) and by_name["backbone.seed"] == ("--backbone-seed",)
    assert by_name["render.turntable_frames"] == ("--render-turntable-frames", "--frames")
    assert by_name["tune.encoders.clip"] == ("--encoders-clip", "--clip")
    assert by_name["tune.stage2.augment.n_crops"] == ("--stage2-augment-n-crops",)
    assert by_name["render.resolution"] == ("--render-resolution",) and by_name["tune.resolution"] == ("--resolution",)


def test_result_flags_mark_what_does_not_change_outputs():
    volatile = {leaf.name for leaf in LEAVES if not leaf.result}
    assert volatile == {"backbone.weights", "device", "paintings_per_batch", "render.frame_batch",
                        "render.chunk_rays", "backbone.compile", "backbone.compile_backend",
                        "tune.stage1.checkpoint_rays", "tune.stage2.checkpoint_rays"}


@dataclass(frozen=True)
class Undocumented:
    a: int = 1


@dataclass(frozen=True)
class Inner:
    steps: int = setting(1, "steps")


@dataclass(frozen=True)
class Clash:
    one: Inner = setting(factory=Inner, help="one", prefix="")
    steps: int = setting(2, "steps again")


@dataclass(frozen=True)
class BadAlias:
    one: Inner = setting(factory=Inner, help="one", aliases={"stepz": "s"})


def test_a_field_without_help_or_a_clashing_option_is_refused():
    with pytest.raises(TypeError, match="Undocumented.a has no help"):
        leaves(Undocumented)
    with pytest.raises(TypeError, match="option --steps would set both one.steps and steps"):
        leaves(Clash)
    with pytest.raises(TypeError, match="one.stepz, which is not a setting"):
        leaves(BadAlias)
    with pytest.raises(TypeError, match="every setting needs a help text"):
        setting(1)


@pytest.mark.parametrize("settings", [quick_settings(), paper_settings(), JobSettings()])
def test_json_round_trip_is_exact(settings):
    assert decode(JobSettings, json.loads(json.dumps(encode(settings)))) == settings


def test_unknown_keys_are_errors_naming_the_setting_and_the_close_match():
    d = encode(quick_settings())
    d["tune"]["stage1"]["stpes"] = 5
    with pytest.raises(SettingsError, match=r"unknown setting 'tune.stage1.stpes': did you mean 'steps'\?"):
        decode(JobSettings, d)
    with pytest.raises(SettingsError, match="unknown setting 'colour'"):
        decode(JobSettings, {"colour": "red"})


@pytest.mark.parametrize("path, value, message", [
    (("tune", "stage1", "steps"), "sixty", "tune.stage1.steps: 'sixty' is not an integer"),
    (("tune", "stage1", "steps"), True, "tune.stage1.steps: True is not an integer"),
    (("tune", "stage1", "steps"), 1.5, "tune.stage1.steps: 1.5 is not an integer"),
    (("face_metrics",), 1, "face_metrics: 1 is not true or false"),
    (("device",), 3, "device: 3 is not a string"),
    (("device",), None, "device: null is not allowed"),
    (("tune", "stage2", "objective"), "clip", r"tune.stage2.objective: 'clip' is not one of \['artmator', 'pti'\]"),
    (("image", "background"), [1, 2], r"image.background: expected 3 values"),
    (("render", "expressions"), "happiness", "render.expressions: expected a list"),
    (("tune", "stage1"), 5, "tune.stage1: expected an object of LocalizeConfig settings"),
    (("tune", "delta", "rank"), 0, "tune.delta: DeltaConfig.rank must be an integer >= 1"),
])
def test_mistyped_or_refused_values_are_errors_naming_the_setting(path, value, message):
    d = encode(quick_settings())
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SettingsError, match=message):
        decode(JobSettings, d)


def test_ints_are_numbers_and_partial_documents_keep_the_base():
    base = quick_settings()
    s = decode(JobSettings, {"tune": {"stage1": {"lr": 1}}, "render": {"fps": 24}}, base=base)
    assert s.tune.stage1.lr == 1.0 and isinstance(s.tune.stage1.lr, float) and s.render.fps == 24.0
    assert s.tune.stage1.steps == base.tune.stage1.steps and s.render.resolution == base.render.resolution
    assert decode(JobSettings, {}) == JobSettings()                     # without a base: the class defaults


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.name)
def test_command_line_text_round_trips_for_every_leaf(leaf):
    for value in (leaf.get(quick_settings()), other_value(leaf, leaf.get(quick_settings()))):
        if leaf.repeated:
            assert tuple(parse_text(leaf.item, format_text(leaf.item, v)) for v in value) == value
        elif not leaf.is_flag:
            assert parse_text(leaf.hint, format_text(leaf.hint, value)) == value


def test_text_errors_and_none():
    leaf = {leaf.name: leaf for leaf in LEAVES}
    assert parse_text(leaf["tune.resolution"].hint, "none") is None
    with pytest.raises(ValueError, match="'x' is not an integer"):
        parse_text(leaf["tune.resolution"].hint, "x")
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_text(leaf["backbone.weights"].item, "generator")
    with pytest.raises(ValueError, match="expected 2 comma-separated values"):
        parse_text(leaf["tune.stage2.augment.scale"].hint, "0.5")


def test_with_values_replaces_nested_leaves_and_names_a_refused_one():
    s = with_values(quick_settings(), {("tune", "stage1", "steps"): 7, ("render", "fps"): 5.0})
    assert s.tune.stage1.steps == 7 and s.render.fps == 5.0 and s.tune.stage2 == quick_settings().tune.stage2
    with pytest.raises(SettingsError, match=r"rank must be an integer >= 1.*\(set by tune.delta.rank\)"):
        with_values(quick_settings(), {("tune", "delta", "rank"): 0})
