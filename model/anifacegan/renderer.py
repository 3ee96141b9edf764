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
    idx = crossing_indices(field, levels)
    return interpolate_crossings(crossing_pairs(points, idx), crossing_pairs(offsets, idx),
                                 crossing_pairs(field, idx), levels)


def crossing_indices(field: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index i of the coarse interval [i, i+1] where each level is first crossed: field (B, R, S, 1) -> (B, R, L)
    (some interval where a level is never crossed; `crossing_valid` tells)."""
    S = field.shape[2]
    s_l, s_h = field[:, :, :-1], field[:, :, 1:]                       # (B, R, S-1, 1)
    lv = levels.view(1, 1, 1, -1)                                      # (1, 1, 1, L)
    crossing = torch.sign((s_h - lv) * (lv - s_l))                     # (B, R, S-1, L)
    # Earliest crossing wins: weight by a decreasing cost (official: linspace(S-1, 0, S-1)).
    cost = torch.linspace(S - 1, 0, S - 1, device=field.device, dtype=field.dtype).view(1, 1, -1, 1)
    return torch.argmax(crossing * cost, dim=2)                        # (B, R, L)


def crossing_pairs(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The two coarse samples around each crossing: t (B, R, S, C), idx (B, R, L) -> (B, R, L, 2, C)."""
    def pick(shift: int) -> torch.Tensor:
        i = (idx + shift).unsqueeze(-1).expand(*idx.shape, t.shape[-1])
        return torch.gather(t, 2, i)                                   # (B, R, L, C)
    return torch.stack([pick(0), pick(1)], dim=3)


def crossing_valid(field_pairs: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Whether each level is really crossed in its interval: field pairs (B, R, L, 2, 1) -> (B, R, L, 1) bool."""
    lv = levels.view(1, 1, -1, 1)
    return (field_pairs[..., 1, :] <= lv) & (field_pairs[..., 0, :] >= lv)


def interpolate_crossings(points: torch.Tensor, offsets: torch.Tensor, field: torch.Tensor, levels: torch.Tensor):
    """Crossing points from the samples around them: points, offsets (B, R, L, 2, 3), field (B, R, L, 2, 1) ->
    observation points, canonical points (B, R, L, 3), valid (B, R, L, 1) in {0, 1}. Gradients reach the field
    and the offsets only through these pairs."""
    x_l, x_h = points.unbind(3)
    d_l, d_h = offsets.unbind(3)
    f_l, f_h = field.unbind(3)
    lv = levels.view(1, 1, -1, 1)
    valid = crossing_valid(field, levels)
    scale = f_h - f_l
    # A safe denominator where invalid keeps NaNs out of the backward pass; the forward is unchanged.
    scale = torch.where(valid & (scale != 0), scale, torch.full_like(scale, -1.0))
    w_l, w_h = f_h - lv, lv - f_l
    obs = torch.where(valid, (w_l * x_l + w_h * x_h) / scale, x_h)
    off = torch.where(valid, (w_l * d_l + w_h * d_h) / scale, d_h)
    return obs, obs + off, valid.to(field.dtype)


@torch.compiler.disable   # its shapes depend on the data: a deliberate, quiet break in a compiled ray chunk
def pack_hits(hit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's hits first: hit (B, N) bool -> order (B, M) indices into N, real (B, M, 1) bool, where M is the
    largest hit count in the batch. A stable sort keeps the hits in order; a frame with fewer hits is padded
    with its own misses (real False). One host sync (the count)."""
    counts = hit.sum(1)                                                # (B,)
    M = int(counts.max())
    order = torch.sort(hit.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :M]
    real = (torch.arange(M, device=hit.device).unsqueeze(0) < counts.unsqueeze(1)).unsqueeze(-1)
    return order, real


def at_hits(fn, inputs: torch.Tensor, hit: torch.Tensor, fill: torch.Tensor | None = None) -> torch.Tensor:
    """`fn` evaluated only at the entries that `hit`; `fill` (default zeros) elsewhere.

    fn: (B, M, C) -> (B, M, C_out), pointwise along M; inputs: (B, N, C); hit: (B, N) bool; fill: (B, N, C_out),
    not differentiated. Returns (B, N, C_out). The hits are packed (`pack_hits`); `fill` is written back at the
    padding, so the padding never reaches the result or a gradient.
    """
    B, N = hit.shape
    order, real = pack_hits(hit)                                       # (B, M), (B, M, 1)
    if order.shape[1] == N:
        return fn(inputs)
    out = fn(torch.gather(inputs, 1, order.unsqueeze(-1).expand(*order.shape, inputs.shape[-1])))  # (B, M, C_out)
    index = order.unsqueeze(-1).expand_as(out)
    if fill is None:
        fill = out.new_zeros(B, N, out.shape[-1])
    return fill.scatter(1, index, torch.where(real, out, torch.gather(fill, 1, index)))


def radiance_at_hits(radiance, points: torch.Tensor, hit: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """`radiance(points, view)` evaluated only where `hit`; zeros (colour 0, raw density 0) elsewhere.

    points: (B, N, 3); hit: (B, N) bool; view: (B, N, 3) per point or (B, 1, 3) per frame -> (B, N, 4).
    A slot that hits no manifold gets opacity 0 in `composite` whatever the field says there, so its value
    never reaches a pixel or a gradient.
    """
    if view.shape[1] == 1:
        return at_hits(lambda p: radiance(p, view), points, hit)
    return at_hits(lambda pv: radiance(pv[..., :3], pv[..., 3:]), torch.cat([points, view], dim=-1), hit)


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
