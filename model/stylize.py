"""3DArtmator stage 2 — stylization: tune G_trn (a copy of G_ori, here usually through low-rank adapters)
so that renders of z* from any view carry the painting's style, while the reference view stays the painting.

Per step, for each painting: one random view θ_i; L_dir = 1 − cos(δ_guide, δ_opt(θ_i)) with
δ_guide = E(I_ref) − E(G_ori(z*, θ)) and δ_opt(θ_i) = E(G_trn(z*, θ_i)) − E(G_ori(z*, θ_i)) (CLIP image
encoder E, both images augmented); L_spa = LPIPS(G_trn(z*, θ), I_ref). Loss = λ_dir L_dir + λ_spa L_spa.

The PTI-style baseline instead tunes on L2 + LPIPS at the reference view only.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from artmator.model.augment import AugmentConfig
from artmator.model.backbone import Backbone, Latent
from artmator.model.camera import random_views
from artmator.model.fields import setting
from artmator.model.localize import finite_total
from artmator.model.plateau import EarlyStop, PlateauConfig
from artmator.model.render import autocast_context
from artmator.model.losses import clip_direction, content_loss, directional_loss, spatial_loss

Objective = Literal["artmator", "pti"]


@dataclass(frozen=True)
class StylizeConfig:
    """Stage 2 settings. Learning rate: the paper's 1e-5 is for full-weight tuning; adapters need a larger one."""

    steps: int = setting(100, "Stage 2 (stylization): optimisation steps, one random view per painting each.")
    lr_full: float = setting(1e-5, "Stage 2 Adam learning rate when every generator weight is tuned (paper).")
    lr_lora: float = setting(2e-3, "Stage 2 Adam learning rate for low-rank adapters.")
    lambda_dir: float = setting(1.0, "Weight of the style-directional loss L_dir (paper: 1).")
    lambda_spa: float = setting(1.0, "Weight of the spatial loss L_spa (paper: 1).")
    view_yaw_range_deg: float = setting(30.0, "Random views: yaw uniform in +-range degrees around frontal.")
    view_pitch_range_deg: float = setting(10.0, "Random views: pitch uniform in +-range degrees.")
    use_directional: bool = setting(True, "Ablation switch: off = 'w/o directional loss'.")
    use_spatial: bool = setting(True, "Ablation switch: off = 'w/o spatial loss'.")
    objective: Objective = setting("artmator", "'artmator' (L_dir + L_spa) or 'pti': L2 + LPIPS at the "
                                               "reference view only (baseline).")
    augment: AugmentConfig = setting(factory=AugmentConfig, help="Crops shared by both images of a CLIP pair.")
    clip_view_resolution: int | None = setting(
        None, "Side in pixels of the renders the CLIP directions are computed from (G_trn and G_ori at the random "
              "view, and the painting and G_ori(z*, θ) of the guide direction, resized); none = the tuning "
              "resolution (the paper). The CLIP encoder resizes its input to its own size (ViT-B/32: 224) anyway, "
              "so rendering these two views above that size buys nothing; a lower size saves render work. Never "
              "above the tuning resolution.")
    early_stop: PlateauConfig = setting(factory=PlateauConfig, help="Stop a painting's stage 2 early once its "
                                        "total loss is flat (off by default: every step runs).")
    autocast: bool = setting(False, "CUDA only: each step's forward (renders, CLIP, LPIPS) in bfloat16 autocast; "
                                    "backward and Adam stay float32 (H200, 128 px, 4 paintings: 2.7x faster "
                                    "per step, frames within 0.03 of float32). CPU always tunes in float32.")
    checkpoint_rays: int | None = setting(
        None, "Rays per gradient-checkpointed chunk of G_trn's renders in each step (none: all rays at once). "
              "Bounds the activation memory a step keeps for its backward pass (more paintings per batch, or "
              "paper settings on smaller GPUs) for about one more forward pass of compute; same results.",
        result=False)

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"stage 2 steps must be >= 0 (got {self.steps})")
        if self.objective not in ("artmator", "pti"):
            raise ValueError(f"stage 2 objective must be 'artmator' or 'pti' (got {self.objective!r})")
        if self.objective == "artmator" and not (self.use_directional or self.use_spatial):
            raise ValueError("stage 2 needs at least one of the directional and spatial losses")
        if self.checkpoint_rays is not None and self.checkpoint_rays < 1:
            raise ValueError(f"stage 2 checkpoint_rays must be >= 1 or none (got {self.checkpoint_rays})")
        if self.clip_view_resolution is not None and self.clip_view_resolution < 16:
            raise ValueError(f"stage 2's clip_view_resolution must be >= 16 pixels or none, got "
                             f"{self.clip_view_resolution}")


@dataclass
class StylizeResult:
    losses: dict[str, torch.Tensor]     # name -> (steps run, K): "total", "dir", "spa" (or "pti")
    failed_step: list[int | None]       # per painting: the step whose loss was not finite (None: fine)
    steps_used: list[int] | None = None  # per painting: optimizer steps that changed its adapters (early stop)


LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def stylize(g_ori: Backbone, g_trn: Backbone, trainable: list[torch.nn.Parameter], latent: Latent,
            reference: torch.Tensor, yaw_deg: torch.Tensor, pitch_deg: torch.Tensor, clip, lpips_fn: LpipsFn,
            config: StylizeConfig, lr: float, generator: torch.Generator,
            on_step: Callable[[int], None] | None = None) -> StylizeResult:
    """Tune `trainable` (the parameters behind g_trn) for K paintings at once.

    reference: (K, 3, R, R) in [-1, 1]; latent: z* with (K, D) entries (frozen); yaw_deg, pitch_deg: (K,).
    """
    K, R = reference.shape[0], reference.shape[-1]
    latent = {k: v.detach() for k, v in latent.items()}
    opt = torch.optim.Adam(trainable, lr=lr)
    with torch.no_grad():
        ori_ref = g_ori.render_latent(latent, yaw_deg, pitch_deg, R).image                  # G_ori(z*, θ)
    history: dict[str, list[torch.Tensor]] = {}
    failed: list[int | None] = [None] * K
    stop = EarlyStop(config.early_stop, K, trainable)
    steps_run = 0
    for step in range(config.steps):
        opt.zero_grad(set_to_none=True)
        with autocast_context(reference.device, config.autocast):
            if config.objective == "pti":
                terms = {"pti": pti_loss(g_trn, latent, reference, yaw_deg, pitch_deg, lpips_fn,
                                         config.checkpoint_rays)}
            else:
                terms = artmator_terms(g_ori, g_trn, latent, reference, ori_ref, yaw_deg, pitch_deg, clip, lpips_fn,
                                       config, generator)
        terms = {name: value.float() for name, value in terms.items()}
        total = sum(terms.values())                                                          # (K,)
        finite_total(total, failed, step, stop.active).backward()
        opt.step()
        stop.update(step, total, failed)
        steps_run = step + 1
        for name, value in {**terms, "total": total}.items():
            history.setdefault(name, []).append(value.detach())
        if on_step is not None:
            on_step(step)
        if stop.all_stopped():
            break
    return StylizeResult({k: torch.stack(v) for k, v in history.items()}, failed, stop.finish(steps_run))


def artmator_terms(g_ori: Backbone, g_trn: Backbone, latent: Latent, reference, ori_ref, yaw_deg, pitch_deg, clip,
                   lpips_fn: LpipsFn, config: StylizeConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The weighted stage-2 losses for one step: {"dir": (K,), "spa": (K,)} (only the enabled ones)."""
    K, R = reference.shape[0], reference.shape[-1]
    terms = {}
    if config.use_directional:
        r = clip_view_size(config, R)
        view_yaw, view_pitch = random_views(K, config.view_yaw_range_deg, config.view_pitch_range_deg, generator)
        view_yaw, view_pitch = view_yaw.to(reference.device), view_pitch.to(reference.device)
        with torch.no_grad():
            ori_view = g_ori.render_latent(latent, view_yaw, view_pitch, r).image            # G_ori(z*, θ_i) (K,3,r,r)
            delta_guide = clip_direction(clip, resized(reference, r), resized(ori_ref, r), config.augment,
                                         generator)                                         # (K, D)
        trn_view = g_trn.render_latent(latent, view_yaw, view_pitch, r,
                                       chunk_rays=config.checkpoint_rays).image              # G_trn(z*, θ_i)
        delta_opt = clip_direction(clip, trn_view, ori_view, config.augment, generator)      # (K, D)
        terms["dir"] = config.lambda_dir * directional_loss(delta_guide, delta_opt)
    if config.use_spatial:
        trn_ref = g_trn.render_latent(latent, yaw_deg, pitch_deg, R,
                                      chunk_rays=config.checkpoint_rays).image               # G_trn(z*, θ)
        terms["spa"] = config.lambda_spa * spatial_loss(trn_ref, reference, lpips_fn)
    return terms


def clip_view_size(config: StylizeConfig, resolution: int) -> int:
    """Side of the CLIP-direction renders: `clip_view_resolution`, never above the tuning resolution."""
    return resolution if config.clip_view_resolution is None else min(config.clip_view_resolution, resolution)


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, H) -> (B, 3, size, size), antialiased: both sides of the guide direction seen at the size the
    optimised direction is rendered at (the same blur on both images of each pair)."""
    if images.shape[-1] == size:
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)


def pti_loss(g_trn: Backbone, latent: Latent, reference, yaw_deg, pitch_deg, lpips_fn: LpipsFn,
             checkpoint_rays: int | None = None) -> torch.Tensor:
    """PTI-style baseline objective: L2 + LPIPS between G_trn(z*, θ) and the painting, reference view only. (K,)"""
    image = g_trn.render_latent(latent, yaw_deg, pitch_deg, reference.shape[-1], chunk_rays=checkpoint_rays).image
    return content_loss(image, reference, lpips_fn, 1.0, 1.0)
