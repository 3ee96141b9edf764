"""Resolved settings of a tuning job (shared by `artmator tune` and `artmator run`) and model loading.

Everything that changes a painting's result is in `JobSettings`; its `result_hash()` keys commit markers so a
rerun with the same settings skips committed paintings and a changed setting redoes them.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from artmator.model import Backbone, load_backbone
from artmator.model.registry import backbone_entry
from artmator.model.encoders import TINY_CLIP, LpipsConfig
from artmator.model.images import ImageConfig
from artmator.model.localize import LocalizeConfig
from artmator.model.render import RenderConfig
from artmator.model.stylize import StylizeConfig
from artmator.model.tune import EncoderConfig, Encoders, TuneConfig, load_encoders


@dataclass(frozen=True)
class BackboneSettings:
    """Which generator to tune from."""

    preset: str = "tiny"                              # a registered preset (`artmator.model.registry`)
    weights: tuple[tuple[str, str], ...] = ()         # (part, URI) for the preset's parts (Backbone.WEIGHT_PARTS)
    head_prior: bool = True                           # no weights: start from the preset's demo prior, if any
    seed: int = 0                                     # initialisation of parts without weights
    weights_license: str = "unknown"                  # licence of the weights, as the user states it (model cards)

    def weight_map(self) -> dict[str, str]:
        return dict(self.weights)


@dataclass(frozen=True)
class JobSettings:
    """All settings of a tuning job; `device` and batching do not change results and are not hashed."""

    backbone: BackboneSettings = field(default_factory=BackboneSettings)
    tune: TuneConfig = field(default_factory=TuneConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    device: str = "cpu"                               # "cpu", "cuda", "cuda:1" ...
    paintings_per_batch: int = 1                      # paintings tuned together in one optimisation
    face_metrics: bool = True                         # score renders with the pretrained face networks

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def result_hash(self, base_hash: str) -> str:
        """Hash of what decides outputs: backbone weights (by content), tuning, rendering and image settings."""
        d = self.to_dict()
        d["backbone"].pop("weights")                  # URIs may move; the content hash is what matters
        for volatile in ("device", "paintings_per_batch"):
            d.pop(volatile)
        d["base_hash"] = base_hash
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def quick_settings(preset: str = "tiny") -> JobSettings:
    """Step counts and sizes for the offline CPU demo (tiny preset, random tiny encoders).

    Stage 2's adapters learn at 5e-4 (not the default 2e-3): with the random LPIPS and CLIP of the demo the
    stage-2 losses mostly reward texture, and at 2e-3 the tiny head prior's face dissolves into noise within
    30 steps (bench/demo_faces.py: faces detected in no turntable frame). Tuning runs at 96 px, not the tiny
    backbone's 64: the painting's face is framed as the demo bust frames it (0.57 of the square), and at 64 px
    stage 2 blurs the eyes and mouth below what the face networks read (bench/demo_faces.py: frames with a face
    0.63 at 64 px, 0.82 at 96 px; ~1.7x the tuning time)."""
    return JobSettings(
        backbone=BackboneSettings(preset=preset),
        tune=TuneConfig(stage1=LocalizeConfig(steps=60), stage2=StylizeConfig(steps=30, lr_lora=5e-4),
                        encoders=EncoderConfig(clip=(TINY_CLIP,), lpips=LpipsConfig(net="alex", random_backbone=True)),
                        resolution=96),
        render=RenderConfig(resolution=128, turntable_frames=24),
    )


def paper_settings(preset: str = "anifacegan") -> JobSettings:
    """Paper-faithful settings for the official backbone with pretrained CLIP ViT-B/32 and LPIPS (GPU)."""
    return JobSettings(
        backbone=BackboneSettings(preset=preset, head_prior=False),
        tune=TuneConfig(stage1=LocalizeConfig(steps=300), stage2=StylizeConfig(steps=300), resolution=128),
        render=RenderConfig(resolution=256, turntable_frames=36),
    )


def settings_from_json(text: str) -> JobSettings:
    """Inverse of `json.dumps(settings.to_dict())` (how settings travel to Ray actors and run folders)."""
    return _from_dict(JobSettings, json.loads(text))


def _from_dict(cls, data):
    """Rebuild a (nested, frozen) dataclass from plain JSON data using its type hints."""
    import dataclasses
    import typing

    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} settings {unknown}")
        return cls(**{k: _from_dict(hints[k], v) for k, v in data.items()})
    origin, args = typing.get_origin(cls), typing.get_args(cls)
    if origin is tuple:
        item_types = args[:1] * len(data) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_from_dict(t, v) for t, v in zip(item_types, data))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        if data is None:
            return None
        for t in args:
            if t is not type(None):
                try:
                    return _from_dict(t, data)
                except (TypeError, ValueError):
                    continue
        raise ValueError(f"settings value {data!r} fits none of {[getattr(t, '__name__', t) for t in args]}")
    if dataclasses.is_dataclass(cls) is False and isinstance(cls, type) and cls in (int, float, str, bool):
        if cls is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if not isinstance(data, cls) or (cls is int and isinstance(data, bool)):
            raise ValueError(f"settings value {data!r} is not a {cls.__name__}")
    return data


def settings_json(settings: JobSettings, redact) -> str:
    """The resolved settings as JSON with weight URIs passed through `redact` (no credentials written)."""
    d = settings.to_dict()
    d["backbone"]["weights"] = [[p, redact(u)] for p, u in d["backbone"]["weights"]]
    for clip in d["tune"]["encoders"]["clip"]:
        if clip.get("checkpoint_uri"):
            clip["checkpoint_uri"] = redact(clip["checkpoint_uri"])
    lp = d["tune"]["encoders"]["lpips"]
    if lp.get("backbone_weights_uri"):
        lp["backbone_weights_uri"] = redact(lp["backbone_weights_uri"])
    return json.dumps(d, indent=1, sort_keys=True)


PRESET_SETTINGS = {"quick": quick_settings, "paper": paper_settings}


@dataclass
class Models:
    """Models loaded once per process / actor."""

    backbone: Backbone
    encoders: Encoders
    device: torch.device


def load_backbone_only(settings: JobSettings, storage_options: Mapping | None = None) -> Backbone:
    """The backbone G_ori of these settings on their device (a weightless preset starts from its demo prior,
    `Backbone.demo_prior`, when it has one and `head_prior` is on)."""
    return load_backbone(settings.backbone.preset, settings.backbone.weight_map(), seed=settings.backbone.seed,
                         device=torch.device(settings.device), storage_options=storage_options,
                         demo_prior=settings.backbone.head_prior)


def load_models(settings: JobSettings, storage_options: Mapping | None = None) -> Models:
    """Load the backbone (G_ori) and the loss networks on the settings' device."""
    device = torch.device(settings.device)
    backbone = load_backbone_only(settings, storage_options)
    encoders = load_encoders(settings.tune.encoders, device=device, seed=settings.tune.seed)
    return Models(backbone=backbone, encoders=encoders, device=device)


def uses_random_models(settings: JobSettings) -> bool:
    """True when any network is untrained (no backbone weights, random LPIPS or CLIP): results are not art."""
    enc = settings.tune.encoders
    return (not settings.backbone.weights) or enc.lpips.random_backbone or any(
        c.pretrained is None and not c.checkpoint_uri for c in enc.clip)


def resolve_expressions(backbone: Backbone, names: Sequence[str] | None, storage_options: Mapping | None = None,
                        *, unsupported: str = "error") -> dict[str, torch.Tensor]:
    """Expression names or files -> {display name: the backbone's code}; a file is named by its stem.

    None: the backbone's default stills (`Backbone.default_expressions`; none for a backbone without expression
    codes). Names on such a backbone: `unsupported="error"` raises `ExpressionError` saying so (what a run's own
    `--expressions` gets, at the edge); `"skip"` gives none (a manifest row's wish: the painting is still tuned
    and rendered, flagged `expressions_unsupported`).
    """
    names = backbone.default_expressions if names is None else names
    if names and not backbone.supports_expressions and unsupported == "skip":
        return {}
    out = {}
    for spec in names:
        name = spec.rsplit("/", 1)[-1].rsplit(".", 1)[0] if ("/" in spec or "." in spec) else spec
        out[name] = backbone.load_expression(spec, storage_options)
    return out


def check_run_expressions(settings: JobSettings, storage_options: Mapping | None = None) -> None:
    """Refuse, before any work, a run whose own expressions (`RenderConfig.expressions`) its backbone cannot
    render or that do not resolve (`ExpressionError`). Builds the preset's architecture only (no weights read)."""
    if settings.render.expressions:
        backbone = backbone_entry(settings.backbone.preset).build(settings.backbone.seed)
        resolve_expressions(backbone, settings.render.expressions, storage_options)


__all__ = ["BackboneSettings", "JobSettings", "Models", "PRESET_SETTINGS", "check_run_expressions", "load_models",
           "quick_settings", "paper_settings", "resolve_expressions", "settings_from_json", "replace"]
