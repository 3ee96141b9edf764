"""The tri-plane generator's architecture and render settings; presets are plain data.

Camera numbers follow EG3D's FFHQ setup (camera 2.7 from a look-at point 0.2 in front of the origin, 18.837°
field of view, rays from 2.25 to 3.3, a unit box), so a port of real checkpoints keeps its geometry; widths,
depths and sample counts are small so that the demo preset renders 64² in milliseconds on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TriplaneRenderSettings:
    """How rays through the three planes become pixels."""

    fov_deg: float = 18.837                          # EG3D FFHQ: normalised focal length 4.2647
    radius: float = 2.7                              # camera distance from `look_at`
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.2)
    ray_start: float = 2.25                          # near bound along each ray
    ray_end: float = 3.3                             # far bound
    samples: int = 24                                # evenly spaced samples per ray (EG3D: 48 + 48 importance)
    box_side: float = 1.0                            # the planes span [-side/2, side/2] on each axis
    density_shift: float = -1.0                      # density = softplus(raw + shift), as EG3D
    background: float = -1.0                         # image value behind the subject (black)
    chunk_rays: int = 8192                           # rays evaluated at once without gradients (bounds memory)


@dataclass(frozen=True)
class TriplaneConfig:
    """Network sizes. Defaults are the tiny demo preset."""

    z_dim: int = 32                                  # latent z (Gaussian)
    w_dim: int = 32                                  # intermediate latent w (what stage 1 inverts)
    mapping_layers: int = 2                          # z -> w MLP depth
    synthesis_channels: int = 32                     # feature maps of the plane synthesis network
    plane_resolution: int = 32                       # side of each feature plane (4 · 2^k)
    plane_channels: int = 8                          # features per plane
    decoder_hidden: int = 16                         # width of the decoder MLP (EG3D: 64; its softplus dominates CPU time)
    psi: float = 0.7                                 # default truncation when rendering sampled latents
    truncation_samples: int = 2000                   # samples averaged into the mapping's w_avg at initialisation
    train_resolution: int = 64                       # default tuning resolution
    render: TriplaneRenderSettings = field(default_factory=TriplaneRenderSettings)

    def __post_init__(self):
        side, doublings = self.plane_resolution, 0
        while side > 4 and side % 2 == 0:
            side, doublings = side // 2, doublings + 1
        if side != 4:
            raise ValueError(f"plane_resolution must be 4 · 2^k, got {self.plane_resolution}")

    @property
    def upsamplings(self) -> int:
        """Synthesis blocks after the 4×4 constant: log2(plane_resolution / 4)."""
        return (self.plane_resolution // 4).bit_length() - 1


PRESETS: dict[str, TriplaneConfig] = {
    # Tiny widths and sample counts: CPU demo and tests; random weights (no checkpoint exists at this size).
    "triplane-tiny": TriplaneConfig(),
}


def preset_config(name: str) -> TriplaneConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown tri-plane preset {name!r}; choose one of {sorted(PRESETS)}") from None
