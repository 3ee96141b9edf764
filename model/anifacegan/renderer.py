"""Manifold rendering: ray/level-set intersections and alpha compositing with a background plane.

Follows the official AniFaceGAN inference exactly (GRAM-style radiance manifolds); each step is one function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

INVALID_DEPTH = 10.0  # official: samples that hit no manifold are pushed behind everything


def intersect_manifolds(field: torch.Tensor, points: torch.Tensor, offsets: torch.Tensor, levels: torch.Tensor):
    """First crossing, front to back, of each level set of the sampler field along each ray.

    field: (B, R, S, 1) scalar s at S coarse samples; points: (B, R, S, 3) samples in observation space;
    offsets: (B, R, S, 3) deformation to canonical space; levels: (L,) decreasing level values.
    Returns observation points (B, R, L, 3), canonical points (B, R, L, 3), valid (B, R, L, 1) in {0, 1}.
    A level counts as hit where s goes from >= level to <= level; the point is linearly interpolated.
    """
    S = field.shape[2]
    s_l, s_h = field[:, :, :-1], field[:, :, 1:]                       # (B, R, S-1, 1)
    lv = levels.view(1, 1, 1, -1)                                      # (1, 1, 1, L)
    crossing = torch.sign((s_h - lv) * (lv - s_l))                     # (B, R, S-1, L)
    # Earliest crossing wins: weight by a decreasing cost (official: linspace(S-1, 0, S-1)).
    cost = torch.linspace(S - 1, 0, S - 1, device=field.device, dtype=field.dtype).view(1, 1, -1, 1)
    idx = torch.argmax(crossing * cost, dim=2)                         # (B, R, L)

    def pick(t: torch.Tensor, shift: int) -> torch.Tensor:
        i = (idx + shift).unsqueeze(-1).expand(*idx.shape, t.shape[-1])
        return torch.gather(t, 2, i)                                   # (B, R, L, C)

    x_l, x_h = pick(points, 0), pick(points, 1)
    d_l, d_h = pick(offsets, 0), pick(offsets, 1)
    f_l, f_h = pick(field, 0), pick(field, 1)
    lv = levels.view(1, 1, -1, 1)
    valid = (f_h <= lv) & (f_l >= lv)
    scale = f_h - f_l
    # A safe denominator where invalid keeps NaNs out of the backward pass; the forward is unchanged.
    scale = torch.where(valid & (scale != 0), scale, torch.full_like(scale, -1.0))
    w_l, w_h = f_h - lv, lv - f_l
    obs = torch.where(valid, (w_l * x_l + w_h * x_h) / scale, x_h)
    off = torch.where(valid, (w_l * d_l + w_h * d_h) / scale, d_h)
    return obs, obs + off, valid.to(field.dtype)


def manifold_opacity(sigma: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """Opacity of a manifold sample with raw density sigma: 1 - exp(-delta · softplus(sigma)) (official)."""
    return 1 - torch.exp(-delta * F.softplus(sigma))


def widen_colour(rgb: torch.Tensor, eps: float) -> torch.Tensor:
    """The official colour widening rgb·(1+2ε) - ε (lets sigmoid colours reach 0 and 1)."""
    return rgb * (1 + 2 * eps) - eps


def composite(rgb_sigma: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, *, alpha_delta: float,
              far_delta: float = 1e10, rgb_widen: float = 1e-3):
    """Front-to-back alpha compositing of manifold samples plus background (the last sample of each ray).

    rgb_sigma: (B, R, K, 4) colour in [0, 1] and raw density; depth: (B, R, K, 1) distance to the camera;
    valid: (B, R, K, 1). Opacity per sample is 1 - exp(-delta · softplus(sigma)) with the constant delta
    `alpha_delta`, and `far_delta` for the background and the farthest sample. Colour is widened as
    rgb·(1+2ε) - ε. Returns rgb (B, R, 3), depth (B, R, 1), opacity of the face without the background
    (B, R, 1), and per-sample weights (B, R, K, 1) in sorted order.
    """
    K = rgb_sigma.shape[2]
    with torch.no_grad():
        z = depth.masked_fill(valid == 0, INVALID_DEPTH)
        z, order = torch.sort(z, dim=2)                                 # (B, R, K, 1)
        bg_pos = torch.argmax(order, dim=2)                             # background had the largest index
        is_bg = F.one_hot(bg_pos.squeeze(-1), K).unsqueeze(-1).bool()   # (B, R, K, 1)
        deltas = torch.full_like(z, alpha_delta)
        deltas[:, :, -1] = far_delta
        deltas = deltas.masked_fill(is_bg, far_delta)
    out = torch.gather(rgb_sigma, 2, order.expand(*order.shape[:3], 4))
    valid = torch.gather(valid, 2, order)
    rgb = widen_colour(out[..., :3], rgb_widen)
    alpha = manifold_opacity(out[..., 3:], deltas) * valid
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=2), dim=2)[:, :, :-1]
    weights = alpha * trans
    total = weights.sum(2)
    color = (weights * rgb).sum(2)
    depth_out = (weights * z).sum(2) / total
    opacity = (weights * (~is_bg)).sum(2)
    return color, depth_out, opacity, weights
