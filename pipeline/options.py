"""Click options shared by `artmator tune` and `artmator run`, turned into one `JobSettings`."""
from __future__ import annotations

import json
from dataclasses import replace
from functools import wraps

import click

from artmator.model.encoders import TINY_CLIP, ClipConfig, LpipsConfig
from artmator.model.lora import DeltaConfig
from artmator.model.registry import backbone_entry, backbone_names, weight_parts
from artmator.pipeline.settings import PRESET_SETTINGS, BackboneSettings, JobSettings

PARTS = tuple(weight_parts())                  # every registered backbone's weight parts (model.registry)


def model_options(fn):
    """Decorator adding every model/tuning option; the command receives `settings: JobSettings`."""
    options = [
        click.option("--preset", type=click.Choice(backbone_names()), default="tiny", show_default=True,
                     help="Backbone: " + "; ".join(f"'{n}' ({backbone_entry(n).description})" for n in backbone_names())
                          + "."),
        click.option("--settings", "settings_name", type=click.Choice(sorted(PRESET_SETTINGS)), default=None,
                     help="Step counts and sizes: 'quick' (CPU demo) or 'paper'. Default: quick for the small demo "
                          "presets, paper for the others."),
        click.option("--official-root", default=None, metavar="URI",
                     help="Checkout of the preset's official release (local or fsspec URI): loads all its parts "
                          "(AniFaceGAN presets)."),
        click.option("--weights-license", default="unknown", show_default=True, metavar="TEXT",
                     help="Licence of the backbone weights, as you hold them (SPDX id, URL or words); written into "
                          "every painting's model_card.md. Never guessed."),
        click.option("--head-prior/--no-head-prior", default=True, show_default=True,
                     help="A preset without weights starts from its demo prior when it has one (tiny: the "
                          "procedural 3D head); else random weights."),
        *[click.option(f"--{p.replace('_', '-')}-weights", p, default=None, metavar="URI",
                       help=f"Weights of the {p} part (.pth or .safetensors; local or s3://, gs://, https://...).")
          for p in PARTS],
        click.option("--stage1-steps", type=click.IntRange(min=0), default=None, help="Stage 1 (localization) steps."),
        click.option("--stage2-steps", type=click.IntRange(min=0), default=None, help="Stage 2 (stylization) steps."),
        click.option("--delta-mode", type=click.Choice(["lora", "full"]), default=None,
                     help="Tune low-rank adapters (default) or every generator weight (paper-exact)."),
        click.option("--rank", type=click.IntRange(min=1), default=None, help="Adapter rank (lora mode)."),
        click.option("--resolution", type=click.IntRange(min=16), default=None, help="Tuning resolution (pixels)."),
        click.option("--render-resolution", type=click.IntRange(min=16), default=None, help="Output render size."),
        click.option("--frames", type=click.IntRange(min=1), default=None, help="Turntable frames."),
        click.option("--mesh-resolution", type=click.IntRange(min=0, max=512), default=None,
                     help="Grid points per side of the mesh.glb iso-surface (default: the render resolution, at most "
                          "128); 0: no mesh."),
        click.option("--expressions", default=None, metavar="NAMES",
                     help="Comma-separated expression stills: built-in names (happiness, neutral) or .mat URIs; "
                          "default: the backbone's own (happiness for AniFaceGAN presets; none for a backbone "
                          "without expression codes, which refuses any)."),
        click.option("--clip", "clip_specs", multiple=True, metavar="MODEL[:TAG|=URI]",
                     help="CLIP image encoder(s) for L_dir, e.g. ViT-B-32:openai or ViT-B-32=s3://b/clip.safetensors; "
                          "repeat for an ensemble. 'tiny-random' = untrained tiny encoder (demo/tests)."),
        click.option("--lpips", "lpips_spec", default=None, metavar="NET[=URI]|tiny-random",
                     help="LPIPS backbone: vgg or alex, optionally =URI of torchvision weights; 'tiny-random' for demos."),
        click.option("--seed", type=int, default=None, help="Run seed (each painting derives its own)."),
        click.option("--find-faces/--no-find-faces", default=True, show_default=True,
                     help="Rows without crop/face_align are whole paintings: detect and align the face. "
                          "--no-find-faces: such images already are face crops."),
        click.option("--face-metrics/--no-face-metrics", default=True, show_default=True,
                     help="Score the renders with the pretrained face networks (result.json 'face', quality flags)."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1 ..."),
    ]
    for option in reversed(options):
        fn = option(fn)

    @wraps(fn)
    def wrapper(**kw):
        kw["settings"] = settings_from_options(kw)
        return fn(**kw)

    return wrapper


def settings_from_options(kw: dict) -> JobSettings:
    """Build the resolved settings; pops the options it consumed from `kw`."""
    preset = kw.pop("preset")
    entry = backbone_entry(preset)
    name = kw.pop("settings_name") or ("quick" if entry.demo else "paper")
    s = PRESET_SETTINGS[name](preset)
    root = kw.pop("official_root", None)
    if root and entry.weights_from_root is None:
        raise click.UsageError(f"--official-root: the {preset} preset has no official checkout layout; give "
                               f"its parts ({', '.join(entry.parts)}) with --<part>-weights")
    weights = entry.weights_from_root(root) if root else {}
    for part in PARTS:
        uri = kw.pop(part)
        if uri:
            weights[part] = uri
    backbone = BackboneSettings(preset=preset, weights=tuple(sorted(weights.items())),
                                head_prior=s.backbone.head_prior and kw.pop("head_prior") and not weights,
                                seed=s.backbone.seed, weights_license=kw.pop("weights_license") or "unknown")
    kw.pop("head_prior", None)
    tune, render = s.tune, s.render
    if (v := kw.pop("stage1_steps")) is not None:
        tune = replace(tune, stage1=replace(tune.stage1, steps=v))
    if (v := kw.pop("stage2_steps")) is not None:
        tune = replace(tune, stage2=replace(tune.stage2, steps=v))
    mode, rank = kw.pop("delta_mode"), kw.pop("rank")
    if mode or rank:
        d = tune.delta
        tune = replace(tune, delta=DeltaConfig(mode=mode or d.mode, rank=rank or d.rank, alpha=d.alpha,
                                               include_mapping=d.include_mapping, storage_dtype=d.storage_dtype))
    if (v := kw.pop("resolution")) is not None:
        tune = replace(tune, resolution=v)
    if (v := kw.pop("seed")) is not None:
        tune = replace(tune, seed=v)
    clip_specs, lpips_spec = kw.pop("clip_specs"), kw.pop("lpips_spec")
    if clip_specs:
        tune = replace(tune, encoders=replace(tune.encoders, clip=tuple(parse_clip(c) for c in clip_specs)))
    if lpips_spec:
        tune = replace(tune, encoders=replace(tune.encoders, lpips=parse_lpips(lpips_spec)))
    if (v := kw.pop("render_resolution")) is not None:
        render = replace(render, resolution=v)
    if (v := kw.pop("frames")) is not None:
        render = replace(render, turntable_frames=v)
    if (v := kw.pop("mesh_resolution")) is not None:
        if v and v < 8:
            raise click.BadParameter("must be 0 (no mesh) or at least 8", param_hint="--mesh-resolution")
        render = replace(render, mesh_resolution=v)
    if (v := kw.pop("expressions")) is not None:
        render = replace(render, expressions=tuple(e.strip() for e in v.split(",") if e.strip()))
    device = kw.pop("device") or s.device
    image = replace(s.image, find_faces=kw.pop("find_faces"))
    return replace(s, backbone=backbone, tune=tune, render=render, image=image, device=device,
                   face_metrics=kw.pop("face_metrics"))


def parse_clip(spec: str) -> ClipConfig:
    """'tiny-random' | 'MODEL' | 'MODEL:TAG' | 'MODEL=URI' | 'MODEL:TAG=URI' -> ClipConfig."""
    if spec == "tiny-random":
        return TINY_CLIP
    spec, _, uri = spec.partition("=")
    model_name, _, tag = spec.partition(":")
    return ClipConfig(model_name=model_name, pretrained=tag or "openai",
                      checkpoint_uri=uri or None)


def parse_lpips(spec: str) -> LpipsConfig:
    """'tiny-random' | 'vgg' | 'alex' | 'vgg=URI' -> LpipsConfig."""
    if spec == "tiny-random":
        return LpipsConfig(net="alex", random_backbone=True)
    net, _, uri = spec.partition("=")
    return LpipsConfig(net=net, backbone_weights_uri=uri or None)


def storage_options_option(fn):
    fn = click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
                      help="fsspec storage option for OUT, images and weights (repeatable; JSON values allowed), "
                           "e.g. client_kwargs='{\"endpoint_url\": \"http://127.0.0.1:9000\"}'.")(fn)
    fn = click.option("--endpoint-url", default=None, help="S3-compatible endpoint (MinIO, Ceph, R2 ...).")(fn)
    return fn


def parse_storage_options(pairs: tuple[str, ...], endpoint_url: str | None) -> dict:
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--storage-option")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if endpoint_url:
        options.setdefault("client_kwargs", {})["endpoint_url"] = endpoint_url
    return options
