"""The Backbone interface: what the tuning stages, deltas and renderers need from a 3D-aware GAN.

AniFaceGAN implements it (`model.anifacegan`); another 3D-aware generator (e.g. a cat-face model) is one more
module implementing these methods. Latents are named codes so each backbone can have its own.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from artmator.model.faces.align import FaceFraming

Latent = dict[str, torch.Tensor]  # name -> (B, D) code, e.g. {"z_id", "z_exp", "noise"} for AniFaceGAN


class ExpressionError(ValueError):
    """An expression that cannot be used (unreadable file, wrong length, non-finite values, unknown name)."""


@dataclass(frozen=True)
class RenderResult:
    image: torch.Tensor    # (B, 3, H, W) in [-1, 1]
    depth: torch.Tensor    # (B, 1, H, W) distance from the camera
    opacity: torch.Tensor  # (B, 1, H, W) in [0, 1]: how much of the pixel is the subject, not the background


class Backbone(nn.Module, abc.ABC):
    """A 3D-aware generator split into a tunable part (G of the paper) and fixed parts (priors, deformation).

    Everything generic code (stages, deltas, pipeline) needs from a backbone is declared here; generic code never
    imports a concrete backbone package (it finds builders in `model.registry`).
    """

    preset: str
    WEIGHT_PARTS: tuple[str, ...] = ()   # names of the weight files a user can give (`load_backbone(weights=...)`)

    @abc.abstractmethod
    def base_hash(self) -> str:
        """sha256 of the tunable part's weights: what a delta is bound to and resume hashes cover."""

    @property
    @abc.abstractmethod
    def default_resolution(self) -> int:
        """Render size the weights were trained at: the default tuning resolution."""

    @property
    def adapter_exclusions(self) -> tuple[type[nn.Module], ...]:
        """Module types inside `tunable()` whose layers get no LoRA adapters (e.g. a latent mapping network),
        declared by the tunable module as `ADAPTER_EXCLUSIONS` so that `model.lora` needs no backbone."""
        return tuple(getattr(self.tunable(), "ADAPTER_EXCLUSIONS", ()))

    @property
    def face_framing(self) -> "FaceFraming":
        """Where a face's GRAM training crop sits in this backbone's renders (`model.faces.align.FaceFraming`):
        painting inputs are framed the same way. Default: exactly the crop, as the official weights."""
        from artmator.model.faces.align import FaceFraming

        return FaceFraming()

    @abc.abstractmethod
    def sample_latent(self, batch: int, generator: torch.Generator | None = None) -> Latent:
        """Random latents from the backbone's prior (the random init of stage 1)."""

    @property
    @abc.abstractmethod
    def inverted_latents(self) -> tuple[str, ...]:
        """Names of the latent codes that stage 1 optimizes; the others stay as sampled/neutral."""

    @abc.abstractmethod
    def render_latent(self, latent: Latent, yaw_deg, pitch_deg, resolution: int, *, psi: float = 1.0,
                      chunk_rays: int | None = None) -> RenderResult:
        """Render latents at user angles (degrees, 0 = frontal; scalars or (B,))."""

    @abc.abstractmethod
    def tunable(self) -> nn.Module:
        """The module stage 2 tunes (its state dict is what deltas are bound to)."""

    @abc.abstractmethod
    def with_tunable(self, module: nn.Module) -> "Backbone":
        """A backbone sharing every fixed part with this one but using `module` as its tunable part."""

    @property
    def supports_expressions(self) -> bool:
        return False

    def with_expression(self, latent: Latent, expression: torch.Tensor) -> Latent:
        """`latent` with its expression code replaced by `expression` (B, D) or (D,)."""
        raise NotImplementedError(f"the {self.preset} backbone has no expression codes")
