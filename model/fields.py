"""Documented config fields: the one way a config dataclass declares a setting.

Every field of a config dataclass (`LocalizeConfig`, `RenderConfig`, `JobSettings`, ...) is declared with
`setting(...)`, which records its documentation and what it means for results in the field's metadata. The command
line options, the JSON (de)serialisation and the resume hash are all derived from that metadata
(`pipeline.config_schema`), so a new field needs no wiring anywhere else.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Metadata keys (read by `pipeline.config_schema`).
HELP = "help"            # str: what the setting does, in the user's words (also the option's --help text)
RESULT = "result"        # bool: False when changing it never changes a painting's outputs (not in the resume hash)
PREFIX = "prefix"        # str, nested configs only: the option-name prefix of its fields ("" flattens them)
ALIASES = "aliases"      # {field path inside a nested config: extra option name} (short names kept for users)
METAVAR = "metavar"      # str: how the value looks in --help (e.g. "PART=URI")
CHOICES = "choices"      # () -> values: the allowed values when a registry, not the type, decides them


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            factory: Callable[[], Any] | type | Any = dataclasses.MISSING, result: bool = True,
            prefix: str | None = None, aliases: Mapping[str, str] | None = None, metavar: str | None = None,
            choices: Callable[[], Sequence[str]] | None = None):
    """A documented dataclass field. `factory` for nested configs; `result=False` for settings that only change
    how fast or where work happens (device, batching, chunk sizes, caches), never what it produces."""
    if not help:
        raise TypeError("every setting needs a help text")
    meta: dict[str, Any] = {HELP: help, RESULT: result}
    if prefix is not None:
        meta[PREFIX] = prefix
    if aliases:
        meta[ALIASES] = dict(aliases)
    if metavar:
        meta[METAVAR] = metavar
    if choices is not None:
        meta[CHOICES] = choices
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
