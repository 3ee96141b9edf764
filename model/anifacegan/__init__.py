"""AniFaceGAN (Wu et al., NeurIPS 2022) reimplemented: checkpoint-compatible with the official MIT release.

Importing this package registers its presets ("anifacegan", "tiny") in `model.registry`.
"""
from __future__ import annotations

from artmator.model.registry import BackboneEntry, register_backbone, seeded

PARTS = ("generator", "deform", "vae_id", "vae_exp")


def _builder(preset: str):
    def make():
        from artmator.model.anifacegan.config import preset_config
        from artmator.model.anifacegan.model import AniFaceGAN, build_parts

        config = preset_config(preset)
        return AniFaceGAN(config, build_parts(config), preset=preset)

    return seeded(make)


def _official(root: str) -> dict[str, str]:
    from artmator.model.anifacegan.checkpoints import official_weights

    return official_weights(root)


CITATION = ("Wu et al., \"AniFaceGAN: Animatable 3D-Aware Face Image Generation for Video Avatars\", NeurIPS 2022 "
            "(code: github.com/YueWuHKUST/AniFaceGAN, MIT)")
register_backbone("anifacegan", BackboneEntry(
    _builder("anifacegan"), PARTS, "AniFaceGAN, the official architecture (load its checkpoints)",
    weights_from_root=_official,
    card={"citation": CITATION,
          "training_data": "FFHQ (Flickr-Faces-HQ, NVIDIA), distributed under CC BY-NC-SA 4.0: the official "
                           "checkpoints were trained on it, so treat them and what they make as non-commercial "
                           "unless you hold other terms",
          "weights": "the official AniFaceGAN checkpoints, or the files given with --official-root / --*-weights"}))
register_backbone("tiny", BackboneEntry(
    _builder("tiny"), PARTS, "AniFaceGAN code at small widths: CPU demo and tests", demo=True,
    weights_from_root=_official,
    card={"citation": CITATION + "; small widths for CPU demos",
          "training_data": "none: seeded random weights, or artmator's procedural demo head prior "
                           "(model/anifacegan/demo_prior.py) fitted to an analytic head, no images",
          "weights": "seeded random, or the procedural demo head prior, unless files are given"}))
