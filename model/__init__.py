"""artmator's model package: the AniFaceGAN backbone, rendering, losses and the 3DArtmator tuning stages."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from artmator.model.anifacegan.checkpoints import official_weights
from artmator.model.anifacegan.config import PRESETS, AniFaceGANConfig, RenderSettings
from artmator.model.anifacegan.expressions import load_expression
from artmator.model.anifacegan.model import AniFaceGAN
from artmator.model.backbone import Backbone, Latent, RenderResult
from artmator.model.registry import backbone_entry, backbone_names
from artmator.model.weights import WeightsError

__all__ = [
    "AniFaceGAN", "AniFaceGANConfig", "Backbone", "Latent", "PRESETS", "RenderResult", "RenderSettings",
    "WeightsError", "backbone_names", "load_backbone", "load_expression", "official_weights",
]


def load_backbone(preset: str = "anifacegan", weights: Mapping[str, str] | None = None, seed: int = 0, *,
                  device: str | torch.device = "cpu", storage_options: Mapping | None = None) -> Backbone:
    """Build a registered backbone preset (`model.registry`) and load any given weight parts strictly.

    preset: "anifacegan" (official dimensions and render settings) or "tiny" (same code, small widths).
    weights: part name (AniFaceGAN: "generator", "deform", "vae_id", "vae_exp") -> local path or fsspec URI of a
    .pth or .safetensors file; parts not given are initialised from `seed` with the official initialisation.
    """
    entry = backbone_entry(preset)
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(entry.parts))
    if unknown:
        raise ValueError(f"unknown weight parts {unknown}; parts of {preset!r} are {list(entry.parts)}")
    return entry.build(weights, seed, storage_options).to(device).eval()
