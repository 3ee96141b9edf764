"""artmator's model package: backbones (AniFaceGAN, a tri-plane generator), rendering, losses and the 3DArtmator
tuning stages. This module is the composition root: it imports the shipped backbone packages, which register
their presets; generic code finds them through `model.registry` and `load_backbone`."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from artmator.model.anifacegan.checkpoints import official_weights
from artmator.model.anifacegan.config import PRESETS, AniFaceGANConfig, RenderSettings
from artmator.model.anifacegan.expressions import load_expression
from artmator.model.anifacegan.model import AniFaceGAN
from artmator.model import triplane  # noqa: F401  (registers "triplane-tiny")
from artmator.model.backbone import Backbone, Latent, RenderResult
from artmator.model.registry import backbone_entry, backbone_names
from artmator.model.weights import WeightsError

__all__ = [
    "AniFaceGAN", "AniFaceGANConfig", "Backbone", "Latent", "PRESETS", "RenderResult", "RenderSettings",
    "WeightsError", "backbone_names", "load_backbone", "load_expression", "official_weights",
]


def load_backbone(preset: str = "anifacegan", weights: Mapping[str, str] | None = None, seed: int = 0, *,
                  device: str | torch.device = "cpu", storage_options: Mapping | None = None,
                  demo_prior: bool = False) -> Backbone:
    """Build a registered backbone preset (`model.registry`) and load any given weight parts strictly.

    preset: a registered name (`backbone_names()`): "anifacegan" (official dimensions and render settings),
    "tiny" (same code, small widths), "triplane-tiny" (a small EG3D-style tri-plane generator).
    weights: part name (`Backbone.WEIGHT_PARTS`; AniFaceGAN: "generator", "deform", "vae_id", "vae_exp") ->
    local path or fsspec URI of a .pth or .safetensors file; parts not given are initialised from `seed`.
    demo_prior: with no weights, start from the preset's demo prior (`Backbone.demo_prior`) when it has one.
    """
    entry = backbone_entry(preset)
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(entry.parts))
    if unknown:
        raise ValueError(f"unknown weight parts {unknown}; parts of {preset!r} are {list(entry.parts)}")
    backbone = entry.build(seed)
    prior = backbone.demo_prior() if demo_prior and not weights else None
    backbone.load_weights(dict(prior()) if prior is not None else weights, storage_options)
    return backbone.to(device).eval()
