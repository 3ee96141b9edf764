"""What a config dataclass tree says about its settings: leaves, option names, strict JSON, the result view.

Config dataclasses declare every field with `model.fields.setting` (help text, whether it changes results,
option-name prefix and aliases). Everything else is derived here, so a setting is declared once:

- `leaves(cls)`: the settable values of a tree, each with its path (`tune.stage1.steps`), type, help and option
  names (`--stage1-steps`); the click options (`pipeline.options`) are built from them;
- `decode(cls, data)`: strict JSON -> dataclasses (an unknown key or a value of the wrong type is an error that
  names the setting), optionally on top of a base object (a partial JSON changes only what it names);
- `encode(obj, result_only=True)`: the JSON view that decides results (what the resume hash covers);
- `parse_text` / `format_text`: a leaf's command-line text <-> value.

Leaf kinds, by type hint: `bool` (--name/--no-name); `int`, `float`, `str`; `Literal[...]` (one of the choices);
`X | None` (X, or `none`); `tuple[X, ...]` and `tuple[X, Y]` (comma-separated); a dataclass with `from_spec` /
`to_spec` (one spec string, e.g. ClipConfig's 'ViT-B-32:openai'); `tuple[D, ...]` of such dataclasses and
`tuple[tuple[str, str], ...]` (KEY=VALUE) are repeated options. Any other dataclass field is a section whose
fields are leaves under its prefix.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from artmator.model.fields import ALIASES, CHOICES, HELP, METAVAR, PREFIX, RESULT


class SettingsError(ValueError):
    """A setting that does not exist, does not fit its type, or is refused by its config; the message names it.
    `names`: the settings (or options) whose values were refused, when known."""

    def __init__(self, message: str, names: tuple[str, ...] = ()):
        super().__init__(message)
        self.message, self.names = message, tuple(names)

    def __str__(self) -> str:
        return self.message + (f" (set by {', '.join(self.names)})" if self.names else "")


@dataclass(frozen=True)
class Leaf:
    """One settable value of a config tree."""

    path: tuple[str, ...]           # ("tune", "stage1", "steps")
    hint: Any                       # its resolved type hint
    default: Any                    # the value in a default-constructed tree
    help: str
    result: bool                    # False: never changes outputs (left out of the resume hash)
    flags: tuple[str, ...]          # option names, the derived one first ("--stage1-steps", aliases...)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None   # allowed values a registry decides (backbone presets)

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def dest(self) -> str:
        """A Python identifier for this leaf (click parameter names must be identifiers)."""
        return "__".join(self.path)

    @property
    def repeated(self) -> bool:
        """Given once per item on a command line (CLIP encoders, weight parts), not comma-separated."""
        return _repeated_item(self.hint) is not None

    @property
    def variadic(self) -> bool:
        """A comma-separated list of any length (expressions, ids), optional or not; on a command line it may also
        be repeated."""
        inner, _ = _optional(self.hint)
        args = typing.get_args(inner)
        return typing.get_origin(inner) is tuple and args[1:] == (Ellipsis,) and not self.repeated

    @property
    def item(self) -> Any:
        """The type one command-line value parses to: the item type of a repeated leaf, else the leaf's."""
        return _repeated_item(self.hint) or self.hint

    @property
    def is_flag(self) -> bool:
        return self.hint is bool

    def get(self, obj: Any) -> Any:
        for name in self.path:
            obj = getattr(obj, name)
        return obj


# ------------------------------------------------------------------------------------------------ leaves

def leaves(cls: type) -> list[Leaf]:
    """Every leaf of the config tree `cls`, in declaration order; option names are checked to be unique."""
    out = _leaves(cls, (), (), {}, True)
    seen: dict[str, str] = {}
    for leaf in out:
        for flag in leaf.flags:
            if flag in seen:
                raise TypeError(f"option {flag} would set both {seen[flag]} and {leaf.name}: give one of them a "
                                "prefix or alias (model.fields.setting)")
            seen[flag] = leaf.name
    return out


def _leaves(cls, path, prefix, aliases: Mapping[str, str], result: bool) -> list[Leaf]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in aliases:
        head = key.split(".", 1)[0]
        if head not in fields:
            raise TypeError(f"alias {aliases[key]!r} names {'.'.join((*path, key))}, which is not a setting")
    out = []
    for name, f in fields.items():
        if HELP not in f.metadata:
            raise TypeError(f"{cls.__name__}.{name} has no help text: declare it with model.fields.setting")
        hint = hints[name]
        leaf_result = result and f.metadata.get(RESULT, True)
        if _is_section(hint):
            own = f.metadata.get(PREFIX, name)
            inner = {k.split(".", 1)[1]: v for k, v in aliases.items() if k.startswith(name + ".")}
            inner.update(f.metadata.get(ALIASES, {}))
            out += _leaves(hint, (*path, name), (*prefix, own) if own else prefix, inner, leaf_result)
            continue
        flag = "--" + "-".join((*prefix, name)).replace("_", "-")
        extra = tuple("--" + a for a in [aliases.get(name)] if a and "--" + a != flag)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # may be MISSING
        choices = tuple(f.metadata[CHOICES]()) if CHOICES in f.metadata else None
        out.append(Leaf((*path, name), hint, default, f.metadata[HELP], leaf_result, (flag, *extra),
                        f.metadata.get(METAVAR), choices))
    return out


def _optional(hint) -> tuple[Any, bool]:
    """(X, True) for `X | None`, (hint, False) otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _is_spec(hint) -> bool:
    """A dataclass set as one text spec on a command line (it defines from_spec and to_spec)."""
    return dataclasses.is_dataclass(hint) and hasattr(hint, "from_spec") and hasattr(hint, "to_spec")


def _is_section(hint) -> bool:
    return dataclasses.is_dataclass(hint) and isinstance(hint, type) and not _is_spec(hint)


def _repeated_item(hint):
    """The item type of a repeated leaf (tuple[Spec, ...] or tuple[tuple[str, str], ...]), else None."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and (_is_spec(args[0]) or _is_pair(args[0])):
            return args[0]
    return None


def _is_pair(hint) -> bool:
    return typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, str)


# ----------------------------------------------------------------------------------------- JSON decoding

def decode(cls: type, data: Any, base: Any = None, where: str = "") -> Any:
    """Strict JSON data -> an instance of `cls`. Keys left out keep `base`'s values (the class defaults when base
    is None). Unknown keys, values of the wrong type and values the dataclass refuses raise SettingsError."""
    return _decode(cls, data, base, where)


def _decode(hint, data, base, where: str):
    hint, optional = _optional(hint)
    if data is None:
        if optional:
            return None
        raise SettingsError(f"{_at(where)}null is not allowed, expected {_describe(hint)}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(data, Mapping):
            raise SettingsError(f"{_at(where)}expected an object of {hint.__name__} settings, got {data!r}")
        hints = typing.get_type_hints(hint)
        names = [f.name for f in dataclasses.fields(hint) if f.init]
        for key in data:
            if key not in names:
                raise SettingsError(_unknown(_join(where, key), key, names, hint))
        values = {} if base is None else {n: getattr(base, n) for n in names}
        for key, value in data.items():
            values[key] = _decode(hints[key], value, None if base is None else getattr(base, key), _join(where, key))
        try:
            return hint(**values)
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{_at(where)}{exc}") from None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if data not in args or type(data) is not type(args[args.index(data)]):
            raise SettingsError(f"{_at(where)}{data!r} is not one of {list(args)}")
        return data
    if origin is tuple:
        if not isinstance(data, (list, tuple)):
            raise SettingsError(f"{_at(where)}expected a list, got {data!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            items = [args[0]] * len(data)
        elif len(data) != len(args):
            raise SettingsError(f"{_at(where)}expected {len(args)} values, got {len(data)}: {data!r}")
        else:
            items = list(args)
        return tuple(_decode(t, v, None, f"{where}[{i}]") for i, (t, v) in enumerate(zip(items, data)))
    if hint is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if hint in (bool, int, float, str):
        if not isinstance(data, hint) or (hint is int and isinstance(data, bool)):
            raise SettingsError(f"{_at(where)}{data!r} is not {_describe(hint)}")
        return data
    raise TypeError(f"{_at(where)}settings of type {hint!r} are not supported (config_schema)")


def _unknown(name: str, key: str, names: list[str], cls: type) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown setting {name!r}: {hint}{cls.__name__} has {', '.join(names)}"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _describe(hint) -> str:
    inner, optional = _optional(hint)
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if inner in words:
        text = words[inner]
    elif typing.get_origin(inner) is Literal:
        text = "one of " + ", ".join(map(repr, typing.get_args(inner)))
    elif typing.get_origin(inner) is tuple:
        text = "a list"
    elif dataclasses.is_dataclass(inner):
        text = f"{inner.__name__} settings"
    else:
        text = repr(inner)
    return text + (" or none" if optional else "")


# ----------------------------------------------------------------------------------------- JSON encoding

def encode(obj: Any, result_only: bool = False) -> Any:
    """A config tree as plain JSON data; `result_only` leaves out the fields declared `result=False`."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name), result_only) for f in dataclasses.fields(obj)
                if f.init and not (result_only and not f.metadata.get(RESULT, True))}
    if isinstance(obj, (tuple, list)):
        return [encode(v, result_only) for v in obj]
    return obj


def with_values(obj: Any, values: Mapping[tuple[str, ...], Any],
                label: Callable[[tuple[str, ...]], str] = ".".join) -> Any:
    """`obj` with the leaves at these paths replaced (`dataclasses.replace` at each level, so every
    `__post_init__` check runs); a value the config refuses raises SettingsError naming it through `label`."""
    if not values:
        return obj
    groups: dict[str, dict[tuple[str, ...], Any]] = {}
    direct: dict[str, Any] = {}
    for path, value in values.items():
        if len(path) == 1:
            direct[path[0]] = value
        else:
            groups.setdefault(path[0], {})[path[1:]] = value
    changes = dict(direct)
    for name, inner in groups.items():
        changes[name] = with_values(getattr(obj, name), inner, lambda p, n=name: label((n, *p)))
    try:
        return dataclasses.replace(obj, **changes)
    except (ValueError, TypeError) as exc:
        raise SettingsError(str(exc), tuple(label(p) for p in values)) from None


# ----------------------------------------------------------------------------------- command-line text

NONE_WORDS = ("none", "null")


def parse_text(hint, text: str) -> Any:
    """A value of type `hint` from its command-line text (the inverse of `format_text`)."""
    inner, optional = _optional(hint)
    if optional and text.strip().lower() in NONE_WORDS:
        return None
    if _is_spec(inner):
        return inner.from_spec(text)
    if _is_pair(inner):
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {text!r}")
        return key, value
    origin, args = typing.get_origin(inner), typing.get_args(inner)
    if origin is tuple:
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_text(args[0], p) for p in parts if p)        # "a,,b," is a, b
        if len(parts) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values, got {text!r}")
        return tuple(parse_text(t, p) for t, p in zip(args, parts))
    if origin is Literal:
        if text not in args:
            raise ValueError(f"{text!r} is not one of {', '.join(map(str, args))}")
        return text
    if inner is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError(f"{text!r} is not true or false")
        return lowered in ("true", "1", "yes", "on")
    if inner is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if inner is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if inner is str:
        return text
    raise TypeError(f"settings of type {hint!r} have no command-line form")


def format_text(hint, value: Any) -> str:
    """The command-line text of `value` (one item of a repeated leaf formats as one occurrence)."""
    inner, optional = _optional(hint)
    if value is None:
        return "none"
    if _is_spec(inner):
        return value.to_spec()
    if _is_pair(inner):
        return f"{value[0]}={value[1]}"
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        items = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        return ",".join(format_text(t, v) for t, v in zip(items, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def metavar(hint) -> str:
    """How a value of type `hint` looks in --help."""
    inner, optional = _optional(hint)
    origin, args = typing.get_origin(inner), typing.get_args(inner)
    if _is_spec(inner):
        text = "SPEC"
    elif _is_pair(inner):
        text = "KEY=VALUE"
    elif origin is tuple:
        text = f"{metavar(args[0])},..." if len(args) == 2 and args[1] is Ellipsis else ",".join(map(metavar, args))
    elif origin is Literal:
        text = "|".join(map(str, args))
    else:
        text = {int: "INT", float: "FLOAT", str: "TEXT", bool: "BOOL"}.get(inner, "VALUE")
    return text + ("|none" if optional else "")

