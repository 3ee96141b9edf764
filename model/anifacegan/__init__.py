"""AniFaceGAN (Wu et al., NeurIPS 2022) reimplemented: checkpoint-compatible with the official MIT release.

Importing this package registers its presets ("anifacegan", "tiny") in `model.registry`.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from artmator.model.registry import BackboneEntry, register_backbone

PARTS = ("generator", "deform", "vae_id", "vae_exp")


def _builder(preset: str):
    def build(weights: Mapping[str, str], seed: int, storage_options: Mapping | None):
        from artmator.model.anifacegan.checkpoints import read_part
        from artmator.model.anifacegan.config import preset_config
        from artmator.model.anifacegan.model import AniFaceGAN, build_parts

        config = preset_config(preset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = AniFaceGAN(config, build_parts(config), preset=preset)
        for part, uri in weights.items():
            names = [n for n, _ in backbone.part(part).named_parameters()]
            backbone.load_part(part, read_part(part, str(uri), names, storage_options), source=str(uri))
        return backbone

    return build


register_backbone("anifacegan", BackboneEntry(_builder("anifacegan"), PARTS,
                                              "AniFaceGAN, the official architecture (load its checkpoints)"))
register_backbone("tiny", BackboneEntry(_builder("tiny"), PARTS,
                                        "AniFaceGAN code at small widths: CPU demo and tests"))
