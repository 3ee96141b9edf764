"""User-facing camera angles and trajectories, and the pinhole camera on a sphere that backbones render with.

Users speak degrees with 0 = frontal: positive yaw turns the head to the viewer's right in the official
convention's sense (`yaw_deg = degrees(official_yaw - pi/2)`), positive pitch likewise for `official_pitch`.

Rays: a pinhole camera on a sphere of `radius` around `look_at`, looking at it, y up. Official radians place it
at (sin p cos y, cos p, sin p sin y) · radius + look_at, so yaw = pitch = pi/2 is on the +z axis (frontal).
AniFaceGAN renders with radius 1 around the origin; a tri-plane (EG3D-style) backbone with its own radius,
centre and field of view. Each backbone keeps its own near/far bounds and sampling.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

MAX_ABS_YAW_DEG = 90.0
MAX_ABS_PITCH_DEG = 60.0


def degrees_to_official(angle_deg: torch.Tensor | float) -> torch.Tensor:
    """User degrees (0 = frontal) -> official radians (pi/2 = frontal)."""
    return torch.as_tensor(angle_deg, dtype=torch.float32).deg2rad() + math.pi / 2


def official_to_degrees(angle_rad: torch.Tensor | float) -> torch.Tensor:
    return (torch.as_tensor(angle_rad, dtype=torch.float32) - math.pi / 2).rad2deg()


def as_batch(angle: torch.Tensor | float, batch: int, device) -> torch.Tensor:
    """A scalar or (B,) angle -> (B,) float32 on `device`."""
    t = torch.as_tensor(angle, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.shape[0] != batch:
        raise ValueError(f"expected {batch} angles (one per latent), got {t.shape[0]}")
    return t


def turntable_yaws(num_frames: int = 50, half_range_deg: float = math.degrees(0.35)) -> torch.Tensor:
    """Yaw sweep from -range to +range in `num_frames` steps (official release: ±0.35 rad, 50 frames)."""
    if num_frames < 1:
        raise ValueError("a turntable needs at least one frame")
    return torch.linspace(-half_range_deg, half_range_deg, num_frames)


def random_views(num: int, yaw_range_deg: float, pitch_range_deg: float, generator: torch.Generator | None = None):
    """Uniform random (yaw, pitch) in degrees within ±range, e.g. the random view θ_i of stage 2: (num,) each."""
    u = torch.rand(2, num, generator=generator)
    return (u[0] * 2 - 1) * yaw_range_deg, (u[1] * 2 - 1) * pitch_range_deg


# ---- the pinhole camera on a sphere ------------------------------------------------------------------------
@dataclass(frozen=True)
class Rays:
    origins: torch.Tensor     # (B, 3) camera centres in world space
    directions: torch.Tensor  # (B, R, 3) unit ray directions, R = H·W in row-major pixel order


def camera_to_world(yaw: torch.Tensor, pitch: torch.Tensor, radius: float = 1.0,
                    look_at: tuple[float, float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """yaw, pitch: (B,) official radians -> rotation (B, 3, 3) with columns (right, up, back), origin (B, 3)."""
    phi = pitch.clamp(1e-5, math.pi - 1e-5)
    origin = torch.stack(
        [radius * torch.sin(phi) * torch.cos(yaw), radius * torch.cos(phi), radius * torch.sin(phi) * torch.sin(yaw)], dim=-1
    )
    forward = F.normalize(-origin, dim=-1, eps=0.0)
    if look_at is not None:
        origin = origin + torch.tensor(look_at, dtype=origin.dtype, device=origin.device)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=origin.dtype, device=origin.device).expand_as(forward)
    left = _unit(torch.cross(up, forward, dim=-1))
    up = _unit(torch.cross(forward, left, dim=-1))
    return torch.stack([-left, up, -forward], dim=-1), origin


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.norm(v, dim=-1, keepdim=True)


def camera_ray_directions(resolution: int, fov_deg: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """Unit directions in camera space for every pixel, row-major, y up: (H·W, 3)."""
    lin_x = torch.linspace(-1, 1, resolution, device=device, dtype=dtype)
    lin_y = torch.linspace(1, -1, resolution, device=device, dtype=dtype)
    y, x = torch.meshgrid(lin_y, lin_x, indexing="ij")
    z = torch.full_like(x, -1.0 / math.tan(math.radians(fov_deg) / 2))
    return _unit(torch.stack([x.flatten(), y.flatten(), z.flatten()], dim=-1))


def make_rays(yaw: torch.Tensor, pitch: torch.Tensor, resolution: int, fov_deg: float, radius: float = 1.0,
              look_at: tuple[float, float, float] | None = None) -> Rays:
    """World-space rays for a batch of cameras. yaw, pitch: (B,) official radians."""
    rot, origin = camera_to_world(yaw, pitch, radius, look_at)
    dirs_cam = camera_ray_directions(resolution, fov_deg, device=yaw.device, dtype=yaw.dtype)  # (R, 3)
    directions = torch.einsum("bij,rj->bri", rot, dirs_cam)
    return Rays(origins=origin, directions=directions)


def sample_along_rays(rays: Rays, near: float, far: float, num_samples: int, ray_slice: slice = slice(None)) -> torch.Tensor:
    """Evenly spaced points on each ray in [near, far]: (B, R', S, 3) for the rays in `ray_slice`."""
    t = torch.linspace(near, far, num_samples, device=rays.origins.device, dtype=rays.origins.dtype)
    d = rays.directions[:, ray_slice]
    return rays.origins[:, None, None, :] + d[:, :, None, :] * t[None, None, :, None]


def project_points(points: torch.Tensor, yaw: torch.Tensor, pitch: torch.Tensor, resolution: int,
                   fov_deg: float, radius: float = 1.0, look_at: tuple[float, float, float] | None = None) -> torch.Tensor:
    """Where world points appear in a render: (N, 3) -> (N, 2) continuous pixels (x right, y down).

    The inverse of `camera_ray_directions`: pixel i's centre is at i + 0.5. yaw, pitch: 0-d official radians.
    """
    rot, origin = camera_to_world(yaw.reshape(1), pitch.reshape(1), radius, look_at)
    cam = (points - origin) @ rot[0]                                     # (N, 3) in (right, up, back)
    focal = 1.0 / math.tan(math.radians(fov_deg) / 2)
    ndc = cam[:, :2] * focal / -cam[:, 2:3]                               # in [-1, 1] at pixel centres
    step = 2.0 / (resolution - 1)
    x = (ndc[:, 0] + 1.0) / step + 0.5
    y = (1.0 - ndc[:, 1]) / step + 0.5
    return torch.stack([x, y], dim=-1)


def render_ray_chunks(render_rays: Callable[..., tuple[torch.Tensor, ...]], fixed: tuple, rays: Rays,
                      chunk: int | None, default_chunk: int) -> tuple[torch.Tensor, ...]:
    """`render_rays(*fixed, origins, directions)` over chunks of rays, outputs joined along the rays: (B, R, C) each.

    Without gradients `chunk` (default `default_chunk`) rays go at a time, which bounds memory; with gradients all
    rays go at once unless `chunk` is given, and each chunk is then checkpointed (recomputed in the backward pass).
    """
    n_rays = rays.directions.shape[1]
    chunk = chunk or (n_rays if torch.is_grad_enabled() else default_chunk)
    outs = []
    for start in range(0, n_rays, chunk):
        args = (*fixed, rays.origins, rays.directions[:, start:start + chunk])
        if torch.is_grad_enabled() and chunk < n_rays:
            outs.append(checkpoint(render_rays, *args, use_reentrant=False))
        else:
            outs.append(render_rays(*args))
    return tuple(torch.cat(t, dim=1) for t in zip(*outs))


def rays_to_image(values: torch.Tensor, resolution: int) -> torch.Tensor:
    """Per-ray values (B, H·W, C) in row-major pixel order -> images (B, C, H, W)."""
    return values.reshape(values.shape[0], resolution, resolution, -1).permute(0, 3, 1, 2)
