"""The painting flow shared by `artmator tune` and the tuning actor: task -> face and pose -> tune -> files.

`PaintingContext` is what a process loads once (backbone, loss networks, face networks on first use, default
expressions). `paint(tasks, context)` turns tasks into outcomes, one each: the painting's files (delta, renders,
result.json; `pipeline.painting`) or its one classified error. Paintings whose input is good are tuned together
in one batch; a painting that fails never stops the others. Nothing is written here: `tune` writes the files to a
folder, the actor commits them to storage.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import torch

from artmator.model.images import fetch_painting
from artmator.model.tune import PaintingInput, TunedPainting, tune_paintings
from artmator.pipeline import changes
from artmator.pipeline.config_schema import encode
from artmator.pipeline.errors import classify, with_retries
from artmator.pipeline.inputs import FaceInput, Lazy, LazyFaceAnalyzer, face_scorer, painting_input
from artmator.pipeline.layout import METADATA_COLUMNS
from artmator.pipeline.manifest import PaintingTask
from artmator.pipeline.painting import painting_files, quality_flags
from artmator.pipeline.provenance import provenance_record
from artmator.pipeline.settings import JobSettings, Models, load_models, resolve_expressions, uses_random_models
from artmator.pipeline.storage import redact_config


@dataclass
class PaintingContext:
    """What one process holds for every painting it tunes."""

    settings: JobSettings
    models: Models
    default_expressions: dict[str, torch.Tensor]          # for tasks that name none of their own
    storage_options: dict = field(default_factory=dict)
    faces: Lazy = None                                    # FaceAnalyzer, built when a row first needs it
    scorer: Lazy = None                                   # FaceScorer, built when a render is first scored
    base: dict | None = None                              # the base weights by content (`changes.base_identity`)

    def __post_init__(self):
        self.faces = self.faces or LazyFaceAnalyzer(self.settings.device)
        self.scorer = self.scorer or face_scorer(self.settings.device)

    def base_identity(self) -> dict:
        """The base weights by content, hashed on first use (a task without a driver's plan: `artmator tune`)."""
        if self.base is None:
            self.base = changes.base_identity(self.settings, self.storage_options)
        return self.base

    @property
    def random_models(self) -> bool:
        return uses_random_models(self.settings)


def load_context(settings: JobSettings, storage_options: Mapping | None = None) -> PaintingContext:
    """Load the models of `settings` once (transient storage errors retried)."""
    options = dict(storage_options or {})
    models = with_retries(lambda: load_models(settings, options))
    return context_of(settings, models, options)


def context_of(settings: JobSettings, models: Models, storage_options: Mapping | None = None) -> PaintingContext:
    """A context around models already loaded (tests and benchmarks share one load across cases)."""
    options = dict(storage_options or {})
    return PaintingContext(settings, models, resolve_expressions(models.backbone, settings.render.expressions, options),
                           options)


@dataclass
class PaintingOutcome:
    """One task's result: its files, or why it has none."""

    task: PaintingTask
    files: dict[str, bytes] | None = None                 # relative path -> bytes (no commit marker)
    error_kind: str = ""                                  # `errors.classify` kinds
    message: str = ""
    tuned: TunedPainting | None = None
    face: FaceInput | None = None
    image_sha256: str = ""                                # of the image bytes read (the `image` fingerprint)

    @property
    def ok(self) -> bool:
        return self.files is not None


def paint(tasks: list[PaintingTask], context: PaintingContext,
          progress: Callable[[str, int], None] | None = None,
          plans: Mapping[str, Mapping] | None = None) -> list[PaintingOutcome]:
    """Tune `tasks` together and render each; one outcome per task, in order. progress(stage, step) as in
    `model.tune.tune_paintings`. `plans`: {painting id: the driver's plan (`actor.wire_plan`)}, whose inputs the
    provenance record (result.json, model_card.md) repeats; a task without one is described from the context."""
    settings = context.settings
    outcomes: dict[str, PaintingOutcome] = {}
    ready: list[tuple[PaintingTask, PaintingInput, dict, FaceInput, str, bytes]] = []
    resolution = settings.tune.resolution or context.models.backbone.default_resolution
    for task in tasks:
        try:
            ready.append((task, *painting_inputs(task, context, resolution)))
        except Exception as exc:  # noqa: BLE001 - one painting's failure never stops the batch
            outcomes[task.painting_id] = PaintingOutcome(task, None, *classify(exc))
    if ready:
        try:
            tuned_all = with_retries(lambda: tune_paintings(context.models.backbone, [r[1] for r in ready],
                                                            settings.tune, context.models.encoders, progress))
        except Exception as exc:  # noqa: BLE001
            kind, message = classify(exc)
            tuned_all = []
            outcomes.update({r[0].painting_id: PaintingOutcome(r[0], None, kind, message) for r in ready})
        for (task, tune_input, expressions, face, sha256, data), tuned in zip(ready, tuned_all):
            provenance = provenance_of(task, context, (plans or {}).get(task.painting_id), sha256)
            outcome = render_outcome(task, tuned, tune_input, expressions, face, context, data, provenance)
            outcomes[task.painting_id] = replace(outcome, image_sha256=sha256)
    return [outcomes[t.painting_id] for t in tasks]


def painting_inputs(task: PaintingTask, context: PaintingContext, resolution: int
                    ) -> tuple[PaintingInput, dict[str, torch.Tensor], FaceInput, str, bytes]:
    """The tuning input of one task (its face square and pose, framed as the backbone renders faces), the
    expressions it is rendered with, the sha256 of the image bytes read and the bytes (published as a web copy)."""
    data = with_retries(lambda: fetch_painting(task.image_uri, context.storage_options))
    tune_input, face = painting_input(task, resolution, context.settings.image, context.faces, context.storage_options,
                                      context.models.backbone.face_framing, image_bytes=data)
    expressions = (context.default_expressions if task.expressions is None   # a row's wish on a backbone without
                   else resolve_expressions(context.models.backbone, task.expressions,   # stills: none, flagged
                                            context.storage_options, unsupported="skip"))
    return tune_input, expressions, face, hashlib.sha256(data).hexdigest(), data


def backbone_record(settings: JobSettings) -> dict:
    """The backbone settings a commit was made with, URIs redacted (what `artmator render` reloads)."""
    return redact_config(encode(settings.backbone))


def provenance_of(task: PaintingTask, context: PaintingContext, plan: Mapping | None, image_sha256: str) -> dict:
    """The provenance record of a task (`provenance.provenance_record`): from the driver's plan when there is
    one (the inputs its fingerprints cover), else from the context's settings and base weights."""
    if plan is None:
        plan = {"inputs": {"tune": changes.tune_inputs(task, context.settings, context.base_identity())},
                "backbone": backbone_record(context.settings)}
    return provenance_record(plan, image_sha256)


def render_outcome(task: PaintingTask, tuned: TunedPainting, tune_input: PaintingInput,
                   expressions: Mapping[str, torch.Tensor], face: FaceInput, context: PaintingContext,
                   image_bytes: bytes | None = None, provenance: Mapping | None = None) -> PaintingOutcome:
    """A tuned painting -> its files (renders, mesh, face-aware metrics, result.json, the painting's web copy,
    model card), or a numerical/render error."""
    if tuned.error:
        return PaintingOutcome(task, None, "numerical", tuned.error, tuned, face)
    broken = non_finite_delta(tuned.delta)
    if broken:  # finite losses do not prove finite weights (an overflow in the last step): never write NaN/inf
        return PaintingOutcome(task, None, "numerical", f"tuned delta tensor {broken} is not finite (NaN or inf) "
                                                        "although the losses were; no delta was written", tuned, face)
    settings, backbone = context.settings, context.models.backbone
    flags = quality_flags(tuned, context.random_models, face.pose_source)
    if task.expressions and not backbone.supports_expressions:
        flags.append("expressions_unsupported")           # the row asked for stills this backbone cannot make
    try:
        files = painting_files(backbone, tuned, settings.render, expressions, metadata(task), flags, face.as_dict(),
                               context.scorer() if settings.face_metrics else None, tune_input.image, task.extra,
                               image_bytes, provenance, settings.backbone.weights_license)
    except Exception as exc:  # noqa: BLE001
        return PaintingOutcome(task, None, *classify(exc), tuned, face)
    return PaintingOutcome(task, files, tuned=tuned, face=face)


def non_finite_delta(delta) -> str | None:
    """Name of the first update or latent tensor of `delta` holding NaN/inf, or None when all are finite."""
    if delta is None:
        return None
    for name, t in {**delta.tensors, **{f"latent.{k}": v for k, v in delta.metadata.latent.items()}}.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return repr(name)
    return None


def metadata(task: PaintingTask) -> dict:
    """The catalog metadata a painting's result.json carries."""
    return {k: getattr(task, k) for k in METADATA_COLUMNS}
