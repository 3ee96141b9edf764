"""click options derived from the config dataclasses (`pipeline.config_schema`), and the storage options.

`settings_options` gives a command every `JobSettings` leaf as an option (`--stage1-steps`, `--render-fps`, ...)
plus where settings start from: `--settings quick|paper` (a preset), `--config FILE` (a `config.json` written by
`tune` or `run`) and `--official-root` (the official checkout's four weight files). Options given explicitly
override the file, which overrides the preset. `config_options(cls)` does the same for a flat config
(`PrepareConfig`, the `RunConfig` resources). No option is declared by hand here.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import wraps
from typing import Any

import click
from click.core import ParameterSource

from artmator.model.registry import backbone_entry
from artmator.pipeline.config_schema import (Leaf, SettingsError, format_text, leaves, metavar, parse_text,
                                             with_values)
from artmator.pipeline.settings import (PRESET_SETTINGS, JobSettings, default_settings_name, preset_settings,
                                        settings_from_document, settings_part)

SETTINGS_LEAVES = leaves(JobSettings)
WEIGHTS = ("backbone", "weights")
PRESET = ("backbone", "preset")


class LeafType(click.ParamType):
    """A leaf's command-line text -> its value (errors name the option through click)."""

    def __init__(self, leaf: Leaf):
        self.leaf = leaf
        self.name = "|".join(leaf.choices) if leaf.choices else leaf.metavar or metavar(leaf.item)

    def get_metavar(self, param, ctx=None) -> str:
        return self.name

    def convert(self, value: Any, param, ctx) -> Any:
        if not isinstance(value, str):
            return value
        try:
            parsed = parse_text(self.leaf.item, value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if self.leaf.choices is not None and parsed not in self.leaf.choices:
            self.fail(f"{value!r} is not one of {', '.join(self.leaf.choices)}", param, ctx)
        return parsed


def leaf_option(leaf: Leaf, show_default: str | bool = False) -> Callable:
    """The click option of one leaf. Its default is 'not given' (None), so a given value is told apart from the
    base settings it overrides by click's parameter source, not by comparing values."""
    if leaf.is_flag:
        decls = [f"{f}/--no-{f[2:]}" for f in leaf.flags]
        return click.option(*decls, leaf.dest, default=None, help=leaf.help, show_default=show_default)
    many = leaf.repeated or leaf.variadic
    return click.option(*leaf.flags, leaf.dest, type=LeafType(leaf), multiple=many, default=None,
                        help=leaf.help + (" Repeatable." if many else ""), show_default=show_default)


def given_values(ctx: click.Context, kw: dict, leaves_: list[Leaf]) -> dict[tuple[str, ...], Any]:
    """{leaf path: value} of the leaves given on the command line (or by env/default map); consumes their kwargs."""
    out = {}
    for leaf in leaves_:
        value = kw.pop(leaf.dest)
        if ctx.get_parameter_source(leaf.dest) not in (ParameterSource.DEFAULT, None):
            if leaf.variadic:                        # each occurrence is a comma-separated list: all of them, in order
                lists = [v for v in value if v is not None]                   # ("none" alone: the optional's None)
                value = tuple(item for occurrence in lists for item in occurrence) if lists else None
            out[leaf.path] = tuple(value) if leaf.repeated else value
    return out


def flag_label(leaves_: list[Leaf]) -> Callable[[tuple[str, ...]], str]:
    by_path = {leaf.path: leaf.flags[0] for leaf in leaves_}
    return lambda path: by_path.get(path, ".".join(path))


def _preset_defaults(leaf: Leaf) -> str:
    """'quick: 60, paper: 300' (or one value when both presets agree) for --help."""
    if leaf.path == PRESET:
        return "tiny"
    values = {name: leaf.get(s) for name, s in PRESET_SETTINGS.items()}
    texts = {name: _default_text(leaf, v) for name, v in values.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return ", ".join(f"{k}: {v}" for k, v in texts.items())


def _default_text(leaf: Leaf, value: Any) -> str:
    if leaf.is_flag:
        return "on" if value else "off"
    if leaf.repeated:
        return " ".join(format_text(leaf.item, v) for v in value) or "none"
    return format_text(leaf.hint, value)


# ------------------------------------------------------------------------------------------ JobSettings

def settings_options(fn):
    """Decorator adding every `JobSettings` option; the command receives `settings: JobSettings`."""
    for leaf in reversed(SETTINGS_LEAVES):
        fn = leaf_option(leaf, _preset_defaults(leaf))(fn)
    fn = click.option("--official-root", default=None, metavar="URI",
                      help="Checkout of the preset's official release (local or fsspec URI): weights of all its "
                           "parts (AniFaceGAN presets; explicit --weights win).")(fn)
    fn = click.option("--settings", "settings_name", type=click.Choice(sorted(PRESET_SETTINGS)), default=None,
                      help="Settings preset the options start from: 'quick' (CPU demo) or 'paper'. Default: quick "
                           "for the small demo backbones, paper for the others.")(fn)
    fn = click.option("--config", "config_file", default=None, metavar="FILE",
                      help="A config.json written by `artmator tune` or `artmator run` (OUT/runs/<id>/config.json): "
                           "start from its settings; options given here override them. Keys it leaves out keep "
                           "the preset's values.")(fn)

    @wraps(fn)
    def wrapper(**kw):
        ctx = click.get_current_context()
        given = given_values(ctx, kw, SETTINGS_LEAVES)
        doc = _read_config(kw.pop("config_file"), kw)
        kw["settings"] = resolve_settings(given, doc, kw.pop("settings_name"), kw.pop("official_root"))
        return fn(**kw)

    return wrapper


def setting_overrides(sections: tuple[str, ...], *, into: str = "changes"):
    """Decorator adding the `JobSettings` options under `sections` (e.g. "render", "face_metrics"), without
    defaults: the command receives `into`: {leaf path: value} of the options given, to change recorded settings
    with (`artmator render`: everything else stays as committed)."""
    own = [leaf for leaf in SETTINGS_LEAVES if leaf.path[0] in sections]

    def decorate(fn):
        for leaf in reversed(own):
            fn = leaf_option(leaf)(fn)

        @wraps(fn)
        def wrapper(**kw):
            kw[into] = given_values(click.get_current_context(), kw, own)
            return fn(**kw)

        return wrapper

    return decorate


def resolve_settings(given: Mapping[tuple[str, ...], Any], doc: Mapping | None = None, settings_name: str | None = None,
                     official_root: str | None = None) -> JobSettings:
    """Preset (by name, or the default for the backbone preset) <- the config file <- options given."""
    given = dict(given)
    try:
        preset = given.get(PRESET) or (_document_preset(doc) if doc is not None else None) or "tiny"
        settings = preset_settings(settings_name or default_settings_name(preset), preset)
        if doc is not None:
            settings = settings_from_document(doc, settings)
    except (SettingsError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--config" if doc is not None else "--preset") from None
    if official_root:
        entry = backbone_entry(settings.backbone.preset)
        if entry.weights_from_root is None:
            raise click.BadParameter(f"the {settings.backbone.preset} preset has no official checkout layout; give "
                                     f"its parts ({', '.join(entry.parts)}) with --weights PART=URI",
                                     param_hint="--official-root")
        given[WEIGHTS] = tuple({**entry.weights_from_root(official_root), **dict(given.get(WEIGHTS, ()))}.items())
    try:
        return with_values(settings, given, flag_label(SETTINGS_LEAVES))
    except SettingsError as exc:                  # "Invalid value for '--stage1-steps': stage 1 needs steps >= 0"
        raise click.BadParameter(exc.message, param_hint=list(exc.names)) from None


def _document_preset(doc: object) -> str | None:
    """The backbone preset a config document names, if any (it picks the preset settings under the file)."""
    backbone = settings_part(doc).get("backbone")
    preset = backbone.get("preset") if isinstance(backbone, Mapping) else None
    return preset if isinstance(preset, str) else None


def _read_config(uri: str | None, kw: Mapping) -> Mapping | None:
    if uri is None:
        return None
    import fsspec

    options = {}
    if "storage_option" in kw:
        options = parse_storage_options(kw.get("storage_option") or (), kw.get("endpoint_url"))
    try:
        with fsspec.open(uri, "rt", **options) as f:
            return json.load(f)
    except FileNotFoundError:
        raise click.BadParameter(f"{uri} does not exist", param_hint="--config") from None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{uri} is not JSON: {exc}", param_hint="--config") from None


# ------------------------------------------------------------------------------------------ flat configs

def config_options(cls: type, *, exclude: tuple[str, ...] = (), include: tuple[str, ...] | None = None,
                   into: str = "config", aliases: Mapping[str, str] | None = None):
    """Decorator adding an option per field of the flat config dataclass `cls` (those in `include` when given,
    less `exclude`; `aliases`: extra option names by field); the command receives `into`: {field name: value}
    of the options given."""
    aliases = dict(aliases or {})
    own = [replace(leaf, flags=(*leaf.flags, *(["--" + aliases[leaf.name]] if leaf.name in aliases else [])))
           for leaf in leaves(cls) if leaf.path[0] not in exclude and (include is None or leaf.path[0] in include)]
    if any(len(leaf.path) != 1 for leaf in own):
        raise TypeError(f"config_options takes a flat config; {cls.__name__} nests others")

    def decorate(fn):
        for leaf in reversed(own):
            fn = leaf_option(leaf, _default_text(leaf, leaf.default))(fn)

        @wraps(fn)
        def wrapper(**kw):
            given = given_values(click.get_current_context(), kw, own)
            kw[into] = {path[0]: value for path, value in given.items()}
            return fn(**kw)

        return wrapper

    return decorate


def build_config(cls: type, values: Mapping[str, Any], **fixed):
    """`cls(**fixed, **values)`, a refused value as a usage error naming its option."""
    try:
        return cls(**fixed, **values)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None


# ---------------------------------------------------------------------------------------- storage options

def storage_options_option(fn):
    fn = click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
                      help="fsspec storage option for OUT, images and weights (repeatable; JSON values allowed), "
                           "e.g. client_kwargs='{\"endpoint_url\": \"http://127.0.0.1:9000\"}'.")(fn)
    fn = click.option("--endpoint-url", default=None, help="S3-compatible endpoint (MinIO, Ceph, R2 ...).")(fn)
    return fn


def parse_storage_options(pairs: tuple[str, ...], endpoint_url: str | None) -> dict:
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--storage-option")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if endpoint_url:
        options.setdefault("client_kwargs", {})["endpoint_url"] = endpoint_url
    return options
