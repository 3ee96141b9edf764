"""Tri-plane sampling and volume rendering: points -> plane features -> density/colour -> pixels."""
from __future__ import annotations

import torch
from torch.nn import functional as F

# Each plane's (horizontal, vertical) world axes: xy, xz and zy (EG3D's intent; its released code projects the
# third plane differently, which a port of its checkpoints must reproduce).
PLANE_AXES = ((0, 1), (0, 2), (2, 1))


def sample_planes(planes: torch.Tensor, points: torch.Tensor, box_side: float) -> torch.Tensor:
    """Bilinear features of points projected onto the three planes, averaged (EG3D's aggregation).

    planes: (B, 3, C, P, P); points: (B, N, 3) world coordinates, the box [-side/2, side/2]³ maps onto each
    plane's full extent (outside it the features are zero). Returns (B, N, C).
    """
    B, n_planes, C, P, _ = planes.shape
    coords = points * (2.0 / box_side)                                           # box -> [-1, 1]
    grid = torch.stack([coords[..., list(axes)] for axes in PLANE_AXES], dim=1)  # (B, 3, N, 2)
    sampled = F.grid_sample(planes.reshape(B * n_planes, C, P, P), grid.reshape(B * n_planes, 1, -1, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=False)  # (B·3, C, 1, N)
    return sampled.reshape(B, n_planes, C, -1).mean(dim=1).transpose(1, 2)      # (B, N, C)


def sample_depths(near: float, far: float, samples: int, device=None) -> torch.Tensor:
    """Centres of `samples` equal bins in [near, far]: (S,). Deterministic (EG3D jitters them while training)."""
    step = (far - near) / samples
    return near + step * (torch.arange(samples, device=device, dtype=torch.float32) + 0.5)


def sample_opacity(raw_density: torch.Tensor, step: float, density_shift: float) -> torch.Tensor:
    """Opacity of one ray bin of length `step`: 1 - exp(-softplus(raw + shift) · step)."""
    return 1.0 - torch.exp(-F.softplus(raw_density + density_shift) * step)


def composite(raw_density: torch.Tensor, rgb: torch.Tensor, depths: torch.Tensor, step: float,
              density_shift: float, background: float, far: float):
    """Emission-absorption volume rendering of S samples per ray, front to back.

    raw_density: (B, R, S, 1); rgb: (B, R, S, 3) in [0, 1]; depths: (S,) along each unit ray; step: bin length.
    alpha_i = 1 - exp(-softplus(raw_i + shift) · step), T_i = prod_{j<i} (1 - alpha_j), w_i = T_i alpha_i.
    Returns image (B, R, 3) in [-1, 1] over `background`, depth (B, R, 1) (the far bound where empty) and
    opacity (B, R, 1) = sum of w_i.
    """
    alpha = sample_opacity(raw_density, step, density_shift)                    # (B, R, S, 1)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1.0 - alpha + 1e-10], dim=2),
                                  dim=2)[:, :, :-1]
    weights = alpha * transmittance
    opacity = weights.sum(dim=2)                                                 # (B, R, 1)
    image = (weights * (rgb * 2 - 1)).sum(dim=2) + (1.0 - opacity) * background  # (B, R, 3) in [-1, 1]
    depth = (weights * depths.view(1, 1, -1, 1)).sum(dim=2) + (1.0 - opacity) * far
    return image, depth, opacity
