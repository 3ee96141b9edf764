"""Camera and rays in the official convention: a camera on the unit sphere looking at the origin.

Angles here are official radians (yaw = pitch = pi/2 is frontal); `model.camera` converts user degrees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Rays:
    origins: torch.Tensor     # (B, 3) camera centres in world space
    directions: torch.Tensor  # (B, R, 3) unit ray directions, R = H·W in row-major pixel order


def camera_to_world(yaw: torch.Tensor, pitch: torch.Tensor, radius: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """yaw, pitch: (B,) official radians -> rotation (B, 3, 3) with columns (right, up, back), origin (B, 3)."""
    phi = pitch.clamp(1e-5, math.pi - 1e-5)
    origin = torch.stack(
        [radius * torch.sin(phi) * torch.cos(yaw), radius * torch.cos(phi), radius * torch.sin(phi) * torch.sin(yaw)], dim=-1
    )
    forward = F.normalize(-origin, dim=-1, eps=0.0)
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


def make_rays(yaw: torch.Tensor, pitch: torch.Tensor, resolution: int, fov_deg: float) -> Rays:
    """World-space rays for a batch of cameras. yaw, pitch: (B,) official radians."""
    rot, origin = camera_to_world(yaw, pitch)
    dirs_cam = camera_ray_directions(resolution, fov_deg, device=yaw.device, dtype=yaw.dtype)  # (R, 3)
    directions = torch.einsum("bij,rj->bri", rot, dirs_cam)
    return Rays(origins=origin, directions=directions)


def sample_along_rays(rays: Rays, near: float, far: float, num_samples: int, ray_slice: slice = slice(None)) -> torch.Tensor:
    """Evenly spaced points on each ray in [near, far]: (B, R', S, 3) for the rays in `ray_slice`."""
    t = torch.linspace(near, far, num_samples, device=rays.origins.device, dtype=rays.origins.dtype)
    d = rays.directions[:, ray_slice]
    return rays.origins[:, None, None, :] + d[:, :, None, :] * t[None, None, :, None]


def intersect_plane_z(rays: Rays, plane_z: float, ray_slice: slice = slice(None)) -> torch.Tensor:
    """Where each ray meets the plane z = plane_z (the background): (B, R', 1, 3)."""
    d = rays.directions[:, ray_slice]
    t = (plane_z - rays.origins[:, None, 2:3]) / d[..., 2:3]
    return (rays.origins[:, None, :] + d * t).unsqueeze(2)


def project_points(points: torch.Tensor, yaw: torch.Tensor, pitch: torch.Tensor, resolution: int,
                   fov_deg: float) -> torch.Tensor:
    """Where world points appear in a render: (N, 3) -> (N, 2) continuous pixels (x right, y down).

    The inverse of `camera_ray_directions`: pixel i's centre is at i + 0.5. yaw, pitch: 0-d official radians.
    """
    rot, origin = camera_to_world(yaw.reshape(1), pitch.reshape(1))
    cam = (points - origin) @ rot[0]                                     # (N, 3) in (right, up, back)
    focal = 1.0 / math.tan(math.radians(fov_deg) / 2)
    ndc = cam[:, :2] * focal / -cam[:, 2:3]                               # in [-1, 1] at pixel centres
    step = 2.0 / (resolution - 1)
    x = (ndc[:, 0] + 1.0) / step + 0.5
    y = (1.0 - ndc[:, 1]) / step + 0.5
    return torch.stack([x, y], dim=-1)
