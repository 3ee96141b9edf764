"""AniFaceGAN as a `Backbone`: VAEs -> codes, deformation -> canonical space, manifolds -> radiance -> pixels."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from artmator.model.anifacegan import PARTS
from artmator.model.anifacegan import rays as R
from artmator.model.anifacegan.checkpoints import read_part
from artmator.model.anifacegan.config import AniFaceGANConfig
from artmator.model.anifacegan.deform import ExpressionDeformation
from artmator.model.anifacegan.expressions import load_expression
from artmator.model.anifacegan.radiance import ManifoldSampler, RadianceGenerator, RadianceSiren
from artmator.model.anifacegan.renderer import (at_hits, composite, crossing_indices, crossing_pairs, crossing_valid,
                                                 interpolate_crossings, intersect_manifolds, manifold_opacity,
                                                 radiance_at_hits, widen_colour)
from artmator.model.anifacegan.vae import CoefficientVAE
from artmator.model.backbone import Backbone, ExpressionError, FieldBox, FieldSample, Latent, RenderResult
from artmator.model.camera import as_batch, degrees_to_official, rays_to_image, render_ray_chunks


def build_parts(config: AniFaceGANConfig) -> dict[str, nn.Module]:
    """Freshly initialised parts (official initialisation schemes) for `config`."""
    ws = config.warp_scale
    siren = RadianceSiren(config.id_dim + config.noise_dim, config.siren_hidden, config.mapping_hidden, config.siren_layers, ws)
    sampler = ManifoldSampler(config.sampler_hidden, ws, config.sampler_center)
    generator = RadianceGenerator(siren, sampler)
    generator.reset_parameters()
    deform = ExpressionDeformation(config.id_dim + config.exp_dim, config.deform_hidden, config.deform_mapping_hidden,
                                   config.deform_layers, ws)
    deform.reset_parameters()
    vae_id = CoefficientVAE(config.id_dim, config.vae_latent, config.vae_hidden, config.vae_layers)
    vae_exp = CoefficientVAE(config.exp_dim, config.vae_latent, config.vae_hidden, config.vae_layers)
    return {"generator": generator, "deform": deform, "vae_id": vae_id, "vae_exp": vae_exp}


class AniFaceGAN(Backbone):
    """The AniFaceGAN backbone. Parts: `generator` (tunable), `deform`, `vae_id`, `vae_exp` (fixed)."""

    PARTS = WEIGHT_PARTS = PARTS
    COMPILED_METHODS = ("_render_rays",)    # one ray chunk: deformation, manifolds, FiLM-SIREN, compositing

    def __init__(self, config: AniFaceGANConfig, parts: Mapping[str, nn.Module], preset: str = "custom"):
        super().__init__()
        self.config = config
        self.preset = preset
        self.generator: RadianceGenerator = parts["generator"]
        self.deform: ExpressionDeformation = parts["deform"]
        self.vae_id: CoefficientVAE = parts["vae_id"]
        self.vae_exp: CoefficientVAE = parts["vae_exp"]
        self.deform.requires_grad_(False)
        self._avg_modulation: tuple[torch.Tensor, torch.Tensor] | None = None

    # ---- parts and weights -------------------------------------------------------------------------------
    def read_part(self, name: str, uri: str, storage_options: Mapping | None = None) -> dict[str, torch.Tensor]:
        """Also reads the official torch_ema files (`ema.pth`: the averaged tensors in parameter order)."""
        names = [n for n, _ in self.part(name).named_parameters()]
        return read_part(name, uri, names, storage_options)

    def load_part(self, name: str, state: Mapping[str, torch.Tensor], source: str) -> None:
        super().load_part(name, state, source)
        self._avg_modulation = None

    def demo_prior(self):
        """The tiny preset's procedural 3D head (`model.anifacegan.demo_prior`), fitted once and cached."""
        if self.preset != "tiny":
            return None
        from artmator.model.anifacegan.demo_prior import tiny_head_weights

        return tiny_head_weights

    def tunable(self) -> RadianceGenerator:
        return self.generator

    def with_tunable(self, module: nn.Module) -> "AniFaceGAN":
        parts = {"generator": module, "deform": self.deform, "vae_id": self.vae_id, "vae_exp": self.vae_exp}
        other = AniFaceGAN(self.config, parts, self.preset)
        if self.compile_backend:
            other.set_compile(True, self.compile_backend)
        return other

    @property
    def default_resolution(self) -> int:
        return self.config.train_resolution

    @property
    def face_framing(self):
        from artmator.model.faces.align import FaceFraming

        return FaceFraming(*self.config.face_framing)

    @property
    def device(self) -> torch.device:
        return self.generator.siren.mapping_network.network[0].weight.device

    # ---- latents -----------------------------------------------------------------------------------------
    @property
    def inverted_latents(self) -> tuple[str, ...]:
        return ("z_id", "z_exp", "noise")

    @property
    def supports_expressions(self) -> bool:
        return True

    @property
    def default_expressions(self) -> tuple[str, ...]:
        return ("happiness",)

    def load_expression(self, spec: str, storage_options: Mapping | None = None) -> torch.Tensor:
        """`neutral`, `happiness` or a Deep3DFaceRecon `.mat` path/URI -> (64,) 3DMM expression coefficients."""
        return load_expression(spec, storage_options)

    def sample_latent(self, batch: int, generator: torch.Generator | None = None) -> Latent:
        """Identity from the identity VAE, neutral expression (zero coefficients), Gaussian noise."""
        with torch.no_grad():
            z_id = self.vae_id.sample(batch, generator)
            noise = torch.randn(batch, self.config.noise_dim, generator=generator,
                                device=generator.device if generator else "cpu").to(self.device)
        z_exp = torch.zeros(batch, self.config.exp_dim, device=self.device)
        return {"z_id": z_id, "z_exp": z_exp, "noise": noise}

    def sample_expression(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.vae_exp.sample(batch, generator)

    def with_expression(self, latent: Latent, expression: torch.Tensor) -> Latent:
        exp = torch.as_tensor(expression, dtype=torch.float32, device=self.device)
        if exp.shape[-1] != self.config.exp_dim:
            raise ExpressionError(f"expression codes have {self.config.exp_dim} coefficients, got shape {tuple(exp.shape)}")
        batch = latent["z_id"].shape[0]
        return {**latent, "z_exp": exp.reshape(-1, self.config.exp_dim).expand(batch, -1)}

    # ---- modulation and truncation -----------------------------------------------------------------------
    def modulation(self, z_id: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Radiance mapping network: [z_id, noise] (B, 160) -> raw freq, phase (B, (L+1)·H) each."""
        return self.generator.siren.mapping_network(torch.cat([z_id, noise], dim=-1))

    def average_modulation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean raw freq/phase over sampled identities and noise (seeded, cached): the truncation centre."""
        if self._avg_modulation is None:
            g = torch.Generator().manual_seed(0)
            n = self.config.truncation_samples
            with torch.no_grad():
                z_id = self.vae_id.decode(torch.randn(n, self.config.vae_latent, generator=g).to(self.device))
                noise = torch.randn(n, self.config.noise_dim, generator=g).to(self.device)
                freq, phase = self.modulation(z_id, noise)
            self._avg_modulation = (freq.mean(0, keepdim=True), phase.mean(0, keepdim=True))
        return self._avg_modulation

    def truncate(self, freq: torch.Tensor, phase: torch.Tensor, psi: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Truncation trick: move freq/phase towards their average by factor psi (psi = 1: unchanged)."""
        if psi == 1:
            return freq, phase
        avg_f, avg_p = self.average_modulation()
        return avg_f + psi * (freq - avg_f), avg_p + psi * (phase - avg_p)

    # ---- rendering ---------------------------------------------------------------------------------------
    def render(self, z_id: torch.Tensor, z_exp: torch.Tensor, noise: torch.Tensor, yaw_deg=0.0, pitch_deg=0.0,
               resolution: int | None = None, *, psi: float | None = None, chunk_rays: int | None = None) -> RenderResult:
        """Render codes z_id (B, 80), z_exp (B, 64), noise (B, 80) at user angles (degrees, 0 = frontal).

        psi defaults to the preset's truncation (0.7, as the official inference); use psi=1 for inverted latents.
        """
        batch = z_id.shape[0]
        yaw = degrees_to_official(as_batch(yaw_deg, batch, z_id.device))
        pitch = degrees_to_official(as_batch(pitch_deg, batch, z_id.device))
        return self.render_official(z_id, z_exp, noise, yaw, pitch, resolution or self.config.train_resolution,
                                    psi=self.config.psi if psi is None else psi, chunk_rays=chunk_rays)

    def render_latent(self, latent: Latent, yaw_deg, pitch_deg, resolution: int, *, psi: float = 1.0,
                      chunk_rays: int | None = None) -> RenderResult:
        return self.render(latent["z_id"], latent["z_exp"], latent["noise"], yaw_deg, pitch_deg, resolution,
                           psi=psi, chunk_rays=chunk_rays)

    def render_official(self, z_id, z_exp, noise, yaw: torch.Tensor, pitch: torch.Tensor, resolution: int, *,
                        psi: float = 1.0, chunk_rays: int | None = None) -> RenderResult:
        """Render at official radians: yaw, pitch (B,) with pi/2 frontal."""
        rs = self.config.render
        freq, phase = self.truncate(*self.modulation(z_id, noise), psi)          # (B, (L+1)·H) each
        d_freq, d_phase = self.deform.modulation(z_id, z_exp)                   # (B, layers·H_d) each
        rays = R.make_rays(yaw, pitch, resolution, rs.fov_deg)
        default_chunk = rs.cpu_chunk_rays if z_id.device.type == "cpu" else rs.chunk_rays
        color, depth, opacity = render_ray_chunks(self._render_rays, (freq, phase, d_freq, d_phase), rays,
                                                  chunk_rays, default_chunk)           # (B, R, C) each
        return RenderResult(image=rays_to_image(color, resolution) * 2 - 1, depth=rays_to_image(depth, resolution),
                            opacity=rays_to_image(opacity, resolution))

    # ---- the 3-D field (mesh export) ---------------------------------------------------------------------
    @property
    def field_box(self) -> FieldBox:
        """The cube the deformation network maps to [-1, 1] (warp 2 / box_side): the renderer's ray segment
        [ray_start, ray_end] and its field of view lie inside it."""
        half = self.config.box_side / 2
        return FieldBox((-half, -half, -half), (half, half, half))

    def sample_field(self, latent: Latent, points: torch.Tensor, *, psi: float = 1.0) -> FieldSample:
        """The radiance manifolds' field at world points (B, N, 3), as `_render_rays` evaluates it on manifolds.

        Occupancy is the opacity a manifold sample at the point would get in `composite`; the renderer samples
        only between the outermost and innermost level, and nothing outside the outermost one is ever seen, so
        occupancy is 0 there (inside the innermost level the field is kept: rays that got that far are absorbed).
        Colour is seen along -z, as the official inference renders it (`lock_view_dependence`)."""
        rs = self.config.render
        freq, phase = self.truncate(*self.modulation(latent["z_id"], latent["noise"]), psi)
        d_freq, d_phase = self.deform.modulation(latent["z_id"], latent["z_exp"])
        canonical, offsets = self.deform.forward_modulated(points, d_freq, d_phase)      # (B, N, 3) each
        level = self.generator.model_sample.field(canonical)[..., 0]                     # (B, N)
        view = torch.zeros_like(points)
        view[..., 2] = -1
        rgb_sigma = self.generator.siren(points + offsets, freq, phase, view)            # (B, N, 4)
        occupancy = manifold_opacity(rgb_sigma[..., 3], rs.alpha_delta)
        occupancy = torch.where(level > max(rs.levels_start, rs.levels_end), torch.zeros_like(occupancy), occupancy)
        colour = widen_colour(rgb_sigma[..., :3], rs.rgb_widen).clamp(0, 1)
        return FieldSample(occupancy=occupancy, color=colour)

    def morph_points(self, latent: Latent, target: Latent, points: torch.Tensor, iterations: int = 16) -> torch.Tensor:
        """Where surface points of `latent` (B, N, 3) go under `target`'s expression (same identity).

        The radiance FiLM-SIREN, which gives the surface its density and colour, reads the field at x + o(x)
        (`sample_field`: world points plus the deformation's offsets), so the point that shows under `target`
        what `p` shows under `latent` solves x + o_t(x) = p + o_l(p): the fixed point x <- p + o_l(p) - o_t(x),
        which converges while the offsets vary slowly at the face's scale (|do/dx| < 1)."""
        d_src = self.deform.modulation(latent["z_id"], latent["z_exp"])
        d_tgt = self.deform.modulation(target["z_id"], target["z_exp"])
        _, offsets = self.deform.forward_modulated(points, *d_src)                    # (B, N, 3)
        goal = points + offsets
        x = points
        for _ in range(iterations):
            _, moved = self.deform.forward_modulated(x, *d_tgt)
            x = goal - moved
        return x

    def _deformed_field(self, points: torch.Tensor, d_freq, d_phase) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, N, 3) -> deformation offsets (B, N, 3) and the sampler field (B, N, 1) there."""
        canonical, offsets = self.deform.forward_modulated(points, d_freq, d_phase)
        return offsets, self.generator.model_sample.field(canonical)

    def _crossings_grad_at_hits(self, coarse, levels, d_freq, d_phase):
        """`intersect_manifolds` for a render with gradients, with the same values and gradients for less work:
        the crossings read the field and the offsets only at the two coarse samples around each level a ray
        really crosses, so autograd needs just those. All S coarse samples run without autograd to find the
        crossings; the deformation and the sampler then run again, recorded, at the hit pairs only (the demo
        head prior's rays cross about a fifth of their levels: ~3 recorded samples a ray instead of 16)."""
        B, n, S, _ = coarse.shape
        L = levels.shape[0]
        with torch.no_grad():      # detached: a module call here must not look differentiable (FlopCounterMode)
            offsets, field = self._deformed_field(coarse.reshape(B, n * S, 3), d_freq.detach(), d_phase.detach())
            field = field.reshape(B, n, S, 1)
            samples = torch.cat([coarse, offsets.reshape(B, n, S, 3), field], dim=-1)    # (B, R, S, 7)
            around = crossing_pairs(samples, crossing_indices(field, levels))            # (B, R, L, 2, 7)
            points, pairs = around[..., :3], around[..., 3:]                             # (B, R, L, 2, 3 | 4)
            hit = crossing_valid(pairs[..., 3:], levels).reshape(B, n * L)

        def recorded(p):                                     # (B, M, 6) pairs of points -> (B, M, 8)
            offsets, field = self._deformed_field(p.reshape(B, -1, 3), d_freq, d_phase)
            return torch.cat([offsets, field], dim=-1).reshape(B, -1, 8)

        pairs = at_hits(recorded, points.reshape(B, n * L, 6), hit, pairs.reshape(B, n * L, 8))
        pairs = pairs.reshape(B, n, L, 2, 4)
        return interpolate_crossings(points, pairs[..., :3], pairs[..., 3:], levels)

    def _render_rays(self, freq, phase, d_freq, d_phase, origins, directions):
        """One chunk of rays: directions (B, R, 3) -> colour (B, R, 3) in [0, 1], depth, opacity (B, R, 1)."""
        rs = self.config.render
        rays = R.Rays(origins=origins, directions=directions)
        B, n, _ = directions.shape
        S, L = rs.coarse_samples, rs.num_levels
        with torch.no_grad():
            coarse = R.sample_along_rays(rays, rs.ray_start, rs.ray_end, S)        # (B, R, S, 3)
            background = R.intersect_plane_z(rays, rs.background_z)              # (B, R, 1, 3)
            levels = torch.linspace(rs.levels_start, rs.levels_end, L, device=directions.device)
        if rs.skip_empty_samples and torch.is_grad_enabled():
            obs, canon, valid = self._crossings_grad_at_hits(coarse, levels, d_freq, d_phase)
        else:
            offsets, field = self._deformed_field(coarse.reshape(B, n * S, 3), d_freq, d_phase)
            obs, canon, valid = intersect_manifolds(field.reshape(B, n, S, 1), coarse, offsets.reshape(B, n, S, 3),
                                                    levels)
        obs = torch.cat([obs, background], dim=2)                                 # (B, R, L+1, 3)
        canon = torch.cat([canon, background], dim=2)
        valid = torch.cat([valid, torch.ones_like(valid[:, :, :1])], dim=2)       # (B, R, L+1, 1)
        if rs.lock_view_dependence:
            view = directions.new_tensor([0.0, 0.0, -1.0]).expand(B, 1, 3)       # one direction for every point
        else:
            view = directions.unsqueeze(2).expand(B, n, L + 1, 3).reshape(B, -1, 3)

        def radiance(points, view_dirs):                                         # (B, N, 3) -> (B, N, 4)
            return self.generator.siren(points, freq, phase, view_dirs)

        points = canon.reshape(B, -1, 3)
        if rs.skip_empty_samples:
            rgb_sigma = radiance_at_hits(radiance, points, valid.reshape(B, -1) > 0, view)
        else:
            rgb_sigma = radiance(points, view)
        rgb_sigma = rgb_sigma.reshape(B, n, L + 1, 4)                           # (B, R, L+1, 4)
        with torch.no_grad():
            dist = torch.norm(obs - origins[:, None, None, :], dim=-1, keepdim=True)
        color, depth, opacity, _ = composite(rgb_sigma, dist, valid, alpha_delta=rs.alpha_delta, rgb_widen=rs.rgb_widen)
        return color, depth, opacity

