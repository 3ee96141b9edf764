"""Backbone registry: preset name -> builder. `load_backbone`, the CLI and the settings read it; nothing else names
a concrete backbone.

A builder takes (weights: {part: URI}, seed, storage_options) and returns a Backbone on the CPU in eval mode. A
backbone package registers its presets when imported; `model/__init__.py` imports the shipped ones.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from artmator.model.backbone import Backbone


@dataclass(frozen=True)
class BackboneEntry:
    """One preset: how to build it and which weight parts a user may give it."""

    build: Callable[[Mapping[str, str], int, Mapping | None], Backbone]
    parts: tuple[str, ...]
    description: str


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(name: str, entry: BackboneEntry) -> None:
    if name in _REGISTRY and _REGISTRY[name] != entry:
        raise ValueError(f"backbone preset {name!r} is already registered")
    _REGISTRY[name] = entry


def backbone_entry(name: str) -> BackboneEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; registered backbone presets: {backbone_names()}") from None


def backbone_names() -> list[str]:
    return sorted(_REGISTRY)


def weight_parts() -> list[str]:
    """Every weight part name of every registered preset (for CLI options), in first-seen order."""
    seen: dict[str, None] = {}
    for entry in _REGISTRY.values():
        seen.update(dict.fromkeys(entry.parts))
    return list(seen)
