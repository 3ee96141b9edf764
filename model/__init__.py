"""artmator's model package: the AniFaceGAN backbone, rendering, losses and the 3DArtmator tuning stages."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from model.anifacegan.checkpoints import official_weights, read_part
from model.anifacegan.config import PRESETS, AniFaceGANConfig, RenderSettings, preset_config
from model.anifacegan.expressions import load_expression
from model.anifacegan.model import AniFaceGAN, build_parts
from model.backbone import Backbone, Latent, RenderResult
from model.weights import WeightsError

__all__ = [
    "AniFaceGAN", "AniFaceGANConfig", "Backbone", "Latent", "PRESETS", "RenderResult", "RenderSettings",
    "WeightsError", "load_backbone", "load_expression", "official_weights",
]


def load_backbone(preset: str = "anifacegan", weights: Mapping[str, str] | None = None, seed: int = 0, *,
                  device: str | torch.device = "cpu", storage_options: Mapping | None = None) -> AniFaceGAN:
    """Build a backbone from a preset and load any given parts strictly.

    preset: "anifacegan" (official dimensions and render settings) or "tiny" (same code, small widths).
    weights: part name ("generator", "deform", "vae_id", "vae_exp") -> local path or fsspec URI of a .pth or
    .safetensors file; parts not given are initialised from `seed` with the official initialisation.
    """
    config = preset_config(preset)
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(AniFaceGAN.PARTS))
    if unknown:
        raise ValueError(f"unknown weight parts {unknown}; parts are {list(AniFaceGAN.PARTS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = AniFaceGAN(config, build_parts(config), preset=preset)
    for part, uri in weights.items():
        names = [n for n, _ in backbone.part(part).named_parameters()]
        backbone.load_part(part, read_part(part, str(uri), names, storage_options), source=str(uri))
    return backbone.to(device).eval()
