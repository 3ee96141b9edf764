"""Backbone registry: preset name -> builder. `load_backbone`, the CLI and the settings read it; nothing else names
a concrete backbone.

A builder takes a seed and returns a freshly initialised Backbone on the CPU (`load_backbone` then loads weight
parts through the backbone's own `load_weights`). A backbone package registers its presets when imported;
`model/__init__.py` imports the shipped ones.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from artmator.model.backbone import Backbone


@dataclass(frozen=True)
class BackboneEntry:
    """One preset: how to build it and what the CLI and settings may know before building it."""

    build: Callable[[int], Backbone]      # seed -> a seeded, freshly initialised backbone (CPU)
    parts: tuple[str, ...]                # the weight parts a user may give (`Backbone.WEIGHT_PARTS`)
    description: str                      # one line for `--preset` help
    demo: bool = False                    # a small preset for CPU demos and tests: runs default to quick settings
    # A checkout of the official release (local path or fsspec URI) -> {part: URI}, for `--official-root`; None
    # when the preset has no such layout.
    weights_from_root: Callable[[str], dict[str, str]] | None = None
    card: Mapping[str, str] = field(default_factory=dict)
    """Facts for each painting's model card: `citation` of the backbone, `training_data` of its official weights
    (with that data's licence) and `weights` (where they come from). Never a licence for user-supplied weights:
    those come from `--weights-license` (default unknown)."""


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


def seeded(make: Callable[[], Backbone]) -> Callable[[int], Backbone]:
    """A builder from a constructor that draws its initial weights from torch's global generator: seeds it with
    the builder's seed (restoring its state afterwards), so the weights are a function of the seed alone."""
    def build(seed: int) -> Backbone:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return make()

    return build

