"""The backbone registry: presets by name, their weight parts, clear errors; load_backbone goes through it."""
from __future__ import annotations

import pytest

from artmator.model import load_backbone
from artmator.model.backbone import Backbone
from artmator.model.registry import BackboneEntry, backbone_entry, backbone_names, register_backbone


def test_shipped_presets_are_registered_with_their_parts():
    assert {"anifacegan", "tiny"} <= set(backbone_names())
    assert backbone_entry("tiny").parts == ("generator", "deform", "vae_id", "vae_exp")


def test_load_backbone_builds_through_the_registry_and_declares_the_contract():
    b = load_backbone("tiny", seed=3)
    assert isinstance(b, Backbone) and b.preset == "tiny" and not b.training
    assert b.default_resolution == 64 and len(b.base_hash()) == 64
    assert b.WEIGHT_PARTS == backbone_entry("tiny").parts
    with pytest.raises(ValueError, match="unknown preset 'huge'; registered backbone presets"):
        load_backbone("huge")
    with pytest.raises(ValueError, match="unknown weight parts \\['mapping'\\]"):
        load_backbone("tiny", weights={"mapping": "x.pth"})


def test_a_preset_name_cannot_be_taken_twice():
    entry = backbone_entry("tiny")
    register_backbone("tiny", entry)                                  # the same entry again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny", BackboneEntry(entry.build, ("generator",), "another"))
