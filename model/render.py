"""Rendering utilities on top of any `Backbone`: turntables, expression stills, device/dtype handling.

All renders here are inference-only (no gradients) and are evaluated in frame batches and ray chunks so a
256² or 512² turntable fits in bounded memory.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from artmator.model.backbone import Backbone, Latent
from artmator.model.camera import turntable_yaws
from artmator.model.fields import setting


MESH_AUTO_MAX = 128
"""Largest automatic mesh grid: ~48k faces, ~0.75 MB of GLB for a head (bench/results/mesh_tiny_cpu.md)."""


@dataclass(frozen=True)
class RenderConfig:
    """What to render for each tuned painting."""

    resolution: int = setting(256, "Output render size in pixels (square).")
    turntable_frames: int = setting(36, "Frames of the turntable's yaw sweep.")
    turntable_half_range_deg: float = setting(20.0, "The sweep goes from -range to +range degrees around frontal "
                                                    "(or the painting's yaw, see turntable_around_pose).")
    turntable_around_pose: bool = setting(False, "Sweep around the painting's own yaw instead of frontal.")
    turntable_pitch_deg: float | None = setting(None, "Pitch of the turntable in degrees (none: the painting's).")
    fps: float = setting(12.0, "Playback rate written into results and videos.")
    expressions: tuple[str, ...] | None = setting(
        None, "Expression stills: names or files (.mat URIs), comma-separated; none: the backbone's default "
              "(happiness for AniFaceGAN presets; nothing for a backbone without expression codes, which refuses "
              "any); an empty value: no stills.")
    frame_batch: int = setting(4, "Frames rendered per forward pass (memory vs speed; same images).", result=False)
    chunk_rays: int | None = setting(None, "Rays per chunk (none: the backbone's default; memory vs speed, same "
                                           "images).", result=False)
    autocast: bool = setting(False, "CUDA only: render in float16/bfloat16 autocast.")
    psi: float = setting(1.0, "Truncation for the painting's own latent (1 = none).")
    mesh_resolution: int | None = setting(
        None, "Grid points per side of the mesh.glb iso-surface (model.mesh); 0: no mesh; none: the render "
              "resolution, at most 128 (MESH_AUTO_MAX).")

    def __post_init__(self):
        if self.resolution < 8 or self.turntable_frames < 1 or self.frame_batch < 1:
            raise ValueError("resolution must be >= 8 and turntable_frames, frame_batch >= 1")
        if self.mesh_resolution and not 8 <= self.mesh_resolution <= 512:
            raise ValueError(f"mesh_resolution must be 0 (no mesh) or in [8, 512], got {self.mesh_resolution}")

    @property
    def mesh_grid(self) -> int:
        """The mesh's grid points per side (0: no mesh)."""
        if self.mesh_resolution is None:
            return max(8, min(self.resolution, MESH_AUTO_MAX))
        return self.mesh_resolution


def autocast_context(device: torch.device, enabled: bool):
    """Mixed precision on CUDA when asked; CPU always renders in float32 (exact, reproducible)."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _repeat(latent: Latent, n: int) -> Latent:
    # latent entries (1, D) -> (n, D)
    return {k: v[:1].expand(n, *v.shape[1:]) for k, v in latent.items()}


@torch.no_grad()
def render_views(backbone: Backbone, latent: Latent, yaws_deg: torch.Tensor, pitches_deg: torch.Tensor,
                 config: RenderConfig) -> torch.Tensor:
    """One latent (batch 1) at many views -> images (N, 3, H, W) in [-1, 1], float32 on CPU."""
    device = next(iter(latent.values())).device
    out = []
    for start in range(0, len(yaws_deg), config.frame_batch):
        y = yaws_deg[start:start + config.frame_batch]
        p = pitches_deg[start:start + config.frame_batch]
        with autocast_context(device, config.autocast):
            r = backbone.render_latent(_repeat(latent, len(y)), y.to(device), p.to(device), config.resolution,
                                       psi=config.psi, chunk_rays=config.chunk_rays)
        out.append(r.image.float().clamp(-1, 1).cpu())
    return torch.cat(out)


def turntable_angles(config: RenderConfig, yaw_deg: float, pitch_deg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(yaws, pitches) in degrees for the turntable of a painting posed at (yaw_deg, pitch_deg)."""
    yaws = turntable_yaws(config.turntable_frames, config.turntable_half_range_deg)
    if config.turntable_around_pose:
        yaws = yaws + yaw_deg
    pitch = pitch_deg if config.turntable_pitch_deg is None else config.turntable_pitch_deg
    return yaws, torch.full_like(yaws, float(pitch))


def render_turntable(backbone: Backbone, latent: Latent, config: RenderConfig, yaw_deg: float = 0.0,
                     pitch_deg: float = 0.0) -> torch.Tensor:
    """Turntable frames (N, 3, H, W) in [-1, 1]."""
    yaws, pitches = turntable_angles(config, yaw_deg, pitch_deg)
    return render_views(backbone, latent, yaws, pitches, config)


def render_expressions(backbone: Backbone, latent: Latent, expressions: Mapping[str, torch.Tensor], config: RenderConfig,
                       yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> dict[str, torch.Tensor]:
    """One still (3, H, W) per named expression code, at the painting's pose."""
    stills = {}
    for name, code in expressions.items():
        edited = backbone.with_expression(latent, code)
        stills[name] = render_views(backbone, edited, torch.tensor([yaw_deg]), torch.tensor([pitch_deg]), config)[0]
    return stills


__all__ = ["RenderConfig", "render_views", "render_turntable", "render_expressions", "turntable_angles"]
