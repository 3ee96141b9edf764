"""Differentiable paired augmentation for the CLIP directions of 3DArtmator's style-directional loss.

Stage 2 encodes augmented images on both sides of each CLIP direction (δ_guide = E(aug I_ref) − E(aug
G_ori(z*, θ)), δ_opt = E(aug G_trn(z*, θ_i)) − E(aug G_ori(z*, θ_i))). The two images of a pair get the SAME
random crop and flip: a direction then measures how the two images differ in style, not how two different
crops of them differ in framing. Parameters are independent across batch elements and across crops.

Crops are random-resized crops (area fraction and log-uniform aspect ratio, like torchvision's
RandomResizedCrop) plus an optional horizontal flip, applied with `affine_grid`/`grid_sample` so gradients flow
back to the images. Given a seeded `torch.Generator` the crops are deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from artmator.model.fields import setting


@dataclass(frozen=True)
class AugmentConfig:
    """Random-resized-crop augmentation shared by the two images of a CLIP-direction pair."""

    n_crops: int = setting(4, "Crops (views) per image; each is encoded and the direction averages over them.")
    scale: tuple[float, float] = setting((0.6, 1.0), "MIN,MAX fraction of the image area a crop covers; 1,1 keeps "
                                                     "the whole image.")
    ratio: tuple[float, float] = setting((3 / 4, 4 / 3), "MIN,MAX crop aspect ratio width/height (log-uniform); a "
                                                         "crop that would not fit is clipped to the image border.")
    flip_p: float = setting(0.5, "Probability of a horizontal flip of a crop (portraits are roughly mirror-"
                                 "symmetric in style).")
    output_size: int | None = setting(None, "Side of the square output crops in pixels; none keeps the input's "
                                            "size (the CLIP encoder resizes anyway: none avoids resampling twice).")

    def __post_init__(self) -> None:
        if self.n_crops < 1:
            raise ValueError(f"AugmentConfig.n_crops must be >= 1, got {self.n_crops}.")
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"AugmentConfig.scale must satisfy 0 < min <= max <= 1, got {self.scale}.")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"AugmentConfig.ratio must satisfy 0 < min <= max, got {self.ratio}.")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"AugmentConfig.flip_p must be in [0, 1], got {self.flip_p}.")
        if self.output_size is not None and self.output_size < 1:
            raise ValueError(f"AugmentConfig.output_size must be >= 1 or None, got {self.output_size}.")


NO_AUGMENT = AugmentConfig(n_crops=1, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
"""The identity: one full, unflipped view (for ablations and tests)."""


def augment_pair(a: torch.Tensor, b: torch.Tensor, config: AugmentConfig,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop and flip `a` and `b` with identical random parameters per (sample, crop).

    a, b: (B, 3, H, W), same shape. Returns two (B·n_crops, 3, H', W') tensors, sample-major: row
    `i * n_crops + k` is crop k of sample i (so `.view(B, n_crops, ...)` recovers the grouping).
    generator: source of randomness (None: the global torch RNG); it is advanced by exactly one draw of
    (B·n_crops, 5) uniforms per call.
    """
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(f"augment_pair needs two (B, C, H, W) tensors of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}.")
    theta = sample_crop_affines(a.shape[0] * config.n_crops, config, generator).to(a.device, a.dtype)
    return apply_crops(a, theta, config), apply_crops(b, theta, config)


def sample_crop_affines(n: int, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 2, 3) affine matrices in normalised coordinates, each mapping output grid -> input crop.

    Columns of the single uniform draw: area fraction, log aspect ratio, centre x, centre y, flip.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, 5, generator=generator, device=device, dtype=torch.float64)
    area = config.scale[0] + (config.scale[1] - config.scale[0]) * u[:, 0]
    log_r = math.log(config.ratio[0]) + (math.log(config.ratio[1]) - math.log(config.ratio[0])) * u[:, 1]
    w = torch.sqrt(area * torch.exp(log_r)).clamp(max=1.0)   # crop width / image width
    h = torch.sqrt(area / torch.exp(log_r)).clamp(max=1.0)   # crop height / image height
    cx = (1.0 - w) * (2.0 * u[:, 2] - 1.0)                    # centre keeps the crop inside [-1, 1]
    cy = (1.0 - h) * (2.0 * u[:, 3] - 1.0)
    sx = torch.where(u[:, 4] < config.flip_p, -w, w)          # negative x scale = horizontal flip
    zero = torch.zeros_like(w)
    return torch.stack([torch.stack([sx, zero, cx], -1), torch.stack([zero, h, cy], -1)], 1).float()


def apply_crops(x: torch.Tensor, theta: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """Resample (B, C, H, W) images through (B·n_crops, 2, 3) affines -> (B·n_crops, C, H', W')."""
    b, c, h, w = x.shape
    out_h, out_w = (h, w) if config.output_size is None else (config.output_size, config.output_size)
    x = x.repeat_interleave(config.n_crops, dim=0)            # (B·n_crops, C, H, W), sample-major
    grid = F.affine_grid(theta, [x.shape[0], c, out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
