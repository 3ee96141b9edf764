"""AniFaceGAN architecture and render settings; presets are plain data."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from artmator.model.fields import RESULT

# The project's result flag (`model.fields.RESULT`) on settings that change speed or memory only, never an output
# beyond float rounding: left out of `AniFaceGANConfig.result_dict()` (what caches of fitted weights are keyed on).
SPEED_ONLY = {RESULT: False}


@dataclass(frozen=True)
class RenderSettings:
    """How rays become pixels (official inference values by default)."""

    fov_deg: float = 12.0                 # field of view of the pinhole camera
    ray_start: float = 0.88               # near bound of the coarse samples (camera at radius 1)
    ray_end: float = 1.12                 # far bound
    coarse_samples: int = 64              # samples per ray used to find manifold crossings
    levels_start: float = 23.0            # first (outermost) manifold level
    levels_end: float = 8.0               # last (innermost) manifold level
    num_levels: int = 23                  # manifolds per ray; plus one background plane
    background_z: float = -0.12           # the background plane z = background_z
    alpha_delta: float = 0.04             # constant sample spacing in the opacity 1 - exp(-delta * softplus(sigma))
    lock_view_dependence: bool = True     # official inference renders colour as seen along -z
    rgb_widen: float = 1e-3               # colour widened as rgb * (1 + 2 eps) - eps
    chunk_rays: int = field(default=4096, metadata=SPEED_ONLY)  # rays at once without gradients on a GPU (bounds memory)
    # Rays at once without gradients on a CPU: a chunk's activations (~1 M floats here) stay in the caches and
    # their buffers in the allocator's heap; large buffers are mapped and page-faulted afresh on every call
    # (a 64² frame took ~1.5-2x longer in 4096-ray chunks than in 128-ray ones; bench/README.md, perf).
    cpu_chunk_rays: int = field(default=128, metadata=SPEED_ONLY)
    # Evaluate the FiLM-SIREN only at the samples that hit a manifold (and the background plane). The official
    # code evaluates every (ray, level) slot and then gives the empty ones zero opacity, so this skips work
    # without changing an output or a gradient (beyond float rounding); how much depends on the field (the demo
    # head prior's rays cross a fifth of its levels). Off: every slot, static shapes (as for CUDA graphs).
    skip_empty_samples: bool = field(default=True, metadata=SPEED_ONLY)


@dataclass(frozen=True)
class AniFaceGANConfig:
    """Network widths and depths. Coefficient sizes (80/64/80) are fixed by the 3DMM and never change."""

    id_dim: int = 80                      # identity 3DMM coefficients
    exp_dim: int = 64                     # expression 3DMM coefficients
    noise_dim: int = 80                   # appearance noise code
    siren_hidden: int = 256               # FiLM-SIREN width
    siren_layers: int = 8                 # FiLM-SIREN depth (density/colour heads after layers 1..L-1)
    mapping_hidden: int = 256             # radiance mapping-network width
    sampler_hidden: int = 128             # manifold sampler width
    deform_hidden: int = 128              # deformation FiLM-SIREN width
    deform_layers: int = 3                # deformation FiLM-SIREN depth
    deform_mapping_hidden: int = 128      # deformation mapping-network width
    vae_hidden: int = 512                 # coefficient VAE width
    vae_layers: int = 5                   # coefficient VAE depth (encoder and decoder)
    vae_latent: int = 256                 # coefficient VAE Gaussian latent size
    box_side: float = 0.24                # world coordinates are warped by 2 / box_side
    sampler_center: tuple[float, float, float] = (0.0, 0.0, -1.5)
    psi: float = 0.7                      # default truncation when rendering sampled identities
    truncation_samples: int = 10000       # samples used to estimate the average frequencies for truncation
    train_resolution: int = 128           # resolution the checkpoint was trained at (default tuning size)
    face_framing: tuple[float, float, float] = (1.0, 0.5, 0.5)  # GRAM face crop in the frame: (side, cx, cy)
    render: RenderSettings = field(default_factory=RenderSettings)

    @property
    def warp_scale(self) -> float:
        return 2.0 / self.box_side

    def to_dict(self) -> dict:
        return asdict(self)

    def result_dict(self) -> dict:
        """`to_dict()` without the fields flagged `result=False`: equal for configs that give the same outputs."""
        return _result_fields(self)


def _result_fields(obj) -> dict:
    out = {}
    for f in fields(obj):
        if f.metadata.get(RESULT, True):
            value = getattr(obj, f.name)
            out[f.name] = _result_fields(value) if hasattr(value, "__dataclass_fields__") else value
    return out


PRESETS: dict[str, AniFaceGANConfig] = {
    # The official checkpoint's architecture and inference settings.
    "anifacegan": AniFaceGANConfig(),
    # Same code, small widths and sample counts: CPU tests and the demo.
    "tiny": AniFaceGANConfig(
        siren_hidden=32, siren_layers=4, mapping_hidden=32, sampler_hidden=16,
        deform_hidden=16, deform_layers=2, deform_mapping_hidden=16,
        vae_hidden=32, vae_layers=2, vae_latent=16, truncation_samples=2000, train_resolution=64,
        # The demo head prior (model/anifacegan/demo_prior.py) is a bust: a face's GRAM crop is 0.57 of the frame, centred
        # slightly high (measured by detecting the procedural head: tests/model/faces/test_align.py).
        face_framing=(0.57, 0.495, 0.472),
        render=RenderSettings(coarse_samples=16, num_levels=8, chunk_rays=8192, cpu_chunk_rays=2048),
    ),
}


def preset_config(name: str) -> AniFaceGANConfig:
    """The config of a named preset, with a clear error for unknown names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


__all__ = ["AniFaceGANConfig", "RenderSettings", "PRESETS", "preset_config", "replace"]
