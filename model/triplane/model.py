"""A tri-plane generator (EG3D-style) as a `Backbone`: w -> three feature planes -> decoder -> volume rendering.

Parts: `mapping` (z -> w, fixed: stage 1 inverts w, as PTI does for StyleGAN-family generators) and `generator`
(plane synthesis + decoder, tunable: what stage 2 adapts). No expression codes.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from artmator.model.backbone import Backbone, FieldBox, FieldSample, Latent, RenderResult
from artmator.model.camera import as_batch, degrees_to_official, make_rays, rays_to_image, render_ray_chunks
from artmator.model.triplane import PARTS
from artmator.model.triplane.config import TriplaneConfig
from artmator.model.triplane.networks import MappingNetwork, PlaneDecoder, PlaneSynthesis, TriplaneGenerator
from artmator.model.triplane.volume import composite, sample_depths, sample_opacity, sample_planes


def build_parts(config: TriplaneConfig) -> dict[str, nn.Module]:
    """Freshly initialised parts for `config` (draws from torch's global generator: seed it first)."""
    mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers)
    mapping.reset_parameters()
    mapping.estimate_w_avg(config.truncation_samples)
    synthesis = PlaneSynthesis(config.w_dim, config.synthesis_channels, config.upsamplings, config.plane_channels)
    generator = TriplaneGenerator(synthesis, PlaneDecoder(config.plane_channels, config.decoder_hidden))
    generator.reset_parameters()
    return {"mapping": mapping, "generator": generator}


class TriplaneGAN(Backbone):
    """The tri-plane backbone. Latent: {"w": (B, w_dim)}."""

    WEIGHT_PARTS = PARTS

    def __init__(self, config: TriplaneConfig, parts: Mapping[str, nn.Module], preset: str = "custom"):
        super().__init__()
        self.config = config
        self.preset = preset
        self.mapping: MappingNetwork = parts["mapping"]
        self.generator: TriplaneGenerator = parts["generator"]
        self.mapping.requires_grad_(False)

    # ---- the contract ------------------------------------------------------------------------------------
    def tunable(self) -> TriplaneGenerator:
        return self.generator

    def with_tunable(self, module: nn.Module) -> "TriplaneGAN":
        return TriplaneGAN(self.config, {"mapping": self.mapping, "generator": module}, self.preset)

    @property
    def default_resolution(self) -> int:
        return self.config.train_resolution

    @property
    def inverted_latents(self) -> tuple[str, ...]:
        return ("w",)

    def sample_latent(self, batch: int, generator: torch.Generator | None = None) -> Latent:
        """w = mapping(z) for Gaussian z (untruncated; `render_latent(psi=...)` truncates)."""
        device = self.mapping.w_avg.device
        z = torch.randn(batch, self.config.z_dim, generator=generator,
                        device=generator.device if generator else "cpu").to(device)
        with torch.no_grad():
            return {"w": self.mapping(z)}

    # ---- rendering ---------------------------------------------------------------------------------------
    def render_latent(self, latent: Latent, yaw_deg, pitch_deg, resolution: int, *, psi: float = 1.0,
                      chunk_rays: int | None = None) -> RenderResult:
        """Render w (B, w_dim) at user angles (degrees, 0 = frontal)."""
        rs = self.config.render
        w = self.mapping.truncate(latent["w"], psi)                               # (B, w_dim)
        batch = w.shape[0]
        planes = self.generator.synthesis(w)                                      # (B, 3, C, P, P)
        yaw = degrees_to_official(as_batch(yaw_deg, batch, w.device))
        pitch = degrees_to_official(as_batch(pitch_deg, batch, w.device))
        rays = make_rays(yaw, pitch, resolution, rs.fov_deg, rs.radius, rs.look_at)
        image, depth, opacity = render_ray_chunks(self._render_rays, (planes,), rays, chunk_rays,
                                                  rs.chunk_rays)                        # (B, R, C) each
        return RenderResult(image=rays_to_image(image, resolution), depth=rays_to_image(depth, resolution),
                            opacity=rays_to_image(opacity, resolution))

    # ---- the 3-D field (mesh export) ---------------------------------------------------------------------
    @property
    def field_box(self) -> FieldBox:
        """The planes' box: features (and so density) are zero outside it."""
        half = self.config.render.box_side / 2
        return FieldBox((-half, -half, -half), (half, half, half))

    def sample_field(self, latent: Latent, points: torch.Tensor, *, psi: float = 1.0) -> FieldSample:
        """Occupancy at world points (B, N, 3): the opacity one of the renderer's ray bins would have there;
        colour: the decoder's (view-independent)."""
        rs = self.config.render
        planes = self.generator.synthesis(self.mapping.truncate(latent["w"], psi))          # (B, 3, C, P, P)
        density, rgb = self.generator.decoder(sample_planes(planes, points, rs.box_side))  # (B, N, 1|3)
        occupancy = sample_opacity(density[..., 0], (rs.ray_end - rs.ray_start) / rs.samples, rs.density_shift)
        return FieldSample(occupancy=occupancy, color=rgb.clamp(0, 1))

    def _render_rays(self, planes: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor):
        """One chunk of rays: directions (B, R, 3) -> image (B, R, 3) in [-1, 1], depth, opacity (B, R, 1)."""
        rs = self.config.render
        B, n, _ = directions.shape
        depths = sample_depths(rs.ray_start, rs.ray_end, rs.samples, directions.device)      # (S,)
        points = origins[:, None, None, :] + directions[:, :, None, :] * depths[None, None, :, None]  # (B, R, S, 3)
        features = sample_planes(planes, points.reshape(B, -1, 3), rs.box_side)              # (B, R·S, C)
        density, rgb = self.generator.decoder(features)                                      # (B, R·S, 1|3)
        step = (rs.ray_end - rs.ray_start) / rs.samples
        return composite(density.reshape(B, n, rs.samples, 1), rgb.reshape(B, n, rs.samples, 3), depths, step,
                         rs.density_shift, rs.background, rs.ray_end)
