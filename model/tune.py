"""The whole 3DArtmator method for a batch of paintings: (pose search) -> stage 1 -> stage 2 -> deltas + metrics.

This is the Python API the `artmator tune` command and the pipeline's tuning actor share. K paintings are tuned
together: stacked latents in stage 1, one low-rank adapter per painting (batched matmul) in stage 2. Every
painting's random draws for its initial latent and adapter come from its own seed (derived from the run seed
and the painting id), so a painting starts identically whether it is tuned alone or in a batch.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from artmator.model.backbone import Backbone, Latent
from artmator.model.delta import Delta, DeltaMetadata, apply_delta, painting_delta
from artmator.model.encoders import ClipConfig, LpipsConfig, load_clips, load_lpips
from artmator.model.fields import setting
from artmator.model.localize import LocalizeConfig, PoseSearchConfig, localize, search_pose
from artmator.model.lora import DeltaConfig, attach_adapters, trainable_parameters
from artmator.model.metrics import psnr
from artmator.model.stylize import StylizeConfig, stylize


@dataclass(frozen=True)
class EncoderConfig:
    """The frozen networks the losses use: CLIP image encoder(s) for L_dir and LPIPS for L_cr / L_spa."""

    clip: tuple[ClipConfig, ...] = setting((ClipConfig(),), "CLIP image encoder(s) for L_dir; with several, L_dir "
                                                            "is averaged over them.")
    lpips: LpipsConfig = setting(factory=LpipsConfig, help="LPIPS network for L_cr (stage 1) and L_spa (stage 2).")

    def __post_init__(self):
        if not self.clip:
            raise ValueError("the style-directional loss needs at least one CLIP encoder")


@dataclass(frozen=True)
class TuneConfig:
    """Everything that decides a painting's result (its hash keys resume: same config, same outputs)."""

    stage1: LocalizeConfig = setting(factory=LocalizeConfig, help="Stage 1: localization of the painting's latent.")
    stage2: StylizeConfig = setting(factory=StylizeConfig, help="Stage 2: stylization of the generator.")
    delta: DeltaConfig = setting(factory=DeltaConfig, help="How the stage-2 update is parameterised and stored.")
    pose_search: PoseSearchConfig = setting(factory=PoseSearchConfig, help="Pose search for rows without a pose.")
    encoders: EncoderConfig = setting(factory=EncoderConfig, help="The frozen networks the losses use.")
    use_localization: bool = setting(True, "Ablation switch: off = stage 2 from a random latent "
                                           "('w/o localization').")
    resolution: int | None = setting(None, "Tuning resolution in pixels (none: the backbone's training "
                                           "resolution).")
    seed: int = setting(0, "Run seed; each painting derives its own from it and its id.")

    def __post_init__(self):
        if self.resolution is not None and self.resolution < 16:
            raise ValueError(f"the tuning resolution must be >= 16 pixels or none, got {self.resolution}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def hash(self) -> str:
        """A short stable hash of every setting (what a committed result is keyed by)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Encoders:
    """Loaded once per process/actor and shared by every painting it tunes."""

    clip: torch.nn.Module
    lpips: torch.nn.Module


def load_encoders(config: EncoderConfig, device: str | torch.device = "cpu", seed: int = 0) -> Encoders:
    return Encoders(clip=load_clips(list(config.clip), device=device, seed=seed),
                    lpips=load_lpips(config.lpips, device=device, seed=seed))


@dataclass(frozen=True)
class PaintingInput:
    painting_id: str
    image: torch.Tensor                  # (1, 3, R, R) in [-1, 1] at the tuning resolution
    yaw_deg: float | None = None         # None: estimated by the coarse pose search
    pitch_deg: float | None = None


@dataclass
class TunedPainting:
    painting_id: str
    delta: Delta | None                  # None when tuning failed (see `error`)
    yaw_deg: float
    pitch_deg: float
    pose_estimated: bool
    losses: dict[str, list[float]]       # "stage1" and the stage-2 terms ("total", "dir", "spa" | "pti"), per step
    timings: dict[str, float]            # seconds: "pose_search", "stage1", "stage2", "total" (batch wall time)
    metrics: dict[str, float]            # reference-view LPIPS/PSNR after stage 1 and after stage 2
    error: str | None = None             # e.g. a non-finite loss; the painting then has no delta
    steps: dict[str, int] | None = None  # optimizer steps the painting used: "stage1", "stage2" (early stopping
                                         # makes them fewer than the settings' counts)

    @property
    def latent(self) -> Latent:
        return self.delta.metadata.latent


def painting_seed(run_seed: int, painting_id: str) -> int:
    """A painting's own seed: independent of which other paintings share its batch."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}/{painting_id}".encode()).digest()[:6], "little")


def tune_paintings(backbone: Backbone, paintings: Sequence[PaintingInput], config: TuneConfig, encoders: Encoders,
                   progress: Callable[[str, int], None] | None = None) -> list[TunedPainting]:
    """Tune K paintings together. `backbone` is G_ori and is never modified.

    progress(stage, step) is called after each optimisation step ("stage1" / "stage2").
    """
    check_paintings(paintings, config, backbone)
    backbone.requires_grad_(False)
    device = next(backbone.parameters()).device
    K = len(paintings)
    seeds = [painting_seed(config.seed, p.painting_id) for p in paintings]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    reference = torch.cat([p.image for p in paintings]).to(device)                     # (K, 3, R, R)
    t0 = time.perf_counter()

    poses, estimated, inits = _poses(backbone, paintings, reference, config, encoders, gens)
    yaw = torch.tensor([p[0] for p in poses], device=device)
    pitch = torch.tensor([p[1] for p in poses], device=device)
    t_pose = time.perf_counter()

    init = {k: torch.cat([i[k] for i in inits]) for k in inits[0]}                     # (K, D) each
    if config.use_localization:
        s1 = localize(backbone, reference, yaw, pitch, encoders.lpips, config.stage1, gens[0], init=init,
                      on_step=_cb(progress, "stage1"))
        latent, s1_curve, s1_failed, s1_steps = s1.latent, s1.losses, s1.failed_step, s1.steps_used
    else:
        latent, s1_curve, s1_failed, s1_steps = init, torch.empty(0, K), [None] * K, [0] * K
    t_s1 = time.perf_counter()
    metrics1 = reference_metrics(backbone, latent, reference, yaw, pitch, encoders.lpips)

    tuned, s2 = _stage2(backbone, latent, reference, yaw, pitch, config, encoders, seeds, progress)
    t_s2 = time.perf_counter()
    timings = {"pose_search": t_pose - t0, "stage1": t_s1 - t_pose, "stage2": t_s2 - t_s1, "total": t_s2 - t0,
               "batch_size": float(K)}

    results = []
    for k, p in enumerate(paintings):
        latent_k = {n: v[k:k + 1].detach().cpu() for n, v in latent.items()}
        # A painting's curves end at its own stop (the batch may have run on for the others).
        steps = {"stage1": s1_steps[k], "stage2": s2.steps_used[k]}
        losses = {"stage1": s1_curve[:steps["stage1"], k].tolist(),
                  **{n: c[:steps["stage2"], k].tolist() for n, c in s2.losses.items()}}
        error = _numerical_error(s1_failed[k], s2.failed_step[k])
        delta = None
        metrics = {"lpips_stage1": metrics1["lpips"][k], "psnr_stage1": metrics1["psnr"][k]}
        if error is None:
            meta = DeltaMetadata(base_sha256=backbone.base_hash(), preset=backbone.preset, config=config.delta,
                                 latent=latent_k, yaw_deg=poses[k][0], pitch_deg=poses[k][1], seed=seeds[k],
                                 resolved_config=json.dumps(config.to_dict(), sort_keys=True))
            delta = painting_delta(tuned[k if config.delta.mode == "full" else 0], 0 if config.delta.mode == "full" else k, meta)
            g_trn = apply_delta(backbone, delta)
            m2 = reference_metrics(g_trn, {n: v.to(device) for n, v in latent_k.items()}, reference[k:k + 1],
                                   yaw[k:k + 1], pitch[k:k + 1], encoders.lpips)
            metrics |= {"lpips_ref": m2["lpips"][0], "psnr_ref": m2["psnr"][0]}
        results.append(TunedPainting(p.painting_id, delta, poses[k][0], poses[k][1], estimated[k], losses, timings,
                                     metrics, error, steps))
    return results


def check_paintings(paintings: Sequence[PaintingInput], config: TuneConfig, backbone: Backbone) -> None:
    """Validate a batch before any compute, with actionable messages."""
    if not paintings:
        raise ValueError("tune_paintings needs at least one painting")
    ids = [p.painting_id for p in paintings]
    if len(set(ids)) != len(ids):
        raise ValueError(f"painting ids in one batch must be unique, got {ids}")
    size = paintings[0].image.shape
    for p in paintings:
        if p.image.dim() != 4 or p.image.shape[:2] != (1, 3) or p.image.shape[-1] != p.image.shape[-2]:
            raise ValueError(f"{p.painting_id}: image must be (1, 3, R, R), got {tuple(p.image.shape)}")
        if p.image.shape != size:
            raise ValueError(f"{p.painting_id}: all images of a batch need the same size; got "
                             f"{tuple(p.image.shape)} and {tuple(size)}")
        if (p.yaw_deg is None) != (p.pitch_deg is None):
            raise ValueError(f"{p.painting_id}: give both yaw and pitch, or neither (pose search)")


def _poses(backbone, paintings, reference, config, encoders, gens):
    poses, estimated, inits = [], [], []
    for k, p in enumerate(paintings):
        if p.yaw_deg is None:
            yaw, pitch, init = search_pose(backbone, reference[k:k + 1], encoders.lpips, config.pose_search,
                                           config.stage1, gens[k])
            poses.append((yaw, pitch)), estimated.append(True), inits.append(init)
        else:
            poses.append((float(p.yaw_deg), float(p.pitch_deg))), estimated.append(False)
            inits.append(backbone.sample_latent(1, gens[k]))
    return poses, estimated, inits


def _stage2(backbone, latent, reference, yaw, pitch, config: TuneConfig, encoders: Encoders, seeds, progress):
    """Adapters for all K paintings in one generator (lora), or one full copy per painting (full)."""
    from artmator.model.stylize import StylizeResult

    step_gen = torch.Generator().manual_seed(seeds[0])
    if config.delta.mode == "lora":
        module = attach_adapters(backbone.tunable(), config.delta, len(seeds), seeds)
        result = stylize(backbone, backbone.with_tunable(module), list(trainable_parameters(module)), latent,
                         reference, yaw, pitch, encoders.clip, encoders.lpips, config.stage2, config.stage2.lr_lora,
                         step_gen, on_step=_cb(progress, "stage2"))
        return [module], result
    modules, parts = [], []
    for k, s in enumerate(seeds):
        module = attach_adapters(backbone.tunable(), config.delta, 1, [s])
        lat_k = {n: v[k:k + 1] for n, v in latent.items()}
        parts.append(stylize(backbone, backbone.with_tunable(module), list(trainable_parameters(module)), lat_k,
                             reference[k:k + 1], yaw[k:k + 1], pitch[k:k + 1], encoders.clip, encoders.lpips,
                             config.stage2, config.stage2.lr_full, step_gen, on_step=_cb(progress, "stage2")))
        modules.append(module)
    # One run per painting: early stopping may end them at different steps; pad the shorter curves with NaN
    # (each painting's curve is cut at its own step count afterwards).
    runs = max(len(r.losses[n]) for r in parts for n in r.losses) if parts[0].losses else 0
    losses = {n: torch.cat([torch.nn.functional.pad(r.losses[n], (0, 0, 0, runs - len(r.losses[n])), value=float("nan"))
                            for r in parts], dim=1) for n in parts[0].losses}
    return modules, StylizeResult(losses, [r.failed_step[0] for r in parts], [r.steps_used[0] for r in parts])


@torch.no_grad()
def reference_metrics(backbone: Backbone, latent: Latent, reference, yaw, pitch, lpips_fn) -> dict[str, list[float]]:
    """LPIPS and PSNR of the render at each painting's own pose against the painting: lists of K floats."""
    image = backbone.render_latent(latent, yaw, pitch, reference.shape[-1]).image
    return {"lpips": lpips_fn(image, reference).tolist(), "psnr": psnr(image, reference).tolist()}


def _numerical_error(stage1_step: int | None, stage2_step: int | None) -> str | None:
    if stage1_step is not None:
        return f"non-finite loss in stage 1 at step {stage1_step}; no delta was written"
    if stage2_step is not None:
        return f"non-finite loss in stage 2 at step {stage2_step}; no delta was written"
    return None


def _cb(progress, stage: str):
    return None if progress is None else (lambda step: progress(stage, step))
