"""User-facing camera angles and trajectories.

Users speak degrees with 0 = frontal: positive yaw turns the head to the viewer's right in the official
convention's sense (`yaw_deg = degrees(official_yaw - pi/2)`), positive pitch likewise for `official_pitch`.
"""
from __future__ import annotations

import math

import torch

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
