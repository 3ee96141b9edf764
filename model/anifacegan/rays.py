"""Camera and rays in the official convention: a camera on the unit sphere looking at the origin.

The pinhole camera itself is generic (`model.camera`, re-exported here); this module adds the background plane.
Angles here are official radians (yaw = pitch = pi/2 is frontal); `model.camera` converts user degrees.
"""
from __future__ import annotations

import torch

from artmator.model.camera import (Rays, camera_ray_directions, camera_to_world, make_rays,  # re-exported
                                   project_points, sample_along_rays)


def intersect_plane_z(rays: Rays, plane_z: float, ray_slice: slice = slice(None)) -> torch.Tensor:
    """Where each ray meets the plane z = plane_z (the background): (B, R', 1, 3)."""
    d = rays.directions[:, ray_slice]
    t = (plane_z - rays.origins[:, None, 2:3]) / d[..., 2:3]
    return (rays.origins[:, None, :] + d * t).unsqueeze(2)


__all__ = ["Rays", "camera_ray_directions", "camera_to_world", "intersect_plane_z", "make_rays", "project_points",
           "sample_along_rays"]
