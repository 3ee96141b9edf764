"""Resolved settings of a tuning job (shared by `artmator tune` and `artmator run`) and model loading.

`JobSettings` is the one source of the job's settings: its fields (and the config dataclasses of `model/` it
nests) are declared with `model.fields.setting`, and the command-line options, the JSON written beside outputs
(`config.json`, readable again with `--config`) and the resume hash are derived from them (`pipeline.config_schema`).
`result_hash()` covers exactly the settings declared to change results, so a rerun with the same settings skips
committed paintings, a changed one redoes them, and a different device, batch size or chunking changes nothing.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from artmator.model import Backbone, load_backbone
from artmator.model.encoders import TINY_CLIP, LpipsConfig
from artmator.model.fields import setting
from artmator.model.images import ImageConfig
from artmator.model.localize import LocalizeConfig
from artmator.model.plateau import PlateauConfig
from artmator.model.registry import backbone_entry, backbone_names
from artmator.model.render import RenderConfig
from artmator.model.stylize import StylizeConfig
from artmator.model.tune import EncoderConfig, Encoders, TuneConfig, load_encoders
from artmator.pipeline.config_schema import decode, encode


@dataclass(frozen=True)
class BackboneSettings:
    """Which generator to tune from."""

    preset: str = setting("tiny", "A registered backbone preset: 'anifacegan' (the official architecture), or a small "
                                  "demo preset for CPU demos and tests ('tiny', 'triplane-tiny').",
                          choices=backbone_names)
    weights: tuple[tuple[str, str], ...] = setting(
        (), "Weights of one part of the backbone (its Backbone.WEIGHT_PARTS; AniFaceGAN: generator, deform, vae_id, "
            "vae_exp): .pth or .safetensors, local or s3://, gs://, https://...; repeat per part. Parts not given "
            "start from the backbone seed.", result=False, metavar="PART=URI")    # by content instead: the hash takes base_hash
    head_prior: bool = setting(True, "A preset without weights starts from its demo prior when it has one (tiny: the "
                                     "procedural 3D head); else random weights. Ignored when weights are given.")
    seed: int = setting(0, "Initialisation of the backbone parts without weights.")
    weights_license: str = setting(
        "unknown", "Licence of the backbone weights, as you hold them (SPDX id, URL or words); written into every "
                   "painting's model_card.md, never guessed. Changing it refreshes the model cards only.")
    # an output (the model cards) but not the weights: the metadata fingerprint covers it (changes.metadata_inputs),
    # the tune fingerprint's base identity does not
    compile: bool = setting(False, "Run the backbone's hot paths (AniFaceGAN: each ray chunk of a render) through "
                                   "torch.compile: faster after a warm-up of a minute or more per input shape; "
                                   "pays on GPUs, less on CPUs (bench/README.md). If compiling fails, one warning "
                                   "and eager execution.", result=False)
    compile_backend: str = setting("inductor", "The torch.compile backend when compile is on.", result=False)

    def __post_init__(self):
        parts = backbone_entry(self.preset).parts                     # an unknown preset names the registered ones
        names = [p for p, _ in self.weights]
        unknown = sorted(set(names) - set(parts))
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"weights of {self.preset!r} are given per part, once each; its parts are "
                             f"{list(parts)} (got {names})")
        object.__setattr__(self, "weights", tuple(sorted(self.weights)))      # one order: equal settings compare equal
        if self.weights and self.head_prior:      # a prior only replaces missing weights: the same backbone either way
            object.__setattr__(self, "head_prior", False)

    def weight_map(self) -> dict[str, str]:
        return dict(self.weights)


@dataclass(frozen=True)
class JobSettings:
    """All settings of a tuning job. Field metadata names the command-line options: `tune`'s are unprefixed
    (`--stage1-steps`, `--seed`), the others carry their section's name (`--render-resolution`); the aliases keep
    the short names users know (`--preset`, `--frames`, `--clip`...)."""

    backbone: BackboneSettings = setting(
        factory=BackboneSettings, help="Which generator to tune from.",
        aliases={"preset": "preset", "weights": "weights", "head_prior": "head-prior",
                 "weights_license": "weights-license", "compile": "compile"})
    tune: TuneConfig = setting(
        factory=TuneConfig, help="The method: stages 1 and 2, delta, pose search, loss networks.", prefix="",
        aliases={"encoders.clip": "clip", "encoders.lpips": "lpips", "delta.rank": "rank"})
    render: RenderConfig = setting(
        factory=RenderConfig, help="What is rendered for each tuned painting.",
        aliases={"turntable_frames": "frames", "expressions": "expressions", "mesh_resolution": "mesh-resolution"})
    image: ImageConfig = setting(factory=ImageConfig, help="How painting files are decoded and fitted.",
                                 aliases={"find_faces": "find-faces"})
    device: str = setting("cpu", "cpu, cuda, cuda:1 ... (an actor uses the GPU Ray gives it).", result=False)
    paintings_per_batch: int = setting(1, "Paintings tuned together in one optimisation (each follows the updates "
                                          "it would get alone).", result=False)
    face_metrics: bool = setting(True, "Score the renders with the pretrained face networks (result.json 'face', "
                                       "quality flags).")

    def __post_init__(self):
        if self.paintings_per_batch < 1:
            raise ValueError(f"paintings_per_batch must be >= 1, got {self.paintings_per_batch}")

    def to_dict(self) -> dict:
        return encode(self)

    def result_hash(self, base_hash: str) -> str:
        """Hash of what decides outputs: the backbone's weights by content (`base_hash`) and every setting declared
        to change results (`setting(result=False)` ones are left out: device, batching, chunking, caches, URIs)."""
        view = {**encode(self, result_only=True), "base_hash": base_hash}
        return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:16]


QUICK = JobSettings(
    tune=TuneConfig(stage1=LocalizeConfig(steps=60), stage2=StylizeConfig(steps=30, lr_lora=5e-4),
                    encoders=EncoderConfig(clip=(TINY_CLIP,), lpips=LpipsConfig(net="alex", random_backbone=True)),
                    resolution=96),
    render=RenderConfig(resolution=128, turntable_frames=24),
)
"""Step counts and sizes for the offline CPU demo (random tiny encoders).

Stage 2's adapters learn at 5e-4 (not the default 2e-3): with the random LPIPS and CLIP of the demo the stage-2
losses mostly reward texture, and at 2e-3 the tiny head prior's face dissolves into noise within 30 steps
(bench/demo_faces.py: faces detected in no turntable frame). Tuning runs at 96 px, not the tiny backbone's 64: the
painting's face is framed as the demo bust frames it (0.57 of the square), and at 64 px stage 2 blurs the eyes and
mouth below what the face networks read (bench/demo_faces.py: frames with a face 0.63 at 64 px, 0.82 at 96 px;
~1.7x the tuning time).

Savings (`python -m bench.tuning savings`) are NOT in this preset: rendering the CLIP-direction views at the tiny
CLIP's 64 px and stopping stage 1 on a plateau kept LPIPS/PSNR and face detection on the quality protocol's
identities, but on the embedded demo they weakened what the expression network reads in the happiness still
(P(happy) of the oil and cameraman demo 0.26 / 0.95 -> 0.01 / 0.17, the gouache's smile no longer above its neutral
render: tests/pipeline/test_embedded_default.py failed). Enable them per run with `--stage2-clip-view-resolution 64`
and the `--stage1-early-stop-*` options."""

PAPER = JobSettings(
    backbone=BackboneSettings(head_prior=False),
    tune=TuneConfig(stage1=LocalizeConfig(steps=300, early_stop=PlateauConfig(patience=40, window=20,
                                                                              min_rel_improvement=0.005,
                                                                              min_steps=100)),
                    stage2=StylizeConfig(steps=300, early_stop=PlateauConfig(patience=40, window=20,
                                                                             min_rel_improvement=0.01,
                                                                             min_steps=60)),
                    resolution=128),
    render=RenderConfig(resolution=256, turntable_frames=36),
)
"""Paper-faithful settings for pretrained CLIP ViT-B/32 and LPIPS (GPU), plus early stopping as the upper bound
of 300 steps per stage: a painting stops once the 20-step moving mean of its loss has not fallen by 0.5 % (stage 1,
not before step 100) or 1 % (stage 2, not before step 60) in 40 steps. Chosen conservatively (stage 2's loss drops
in its first 20-30 steps; a flat 40-step span of a 20-step mean is well past that) and still to be confirmed on the
paper-settings curves of a GPU run (`bench.tuning savings`, its plateau replay). `--stage1-early-stop-patience 0
--stage2-early-stop-patience 0` runs every step as the paper does. CLIP views stay at the 128-px tuning resolution
(below ViT-B/32's 224 already)."""

PRESET_SETTINGS = {"quick": QUICK, "paper": PAPER}


def preset_settings(name: str, backbone_preset: str) -> JobSettings:
    """The named settings preset ('quick', 'paper') for a backbone preset."""
    base = PRESET_SETTINGS[name]
    return replace(base, backbone=replace(base.backbone, preset=backbone_preset))


def default_settings_name(backbone_preset: str) -> str:
    """'quick' for the small demo presets (`BackboneEntry.demo`), 'paper' for the others."""
    return "quick" if backbone_entry(backbone_preset).demo else "paper"


def quick_settings(preset: str = "tiny") -> JobSettings:
    return preset_settings("quick", preset)


def paper_settings(preset: str = "anifacegan") -> JobSettings:
    return preset_settings("paper", preset)


def settings_from_json(text: str) -> JobSettings:
    """Inverse of `json.dumps(settings.to_dict())` (how settings travel to Ray actors). Strict: an unknown key or
    a value of the wrong type is a `config_schema.SettingsError` naming the setting."""
    return decode(JobSettings, json.loads(text))


def settings_from_document(doc: Mapping, base: JobSettings) -> JobSettings:
    """Settings from a `config.json`: the one `artmator tune` writes (the settings themselves) or a run's
    `runs/<run_id>/config.json` (settings under "settings", beside facts about the run). Keys it leaves out keep
    `base`'s values."""
    return decode(JobSettings, settings_part(doc), base=base)


def settings_part(doc: object) -> Mapping:
    """The settings object of a `config.json` document (see `settings_from_document`)."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"a settings file holds a JSON object, got {type(doc).__name__}")
    return doc["settings"] if isinstance(doc.get("settings"), Mapping) else doc


def settings_json(settings: JobSettings, redact: Callable[[object], object]) -> str:
    """The resolved settings as JSON (what `config.json` holds) with every value passed through `redact`
    (`storage.redact_config`: URIs lose credentials and signatures). `--config` reads it back."""
    return json.dumps(redact(settings.to_dict()), indent=1, sort_keys=True)


@dataclass
class Models:
    """Models loaded once per process / actor."""

    backbone: Backbone
    encoders: Encoders
    device: torch.device


def load_backbone_only(settings: JobSettings, storage_options: Mapping | None = None) -> Backbone:
    """The backbone G_ori of these settings on their device (a weightless preset starts from its demo prior,
    `Backbone.demo_prior`, when it has one and `head_prior` is on)."""
    backbone = load_backbone(settings.backbone.preset, settings.backbone.weight_map(), seed=settings.backbone.seed,
                             device=torch.device(settings.device), storage_options=storage_options,
                             demo_prior=settings.backbone.head_prior)
    if settings.backbone.compile:
        backbone.set_compile(True, settings.backbone.compile_backend)
    return backbone


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


__all__ = ["BackboneSettings", "JobSettings", "Models", "PAPER", "PRESET_SETTINGS", "QUICK", "check_run_expressions",
           "default_settings_name", "load_models", "paper_settings", "preset_settings", "quick_settings",
           "resolve_expressions", "settings_from_document", "settings_from_json", "settings_json", "settings_part"]
