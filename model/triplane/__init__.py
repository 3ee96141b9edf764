"""A small EG3D-style tri-plane generator: the second, differently built backbone behind the same contract.

mapping (z -> w) -> modulated conv synthesis of three axis-aligned feature planes -> bilinear plane sampling,
averaged -> decoder MLP (density + colour) -> volume rendering along camera rays (`model.camera`).
Importing this package registers its preset ("triplane-tiny") in `model.registry`.
"""
from __future__ import annotations

from artmator.model.registry import BackboneEntry, register_backbone, seeded

PARTS = ("mapping", "generator")


def _builder(preset: str):
    def make():
        from artmator.model.triplane.config import preset_config
        from artmator.model.triplane.model import TriplaneGAN, build_parts

        config = preset_config(preset)
        return TriplaneGAN(config, build_parts(config), preset=preset)

    return seeded(make)


register_backbone("triplane-tiny", BackboneEntry(
    _builder("triplane-tiny"), PARTS,
    "a small EG3D-style tri-plane generator, random weights: CPU demo and tests; no expressions", demo=True))
