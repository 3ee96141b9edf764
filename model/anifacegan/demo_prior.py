"""A procedural head prior for the `tiny` backbone: a plausible 3D head without pretrained weights.

Without the official AniFaceGAN checkpoint the tiny backbone is random noise, so the offline demo would tune
noise. This module fits the tiny backbone's `generator` and `deform` parts, in about 2.5 minutes on one CPU
thread, to an analytic stylised bust (head, neck, shoulders) that face-api's detector and expression net read as
a face, also after the fit's blur (bench/demo_faces.py measures the whole demo path):

* the manifold sampler's level sets become shells around the head surface (supervised on 3-D points through
  `ManifoldSampler.field`, no rendering needed);
* the radiance SIREN is opaque inside the head, transparent outside and coloured with a painted-looking
  albedo (skin, hair, bold eyes, brows, nose shadow and mouth, garment) with baked shading; the background
  plane gets a backdrop;
* latents still matter, only for colour: skin, hair, backdrop and garment colours follow a fixed projection of
  the noise code, and z_id and noise reach nothing else of the radiance (`_restrict_latent_paths`), so stage 1
  can move a painting's palette onto the head without scrambling it;
* the deformation network is a *procedural stand-in* for learned expressions: the component of the
  expression code along the official "happiness" smile bends the mouth into a U (corners up and out, centre
  down), linearly in that component, and a zero expression moves nothing. It is not learned from faces.

`tiny_head_weights()` gives the fitted parts as safetensors named by a hash of the config, the code version and the
preset's result-deciding settings, so `load_backbone("tiny", weights=tiny_head_weights())` gives the demo a head
that turns and smiles. The default config's fit ships with the package (`data/tiny-*-<key>.safetensors`, ~120 kB):
the fit is chaotic (a float-rounding change in the renderer's kernels gives another bust, some of whose smiles
face-api barely reads), so every machine gets the one bust whose demo smile was measured
(`python -m bench.ship_head_prior`). Other configs are fitted once and cached.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import scipy.io
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from artmator.model.anifacegan.config import preset_config
from artmator.model.anifacegan.model import AniFaceGAN

# Bump whenever the head, the albedo, the losses or the fitting schedule change: it is part of the cache key.
CODE_VERSION = "head-prior-5"
log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
SMILE_FILE = DATA_DIR / "smile_01626.mat"
PARTS = ("generator", "deform")
VIEW_DIR = (0.0, 0.0, -1.0)  # the renderer's locked view direction (official inference)


@dataclass(frozen=True)
class HeadPriorConfig:
    """What the head prior fits and how long; every field is part of the cache key."""

    preset: str = "tiny"               # backbone preset whose generator/deform are fitted
    backbone_seed: int = 0             # `load_backbone` seed: initial weights and the (unfitted) VAEs
    seed: int = 0                      # sampling of points, latents and expressions during the fit
    fit_threads: int = 1               # torch threads during the fit: pinned (bit-stable); 1 is robust on busy CPUs
    # Shell layout: the sampler field is s = surface_level + level_slope * sdf near the surface, so the
    # renderer's levels 23 -> 8 sit from about sdf = +0.004 (just outside) to -0.011 (inside).
    surface_level: float = 19.0
    level_slope: float = 1000.0
    # Sampler fit (tiny ReLU MLP on 3-D points).
    sampler_steps: int = 1500
    sampler_points: int = 4096
    sampler_lr: float = 3e-3
    # Radiance fit (FiLM-SIREN + its mapping network) over freshly sampled latents each step.
    siren_steps: int = 3000
    siren_latents: int = 2             # latents per step (each with its own points)
    siren_points: int = 4096           # points per latent per step
    siren_face_share: float = 0.7      # share of the surface points drawn from the front of the face
    siren_background_share: float = 0.15  # share of the points on the background plane
    siren_first_gain: float = 2.6      # first-layer weights x this before the fit: reach the features' frequencies
    siren_lr: float = 3e-3
    mapping_lr: float = 5e-4
    trait_strength: float = 1.0        # how much latents shift skin/hair/backdrop/garment colours (0: all alike)
    noise_widen: float = 0.6           # fit latents' noise scaled by U(1, 1 + this): stays clean where stage 1 goes
    # Deformation fit (procedural smile).
    deform_steps: int = 1500
    deform_points: int = 2048
    deform_lr: float = 3e-3
    deform_first_gain: float = 3.0     # first-layer weights x this before the fit (the smile is small in world units)
    smile_lift: float = 0.01           # texture lift of the mouth corners (world units) at the happiness code
    # Optional photometric refinement through the real renderer.
    photometric_steps: int = 0
    photometric_resolution: int = 32
    photometric_lr: float = 2e-4

    def key(self) -> str:
        """Short content hash of this config, the code version and the preset's result-deciding settings."""
        blob = json.dumps({"config": asdict(self), "code": CODE_VERSION,
                           "preset": preset_config(self.preset).result_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- analytic head ----------------------------------------------------------------------------------------
# World frame of the backbone: y up, the frontal camera at (0, 0, 1) looks down -z, the image spans about
# |x|, |y| <= 0.1 at the origin. The head is ~0.08 wide and ~0.1 tall (crown to chin), on a neck and shoulders.

def _ellipsoid(p: torch.Tensor, centre, radii) -> torch.Tensor:
    """Approximate signed distance to an ellipsoid (exact on the surface, good nearby): (..., 3) -> (...)."""
    q = p - p.new_tensor(centre)
    r = p.new_tensor(radii)
    k0 = torch.norm(q / r, dim=-1)
    k1 = torch.norm(q / (r * r), dim=-1).clamp_min(1e-9)
    return k0 * (k0 - 1.0) / k1


def _capsule(p: torch.Tensor, a, b, radius: float) -> torch.Tensor:
    pa, ba = p - p.new_tensor(a), p.new_tensor(b) - p.new_tensor(a)
    h = ((pa * ba).sum(-1) / (ba * ba).sum()).clamp(0.0, 1.0)
    return torch.norm(pa - h.unsqueeze(-1) * ba, dim=-1) - radius


def _smin(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Smooth union (polynomial smooth minimum) with blend radius k."""
    h = (k - (a - b).abs()).clamp_min(0.0) / k
    return torch.minimum(a, b) - h * h * k / 4.0


def _smax(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    return -_smin(-a, -b, k)


# The parts below are laid out at unit scale; this sizes the head in the frame. 0.65 (a bust: head, neck and
# shoulders) rather than a face filling the frame: face-api's detector scores large faces low (the analytic head
# itself at 1.12: 0.19-0.64) and it loses faces to blur far sooner when they fill its input, and the tiny
# backbone's renders are blurred; at 0.65 a fitted render scores ~0.6-0.9 over +-20 deg of yaw.
HEAD_SCALE = 0.65
# Colour traits a latent controls (`latent_traits`): skin lightness, hair lightness, warmth (skin and hair),
# backdrop lightness, backdrop warmth, garment lightness.
N_TRAITS = 6


def head_sdf(p: torch.Tensor) -> torch.Tensor:
    """Signed-distance-like field of the stylised head (negative inside): points (..., 3) -> (...)."""
    return _unit_head_sdf(p / HEAD_SCALE) * HEAD_SCALE


def _unit_head_sdf(p: torch.Tensor) -> torch.Tensor:
    xm = torch.cat([p[..., :1].abs(), p[..., 1:]], dim=-1)  # mirror x: symmetric features defined once
    d = _ellipsoid(p, (0.0, 0.016, -0.010), (0.061, 0.070, 0.068))                    # cranium
    d = _smin(d, _ellipsoid(p, (0.0, -0.022, 0.012), (0.050, 0.058, 0.054)), 0.02)     # face and jaw
    d = _smin(d, _ellipsoid(p, (0.0, -0.066, 0.030), (0.021, 0.016, 0.020)), 0.02)     # chin
    d = _smin(d, _ellipsoid(xm, (0.028, -0.016, 0.044), (0.020, 0.018, 0.016)), 0.012)  # cheeks
    d = _smin(d, _ellipsoid(p, (0.0, 0.030, 0.050), (0.044, 0.011, 0.014)), 0.012)     # brow ridge
    d = _smin(d, _ellipsoid(p, (0.0, -0.008, 0.060), (0.010, 0.022, 0.014)), 0.008)    # nose bridge
    d = _smin(d, _ellipsoid(p, (0.0, -0.024, 0.068), (0.012, 0.009, 0.010)), 0.008)    # nose tip
    d = _smin(d, _ellipsoid(xm, (0.062, 0.002, -0.006), (0.008, 0.018, 0.012)), 0.008)  # ears
    d = _smax(d, -_ellipsoid(xm, (0.021, 0.012, 0.062), (0.012, 0.007, 0.012)), 0.008)  # eye sockets
    d = _smin(d, _capsule(p, (0.0, -0.05, -0.012), (0.0, -0.2, -0.02), 0.036), 0.025)  # neck
    d = _smin(d, _ellipsoid(p, (0.0, -0.25, -0.04), (0.19, 0.11, 0.085)), 0.03)          # shoulders
    return d


def head_normals(p: torch.Tensor) -> torch.Tensor:
    """Unit gradient of `head_sdf` (outward normal near the surface): (..., 3) -> (..., 3)."""
    with torch.enable_grad():
        q = p.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(head_sdf(q).sum(), q)
    return F.normalize(g, dim=-1)


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blob(p: torch.Tensor, centre, radii) -> torch.Tensor:
    """Soft 2-D-ish elliptical mask (1 inside, 0 outside) on the face: (..., 3) -> (...)."""
    q = (p - p.new_tensor(centre)) / p.new_tensor(radii)
    return _smoothstep(1.0, 0.6, torch.norm(q, dim=-1))


def _mix(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * w.unsqueeze(-1)


def head_albedo(p: torch.Tensor, traits: torch.Tensor | None = None) -> torch.Tensor:
    """Painted-looking colour with baked shading at points near the head surface: (N, 3) -> (N, 3) in [0, 1].

    traits (N, N_TRAITS) in about [-1, 1] (see `latent_traits`; zero: the mean head).
    The features are bold on purpose: the face detector and the expression classifier must still read them
    after the tiny SIREN has blurred them (a 1-px blur at 128 px already drops a face-api score from ~0.99 to
    ~0.5): dark eye sockets, lids and irises, thick dark brows, a shadow and nostrils under the nose, a wide
    dark mouth, hair framing the face down to the ears, a shadow under the jaw and a dark garment.
    """
    t = p.new_zeros(p.shape[0], N_TRAITS) if traits is None else traits
    normals = head_normals(p)
    p = p / HEAD_SCALE
    x, y, z = p.unbind(-1)
    xm = torch.cat([p[..., :1].abs(), p[..., 1:]], dim=-1)
    skin = p.new_tensor([0.86, 0.66, 0.54]) * (1.0 + 0.2 * t[:, :1])
    skin = skin + p.new_tensor([0.06, 0.0, -0.06]) * t[:, 2:3]
    hair = (p.new_tensor([0.22, 0.15, 0.10]) + p.new_tensor([0.2, 0.16, 0.11]) * t[:, 1:2]
            + p.new_tensor([0.06, 0.01, -0.05]) * t[:, 2:3])
    c = skin.expand(p.shape[0], 3)
    c = _mix(c, c * p.new_tensor([1.0, 0.93, 0.92]), _blob(xm, (0.030, -0.024, 0.05), (0.018, 0.014, 0.03)))  # blush
    c = _mix(c, c * 0.93, _smoothstep(-0.055, -0.075, y))                                     # neck a bit darker
    jaw = _smoothstep(-0.066, -0.08, y) * _smoothstep(-0.11, -0.085, y) * _smoothstep(0.0, 0.03, z)
    c = _mix(c, c * 0.6, jaw)                                                                  # shadow under the jaw
    # Garment on the shoulders, below a round neckline that dips at the front.
    neckline = -0.125 - 0.03 * _smoothstep(0.0, 0.05, z) * _smoothstep(0.05, 0.0, x.abs())
    garment = p.new_tensor([0.18, 0.18, 0.22]) + 0.15 * t[:, 5:6]
    c = _mix(c, garment.expand_as(c), _smoothstep(0.003, -0.003, y - neckline))
    # Hair cap: above a hairline that is high on the forehead, drops towards the sides and the back and
    # covers the temples down to the ears.
    front = _smoothstep(0.02, 0.05, z) * _smoothstep(0.045, 0.025, x.abs())
    hairline = 0.040 + 0.012 * front - 0.055 * _smoothstep(0.02, -0.04, z) - 0.02 * _smoothstep(0.035, 0.055, x.abs())
    hairline = hairline - 0.06 * _smoothstep(0.040, 0.056, x.abs()) * _smoothstep(0.045, 0.02, z)
    c = _mix(c, hair.expand_as(c), _smoothstep(-0.004, 0.004, y - hairline))
    # Eyes (shadowed socket, white, iris, upper lid), brows, nose shadow and nostrils, lips; front of the face only.
    on_face = _smoothstep(0.03, 0.045, z)
    c = _mix(c, c * 0.55, _blob(xm, (0.021, 0.014, 0.06), (0.017, 0.011, 0.04)) * on_face)
    eye = _blob(xm, (0.021, 0.012, 0.06), (0.011, 0.0055, 0.04)) * on_face
    iris = _blob(xm, (0.021, 0.012, 0.06), (0.0055, 0.0055, 0.04)) * on_face
    c = _mix(c, c.new_tensor([0.93, 0.91, 0.88]).expand_as(c), eye)
    c = _mix(c, c.new_tensor([0.12, 0.07, 0.05]).expand_as(c), iris)
    lid = _blob(xm, (0.021, 0.0164, 0.06), (0.0121, 0.0022, 0.04)) * on_face
    c = _mix(c, c.new_tensor([0.12, 0.07, 0.05]).expand_as(c), lid)
    arched = xm + F.pad((18.0 * (xm[..., :1] - 0.022) ** 2), (1, 1))        # brows arch: lower at the ends
    brow = _blob(arched, (0.022, 0.027, 0.06), (0.013, 0.0045, 0.04)) * on_face
    c = _mix(c, hair.expand_as(c) * 0.4, brow)
    c = _mix(c, c * 0.6, _blob(p, (0.0, -0.034, 0.07), (0.013, 0.0045, 0.04)) * on_face)      # under the nose
    nostrils = _blob(xm, (0.0055, -0.030, 0.07), (0.0035, 0.0022, 0.04)) * on_face
    c = _mix(c, c.new_tensor([0.25, 0.12, 0.10]).expand_as(c), nostrils)
    lips = _blob(p, (0.0, -0.046, 0.06), (0.021, 0.0075, 0.04)) * on_face
    c = _mix(c, c.new_tensor([0.50, 0.14, 0.14]).expand_as(c), lips)
    mouth_line = _blob(p, (0.0, -0.046, 0.06), (0.021, 0.0026, 0.04)) * on_face
    c = _mix(c, c.new_tensor([0.10, 0.03, 0.03]).expand_as(c), mouth_line)
    # Shading: key light from the upper left-front, baked (the renderer locks view dependence); its shading of
    # the nose, sockets and jaw helps the detector (a more frontal light: 63 % of frames detected, not 86 %).
    light = F.normalize(p.new_tensor([-0.35, 0.45, 1.0]), dim=0)
    shade = 0.45 + 0.7 * (normals @ light).clamp_min(0.0)
    return (c * shade.unsqueeze(-1)).clamp(0.02, 0.98)


def backdrop_colour(p: torch.Tensor, traits: torch.Tensor | None = None) -> torch.Tensor:
    """Muted painterly backdrop on the background plane: (N, 3) -> (N, 3); traits 3 and 4 set its lightness
    (0.22-0.78 at the centre) and warmth (blue-grey to sepia): stage 1 reaches a painting's background by
    moving the latent."""
    t = p.new_zeros(p.shape[0], N_TRAITS) if traits is None else traits
    base = p.new_tensor([0.50, 0.52, 0.55]) + 0.28 * t[:, 3:4] + p.new_tensor([0.15, 0.03, -0.15]) * t[:, 4:5]
    return (base * (1.0 + 0.9 * p[:, 1:2])).clamp(0.02, 0.98)   # lighter towards the top


# ---- procedural smile -------------------------------------------------------------------------------------

def smile_direction() -> torch.Tensor:
    """The official happiness expression code (64,), read from the packaged `.mat` (FFHQ 01626)."""
    return torch.as_tensor(scipy.io.loadmat(str(SMILE_FILE))["exp"], dtype=torch.float32).reshape(-1)


def smile_amount(z_exp: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Linear smile strength: projection of z_exp (B, 64) on the happiness code, 1 at happiness: (B,)."""
    return z_exp @ direction / (direction @ direction)


def smile_displacement(p: torch.Tensor, lift: float) -> torch.Tensor:
    """Where the texture at p moves for a unit smile (world units): (..., 3) -> (..., 3).

    The mouth bends into a U: its corners go up by ~1.2·lift and outward, its centre down by 0.4·lift (and
    the corners slightly back, following the face); the cheeks lift. One broad field over the lower face,
    since the tiny deformation network cannot resolve finer ones; zero away from the lower face.
    """
    x, y, z = (p / HEAD_SCALE).unbind(-1)
    side = torch.sign(x)
    u = (x / 0.02) ** 2                                                  # 0 at the centre, ~1 at the corners
    envelope = torch.exp(-((y + 0.046) / 0.032) ** 2 - (x / 0.045) ** 4)
    cheek = torch.exp(-(((x.abs() - 0.03) / 0.018) ** 2 + ((y + 0.024) / 0.016) ** 2))
    front = torch.sigmoid((z - 0.02) / 0.006)
    dx = lift * 0.5 * side * torch.sqrt(u + 1e-6).clamp(max=1.2) * envelope
    dy = lift * ((1.5 * u).clamp(max=1.6) - 0.4) * envelope + lift * 0.35 * cheek
    dz = -lift * 0.3 * u.clamp(max=1.0) * envelope
    return torch.stack([dx, dy, dz], dim=-1) * front.unsqueeze(-1)


# ---- sampling ---------------------------------------------------------------------------------------------

def surface_points(n: int, generator: torch.Generator, iters: int = 12) -> torch.Tensor:
    """~Uniform-ish points on the head surface by Newton projection of random points: (n, 3)."""
    p = (torch.rand(n, 3, generator=generator) * 2 - 1) * torch.tensor([0.08, 0.1, 0.09])
    p[:, 1] = p[:, 1].clamp_min(-0.12)
    for _ in range(iters):
        with torch.enable_grad():
            q = p.detach().requires_grad_(True)
            d = head_sdf(q)
            (g,) = torch.autograd.grad(d.sum(), q)
        p = (q - (d / (g * g).sum(-1).clamp_min(1e-6)).unsqueeze(-1) * g).detach()
    keep = (head_sdf(p).abs() < 2e-4) & (p[:, 1] > -0.13) & (p.norm(dim=-1) < 0.2)
    return p[keep]


def box_points(n: int, generator: torch.Generator, half: float = 0.13) -> torch.Tensor:
    """Uniform points in the cube the rays sample (any yaw up to ±30°): (n, 3)."""
    return (torch.rand(n, 3, generator=generator) * 2 - 1) * half


def near_surface(pool: torch.Tensor, n: int, generator: torch.Generator, inside: float, outside: float) -> torch.Tensor:
    """Surface points jittered along their normals by U(-inside, +outside): (n, 3)."""
    idx = torch.randint(0, pool.shape[0], (n,), generator=generator)
    p = pool[idx]
    t = torch.rand(n, 1, generator=generator) * (inside + outside) - inside
    return p + t * head_normals(p)


def latent_traits(z_id: torch.Tensor, noise: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """Colour traits of a latent: a fixed projection of [z_id, noise], squashed: (B, N_TRAITS) in (-1, 1).

    The fitted prior zeroes the z_id rows of `projection`: traits follow the noise code only."""
    return torch.tanh(torch.cat([z_id, noise], dim=-1) @ projection)


# ---- fitting ----------------------------------------------------------------------------------------------

@contextmanager
def _pinned_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _sampler_target(d: torch.Tensor, cfg: HeadPriorConfig) -> torch.Tensor:
    return cfg.surface_level + cfg.level_slope * d


def fit_sampler(backbone: AniFaceGAN, pool: torch.Tensor, cfg: HeadPriorConfig, g: torch.Generator) -> None:
    """Make the sampler's level sets shells around the head: s = surface_level + slope·sdf in a band around
    the surface, and only bounds (s above the outermost level outside, below the innermost inside) elsewhere."""
    sampler = backbone.generator.model_sample
    ws = backbone.config.warp_scale
    rs = backbone.config.render
    hi, lo = max(rs.levels_start, rs.levels_end), min(rs.levels_start, rs.levels_end)
    band = (hi - cfg.surface_level + 6.0) / cfg.level_slope, (cfg.surface_level - lo + 6.0) / cfg.level_slope
    opt = torch.optim.Adam(sampler.parameters(), lr=cfg.sampler_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.sampler_steps, eta_min=cfg.sampler_lr * 0.05)
    n_near = cfg.sampler_points // 2
    for _ in range(cfg.sampler_steps):
        p = torch.cat([near_surface(pool, n_near, g, band[1], band[0]), box_points(cfg.sampler_points - n_near, g)])
        d = head_sdf(p)
        s = sampler.field(p * ws).squeeze(-1)                         # neutral canonical frame = warped world
        target = _sampler_target(d, cfg)
        in_band = (d > -band[1]) & (d < band[0])
        loss_band = ((s - target) ** 2 * in_band).sum() / in_band.sum().clamp_min(1)
        # Outside the band only the side matters: no level crossings outside, all levels crossed inside.
        loss_out = (F.relu(hi + 3.0 - s) ** 2 * (d >= band[0])).mean()
        loss_in = (F.relu(s - (lo - 3.0)) ** 2 * (d <= -band[1])).mean()
        loss = loss_band + loss_out + loss_in
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def _sigma_target(d: torch.Tensor) -> torch.Tensor:
    """Raw density: ~80 (opaque within a shell) inside, -8 (clear) outside, switching within ~2e-3 of the surface."""
    return -8.0 + 88.0 * torch.sigmoid(-(d + 0.0008) / 0.0008)


def _sample_latents(backbone: AniFaceGAN, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    z_id = backbone.vae_id.decode(torch.randn(n, backbone.config.vae_latent, generator=g))
    return z_id, torch.randn(n, backbone.config.noise_dim, generator=g)


def fit_radiance(backbone: AniFaceGAN, pool: torch.Tensor, projection: torch.Tensor, cfg: HeadPriorConfig,
                 g: torch.Generator) -> None:
    """Fit the FiLM-SIREN and its mapping network: opaque inside, clear outside, albedo on the surface,
    backdrop on the background plane, for fresh latents each step (truncated by random psi as at inference)."""
    siren = backbone.generator.siren
    rs = backbone.config.render
    with torch.no_grad():
        # The initial first layer only has frequencies of about the head's size; eyes and mouth need ~3x more.
        siren.network[0].layer.weight.mul_(cfg.siren_first_gain)
    _restrict_latent_paths(siren, backbone.config.id_dim)
    opt = torch.optim.Adam([
        {"params": [p for n, p in siren.named_parameters() if not n.startswith("mapping_network")], "lr": cfg.siren_lr},
        {"params": siren.mapping_network.parameters(), "lr": cfg.mapping_lr},
    ])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / cfg.siren_steps)))
    B, N = cfg.siren_latents, cfg.siren_points
    n_bg, n_box = int(N * cfg.siren_background_share), N // 8
    n_surf = N - n_bg - n_box
    n_face = int(n_surf * cfg.siren_face_share)
    unit = pool / HEAD_SCALE
    face_pool = pool[(unit[:, 2] > 0.02) & (unit[:, 0].abs() < 0.05) & (unit[:, 1] > -0.085) & (unit[:, 1] < 0.05)]
    view = torch.tensor(VIEW_DIR).expand(B, N, 3)
    for _ in range(cfg.siren_steps):
        z_id, noise = _sample_latents(backbone, B + 64, g)
        widen = 1.0 + cfg.noise_widen * torch.rand(B, 1, generator=g)
        noise = torch.cat([noise[:B] * widen, noise[B:]])
        freq, phase = backbone.modulation(z_id, noise)                   # (B+64, (L+1)·H)
        avg_f, avg_p = freq[B:].mean(0, keepdim=True), phase[B:].mean(0, keepdim=True)
        psi = 0.4 + 0.6 * torch.rand(B, 1, generator=g)                  # truncation as used at inference
        freq, phase = avg_f + psi * (freq[:B] - avg_f), avg_p + psi * (phase[:B] - avg_p)
        traits = latent_traits(z_id[:B], noise[:B], projection) * cfg.trait_strength * psi   # (B, N_TRAITS)
        surf = torch.cat([near_surface(face_pool, B * n_face, g, 0.012, 0.004).view(B, n_face, 3),
                          near_surface(pool, B * (n_surf - n_face), g, 0.012, 0.004).view(B, n_surf - n_face, 3)], 1)
        box = box_points(B * n_box, g).view(B, n_box, 3)
        bg = torch.cat([(torch.rand(B, n_bg, 2, generator=g) * 2 - 1) * 0.2,
                        torch.full((B, n_bg, 1), rs.background_z)], dim=-1)
        pts = torch.cat([surf, box, bg], dim=1)                          # (B, N, 3)
        d = head_sdf(pts)
        out = siren(pts, freq, phase, view)                              # (B, N, 4)
        tr = traits[:, None, :].expand(B, N, N_TRAITS)
        colour = torch.cat([
            head_albedo(surf.reshape(-1, 3), tr[:, :n_surf].reshape(-1, N_TRAITS)).view(B, n_surf, 3),
            backdrop_colour(bg.reshape(-1, 3), tr[:, n_surf + n_box:].reshape(-1, N_TRAITS)).view(B, n_bg, 3),
        ], dim=1)
        rgb = torch.cat([out[:, :n_surf, :3], out[:, n_surf + n_box:, :3]], dim=1)
        loss_rgb = ((rgb - colour) ** 2).mean()
        loss_sigma = ((out[..., 3] - _sigma_target(d)) / 40.0).pow(2).mean()
        loss = 10.0 * loss_rgb + loss_sigma
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        _restrict_latent_paths(siren, backbone.config.id_dim)


def _restrict_latent_paths(siren, id_dim: int) -> None:
    """Keep the latent away from what makes stage 1 scramble the image: the radiance mapping network ignores
    z_id (stage 1's Adam moves it ~10x beyond its typical size) and modulates only the phases of layers 1..L
    (a frequency change, or any change of the first layer, moves the high-frequency sines in proportion to
    |x|: the far background and the face's details turn to noise). The other modulations are the last
    layer's biases: the same for every latent."""
    mapping = siren.mapping_network.network
    half = mapping[-1].weight.shape[0] // 2                              # [frequencies | phases]
    with torch.no_grad():
        mapping[0].weight[:, :id_dim] = 0.0
        mapping[-1].weight[: half + siren.hidden_dim] = 0.0


def _project_on_smile(deform, direction: torch.Tensor) -> None:
    """Make the deformation's mapping network see only the smile amount: the identity columns of its first
    layer are zeroed and the expression columns restricted to the (normalised) happiness direction."""
    unit = direction / direction.norm()
    with torch.no_grad():
        w = deform.mapping_network.network[0].weight                    # (H, id_dim + exp_dim)
        n_exp = unit.numel()
        w[:, :-n_exp] = 0.0
        w[:, -n_exp:] = (w[:, -n_exp:] @ unit)[:, None] * unit[None]


def fit_deform(backbone: AniFaceGAN, pool: torch.Tensor, cfg: HeadPriorConfig, g: torch.Generator) -> None:
    """Fit the deformation network to the procedural smile: offset = -amount(z_exp) · displacement(x).

    The renderer looks colours up at (observation + offset) in world units, so a texture that should appear
    moved by +d at x needs the offset -d there. The mapping network is kept rank-1 on the happiness direction
    (so only the smile amount matters, identity does not); rows with zero expression teach "no offset".
    """
    deform = backbone.deform
    with torch.no_grad():
        deform.network[0].layer.weight.mul_(cfg.deform_first_gain)   # as for the SIREN: finer initial frequencies
    deform.requires_grad_(True)
    direction = smile_direction()
    _project_on_smile(deform, direction)
    lower_face = pool[(pool[:, 2] > 0.02) & (pool[:, 1] < 0.0) & (pool[:, 1] > -0.1) & (pool[:, 0].abs() < 0.055)]
    opt = torch.optim.Adam(deform.parameters(), lr=cfg.deform_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / cfg.deform_steps)))
    B, N = 8, cfg.deform_points
    # Neutral rows count 4x: "no expression moves nothing" must hold tightly, also at the corners of the box.
    neutral_weight = torch.ones(B)
    neutral_weight[: B // 4] = 4.0
    for _ in range(cfg.deform_steps):
        z_id, _ = _sample_latents(backbone, B, g)
        other = backbone.vae_exp.decode(torch.randn(B, backbone.config.vae_latent, generator=g))
        a = torch.rand(B, 1, generator=g) * 2.5 - 0.75                   # smile strengths in [-0.75, 1.75]
        mix = (torch.rand(B, 1, generator=g) < 0.5).float()
        z_exp = a * direction + mix * other
        z_exp[: B // 4] = 0.0                                             # neutral rows: nothing moves
        amount = smile_amount(z_exp, direction)                           # (B,)
        idx = torch.randint(0, lower_face.shape[0], (B * N // 2,), generator=g)
        pts = torch.cat([lower_face[idx], near_surface(pool, B * N // 4, g, 0.012, 0.004), box_points(B * N // 4, g)])
        pts = pts.view(B, N, 3)
        target = -amount[:, None, None] * smile_displacement(pts, cfg.smile_lift)   # (B, N, 3)
        freq, phase = deform.modulation(z_id, z_exp)
        _, offsets = deform.forward_modulated(pts, freq, phase)
        err = ((offsets - target) / cfg.smile_lift).pow(2).mean(dim=(1, 2))          # (B,)
        loss = (err * neutral_weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        _project_on_smile(deform, direction)
    deform.requires_grad_(False)


def reference_render(yaw_deg: float, resolution: int, traits: torch.Tensor | None = None, pitch_deg: float = 0.0,
                     steps: int = 64, smile_lift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sphere-traced image of the analytic head with the backbone's camera: ((3, H, W) in [0, 1], mask (1, H, W)).

    smile_lift > 0 shows the procedural smile as the fitted deformation should: the texture at p moved by
    `smile_displacement(p, smile_lift)` (HeadPriorConfig.smile_lift is the one at the happiness code).
    """
    from artmator.model.anifacegan import rays as R
    from artmator.model.camera import degrees_to_official

    rs = preset_config("tiny").render
    rays = R.make_rays(degrees_to_official(torch.tensor([yaw_deg])), degrees_to_official(torch.tensor([pitch_deg])),
                       resolution, rs.fov_deg)
    o, dirs = rays.origins[0], rays.directions[0]                        # (3,), (R, 3)
    t = torch.full((dirs.shape[0], 1), rs.ray_start)
    for _ in range(steps):
        t = t + head_sdf(o + dirs * t).unsqueeze(-1) * 0.9
    p = o + dirs * t
    hit = (head_sdf(p).abs() < 1e-3) & (t.squeeze(-1) < rs.ray_end)
    bg = R.intersect_plane_z(rays, rs.background_z)[0, :, 0]
    tr = None if traits is None else traits.reshape(1, -1).expand(dirs.shape[0], -1)
    lookup = p - smile_displacement(p, smile_lift) if smile_lift else p
    colour = torch.where(hit.unsqueeze(-1), head_albedo(lookup, tr), backdrop_colour(bg, tr))
    img = colour.T.reshape(3, resolution, resolution)
    return img, hit.float().reshape(1, resolution, resolution)


def fit_photometric(backbone: AniFaceGAN, cfg: HeadPriorConfig, g: torch.Generator) -> None:
    """A few steps of image-space fitting of the generator at the mean latent against sphere-traced targets."""
    if cfg.photometric_steps <= 0:
        return
    res = cfg.photometric_resolution
    yaws = [-20.0, -10.0, 0.0, 10.0, 20.0]
    targets = torch.stack([reference_render(y, res)[0] for y in yaws]) * 2 - 1   # (V, 3, H, W)
    opt = torch.optim.Adam(backbone.generator.parameters(), lr=cfg.photometric_lr)
    z_id = backbone.vae_id.decode(torch.zeros(1, backbone.config.vae_latent))
    noise = torch.zeros(1, backbone.config.noise_dim)
    for i in range(cfg.photometric_steps):
        v = int(torch.randint(0, len(yaws), (1,), generator=g))
        backbone._avg_modulation = None
        out = backbone.render(z_id, torch.zeros(1, backbone.config.exp_dim), noise, yaws[v], 0.0, res, psi=1.0)
        loss = (out.image[0] - targets[v]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    backbone._avg_modulation = None


def fit_head_prior(config: HeadPriorConfig = HeadPriorConfig()) -> dict[str, dict[str, torch.Tensor]]:
    """Fit the preset's `generator` and `deform` to the procedural head; returns {part: state dict} (CPU, float32).

    Deterministic: fixed seeds and step counts, threads pinned to `config.fit_threads`.
    """
    from artmator.model import load_backbone

    with _pinned_threads(config.fit_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        backbone = load_backbone(config.preset, seed=config.backbone_seed)
        backbone.generator.train()
        g = torch.Generator().manual_seed(config.seed)
        pool = surface_points(60000, g)
        proj_dim = backbone.config.id_dim + backbone.config.noise_dim
        # Unit-variance traits for N(0, 1) noise; z_id does not reach the radiance (_restrict_latent_paths).
        projection = torch.randn(proj_dim, N_TRAITS, generator=g) / math.sqrt(backbone.config.noise_dim) * 1.2
        projection[: backbone.config.id_dim] = 0.0
        for name, stage in (("sampler", lambda: fit_sampler(backbone, pool, config, g)),
                            ("radiance", lambda: fit_radiance(backbone, pool, projection, config, g)),
                            ("deform", lambda: fit_deform(backbone, pool, config, g)),
                            ("photometric", lambda: fit_photometric(backbone, config, g))):
            start = time.perf_counter()
            stage()
            log.info("head prior: %s fitted in %.1fs", name, time.perf_counter() - start)
        backbone._avg_modulation = None
        return {part: {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in backbone.part(part).state_dict().items()}
                for part in PARTS}


# ---- cache ------------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("ARTMATOR_CACHE") or Path.home() / ".cache" / "artmator")


def _atomic_save(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write to a temp file in the same directory, then rename: readers never see a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)                                            # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prior_paths(root: Path, config: HeadPriorConfig) -> dict[str, Path]:
    """Where a directory keeps the fitted parts of `config`: {part: root/<preset>-<part>-<key>.safetensors}."""
    key = config.key()
    return {part: root / f"{config.preset}-{part}-{key}.safetensors" for part in PARTS}


def save_prior(states: dict[str, dict[str, torch.Tensor]], root: Path, config: HeadPriorConfig,
               note: str | None = None) -> dict[str, Path]:
    """Write fitted parts atomically under `root`, with the config and code version in their metadata."""
    root.mkdir(parents=True, exist_ok=True)
    paths = prior_paths(root, config)
    for part, path in paths.items():
        # One metadata key: safetensors stores metadata as a hash map, so several keys come out in any order.
        info = {"code_version": CODE_VERSION, "config": asdict(config), "key": config.key(), "part": part}
        if note:
            info["note"] = note
        _atomic_save(states[part], path, {"head_prior": json.dumps(info, sort_keys=True)})
    return paths


def tiny_head_weights(cache_dir: str | os.PathLike | None = None, config: HeadPriorConfig = HeadPriorConfig()) -> dict[str, str]:
    """{"generator": path, "deform": path} of the fitted head prior: shipped, cached, or fitted now and cached.

    The package's `data/` is looked in first (the default config's fit ships there). Otherwise files live under
    `cache_dir`, else `$ARTMATOR_CACHE`, else `~/.cache/artmator`, in `head_prior/`, named by `config.key()`.
    Two processes racing both fit, and each rename is atomic, so neither sees a partial file.
    """
    shipped = prior_paths(DATA_DIR, config)
    if all(p.is_file() for p in shipped.values()):
        return {part: str(p) for part, p in shipped.items()}
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "head_prior"
    paths = prior_paths(root, config)
    if not all(p.is_file() for p in paths.values()):
        save_prior(fit_head_prior(config), root, config)
    return {part: str(p) for part, p in paths.items()}


__all__ = [
    "CODE_VERSION", "DATA_DIR", "HeadPriorConfig", "fit_head_prior", "head_albedo", "head_sdf", "prior_paths",
    "reference_render", "save_prior",
    "smile_amount", "smile_direction", "smile_displacement", "tiny_head_weights",
]
