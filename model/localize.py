"""3DArtmator stage 1 — localization: find the latent z* whose render at the painting's pose matches it.

The generator G_ori stays frozen; only the latent codes are optimized (Adam, lr 2e-2) under the
content-analogous loss L_cr = LPIPS + L2. Poses come from the user; for rows without a pose, an optional
coarse grid search (beyond the paper) picks the pose whose short inversion reaches the lowest L_cr.

Batching: K paintings are optimized together as K rows of the same latent tensors. Adam is elementwise and the
per-painting losses are independent, so each painting follows exactly the updates it would get alone.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from artmator.model.backbone import Backbone, Latent
from artmator.model.fields import setting
from artmator.model.losses import content_loss
from artmator.model.plateau import EarlyStop, PlateauConfig
from artmator.model.render import autocast_context


MIN_LPIPS_SIZE = 32  # LPIPS-alex needs at least 32 px; the pose search never downsamples below it


@dataclass(frozen=True)
class LocalizeConfig:
    """Stage 1 settings (paper values by default)."""

    steps: int = setting(200, "Stage 1 (localization): Adam steps on the latent codes.")
    lr: float = setting(2e-2, "Stage 1 Adam learning rate (paper: 2e-2).")
    lambda_lpips: float = setting(1.0, "Weight of LPIPS in the content loss L_cr (paper: 1).")
    lambda_l2: float = setting(1.0, "Weight of L2 in the content loss L_cr (paper: 1).")
    early_stop: PlateauConfig = setting(factory=PlateauConfig, help="Stop a painting's stage 1 early once its "
                                        "loss is flat (off by default: every step runs).")
    autocast: bool = setting(False, "CUDA only: each step's forward (render, LPIPS) in bfloat16 autocast; "
                                    "backward and Adam stay float32. CPU always tunes in float32.")
    checkpoint_rays: int | None = setting(
        None, "Rays per gradient-checkpointed chunk of each step's render (none: all rays at once). Bounds the "
              "activation memory a step keeps for its backward pass (larger batches or resolutions on smaller "
              "GPUs) for about one more forward pass of compute; same results.", result=False)

    def __post_init__(self):
        if self.steps < 0 or self.lr <= 0:
            raise ValueError(f"stage 1 needs steps >= 0 and lr > 0 (got steps={self.steps}, lr={self.lr})")
        if self.checkpoint_rays is not None and self.checkpoint_rays < 1:
            raise ValueError(f"stage 1 checkpoint_rays must be >= 1 or none (got {self.checkpoint_rays})")


@dataclass(frozen=True)
class PoseSearchConfig:
    """Coarse pose search for paintings without a pose (beyond the paper; results are flagged as estimated)."""

    yaws_deg: tuple[float, ...] = setting((-30.0, -15.0, 0.0, 15.0, 30.0),
                                          "Candidate yaws in degrees for rows without a pose (0 = frontal).")
    pitches_deg: tuple[float, ...] = setting((-10.0, 0.0, 10.0), "Candidate pitches in degrees.")
    steps: int = setting(15, "Short inversion steps per candidate pose.")
    downsample: int = setting(2, "Search at resolution / downsample, not below 32 px (ranking needs no detail).")

    def __post_init__(self):
        if not self.yaws_deg or not self.pitches_deg or self.steps < 0 or self.downsample < 1:
            raise ValueError("pose search needs candidate yaws and pitches, steps >= 0 and downsample >= 1 (got "
                             f"yaws {self.yaws_deg}, pitches {self.pitches_deg}, steps {self.steps}, "
                             f"downsample {self.downsample})")


@dataclass
class LocalizeResult:
    latent: Latent                      # z*: each entry (K, D), detached
    losses: torch.Tensor                # (steps run, K) L_cr per step and painting (after a painting's stop:
                                        # its loss at its frozen latent)
    final_loss: torch.Tensor            # (K,) L_cr at z*
    failed_step: list[int | None]       # per painting: the step whose loss was not finite (None: fine)
    steps_used: list[int] | None = None  # per painting: optimizer steps that changed its latent (early stop)


LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def localize(backbone: Backbone, reference: torch.Tensor, yaw_deg: torch.Tensor, pitch_deg: torch.Tensor,
             lpips_fn: LpipsFn, config: LocalizeConfig, generator: torch.Generator,
             init: Latent | None = None, on_step: Callable[[int], None] | None = None) -> LocalizeResult:
    """Invert K paintings. reference: (K, 3, R, R) in [-1, 1]; yaw_deg, pitch_deg: (K,) degrees."""
    K = reference.shape[0]
    latent = init if init is not None else backbone.sample_latent(K, generator)
    latent = {k: v.detach().clone().requires_grad_(k in backbone.inverted_latents) for k, v in latent.items()}
    params = [latent[k] for k in backbone.inverted_latents]
    opt = torch.optim.Adam(params, lr=config.lr)
    resolution = reference.shape[-1]
    failed: list[int | None] = [None] * K
    stop = EarlyStop(config.early_stop, K, params)
    history = []
    for step in range(config.steps):
        opt.zero_grad(set_to_none=True)
        with autocast_context(reference.device, config.autocast):
            image = backbone.render_latent(latent, yaw_deg, pitch_deg, resolution, psi=1.0,
                                           chunk_rays=config.checkpoint_rays).image              # (K, 3, R, R)
            loss = content_loss(image, reference, lpips_fn, config.lambda_lpips, config.lambda_l2)  # (K,)
        loss = loss.float()
        finite_total(loss, failed, step, stop.active).backward()
        opt.step()
        stop.update(step, loss, failed)
        history.append(loss.detach())
        if on_step is not None:
            on_step(step)
        if stop.all_stopped():
            break
    with torch.no_grad():
        image = backbone.render_latent(latent, yaw_deg, pitch_deg, resolution, psi=1.0).image
        final = content_loss(image, reference, lpips_fn, config.lambda_lpips, config.lambda_l2)
    losses = torch.stack(history) if history else torch.empty(0, K)
    return LocalizeResult({k: v.detach() for k, v in latent.items()}, losses, final, failed,
                          stop.finish(len(history)))


def finite_total(loss: torch.Tensor, failed: list[int | None], step: int,
                 active: list[bool] | None = None) -> torch.Tensor:
    """Sum of the per-painting losses (K,) over paintings whose losses stayed finite (and, given `active`, that
    have not stopped early).

    A painting whose loss turns NaN/inf is recorded in `failed` (at `step`) and dropped from every later sum,
    so one diverging painting never poisons the others tuned in the same batch (their parameters are
    disjoint rows/adapters, and Adam is elementwise).
    """
    bad = ~torch.isfinite(loss.detach())
    for k in torch.nonzero(bad).flatten().tolist():
        if failed[k] is None:
            failed[k] = step
    keep = torch.tensor([f is None and (active is None or active[k]) for k, f in enumerate(failed)],
                        device=loss.device)
    return torch.where(keep, loss, torch.zeros_like(loss)).sum()



def search_pose(backbone: Backbone, reference: torch.Tensor, lpips_fn: LpipsFn, config: PoseSearchConfig,
                stage1: LocalizeConfig, generator: torch.Generator) -> tuple[float, float, Latent]:
    """One painting (1, 3, R, R) without a pose -> (yaw_deg, pitch_deg, latent) of the best grid candidate.

    Every candidate pose starts from the same random latent and gets `config.steps` inversion steps, all
    candidates in one batch; the pose with the lowest final L_cr wins and its latent seeds the full stage 1.
    """
    grid = [(y, p) for y in config.yaws_deg for p in config.pitches_deg]
    if config.downsample > 1 and reference.shape[-1] // config.downsample >= MIN_LPIPS_SIZE:
        reference = torch.nn.functional.avg_pool2d(reference, config.downsample)
    n = len(grid)
    yaws = torch.tensor([g[0] for g in grid], dtype=torch.float32, device=reference.device)
    pitches = torch.tensor([g[1] for g in grid], dtype=torch.float32, device=reference.device)
    start = backbone.sample_latent(1, generator)
    init = {k: v.expand(n, *v.shape[1:]).clone() for k, v in start.items()}
    short = LocalizeConfig(steps=config.steps, lr=stage1.lr, lambda_lpips=stage1.lambda_lpips, lambda_l2=stage1.lambda_l2)
    result = localize(backbone, reference.expand(n, -1, -1, -1), yaws, pitches, lpips_fn, short, generator, init=init)
    best = int(torch.argmin(result.final_loss))
    return grid[best][0], grid[best][1], {k: v[best:best + 1] for k, v in result.latent.items()}


__all__ = ["LocalizeConfig", "PoseSearchConfig", "LocalizeResult", "localize", "search_pose"]
