"""The Backbone interface: what the tuning stages, deltas, renderers and the pipeline need from a 3D-aware GAN.

AniFaceGAN (`model.anifacegan`) and a tri-plane generator (`model.triplane`) implement it; another 3D-aware
generator is one more package implementing these methods and registering its presets (`model.registry`).
Latents are named codes so each backbone can have its own.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from artmator.model.lora import adapter_targets
from artmator.model.weights import load_strict, read_state_dict, sha256_state_dict

if TYPE_CHECKING:
    from artmator.model.faces.align import FaceFraming

Latent = dict[str, torch.Tensor]  # name -> (B, D) code: {"z_id", "z_exp", "noise"} for AniFaceGAN, {"w"} tri-plane

# A demo prior: () -> {part: URI} of weights that give a weightless demo preset something to show.
DemoPrior = Callable[[], Mapping[str, str]]


class ExpressionError(ValueError):
    """An expression that cannot be used (unreadable file, wrong length, non-finite values, unknown name, or a
    backbone without expression codes)."""


@dataclass(frozen=True)
class RenderResult:
    image: torch.Tensor    # (B, 3, H, W) in [-1, 1]
    depth: torch.Tensor    # (B, 1, H, W) distance from the camera
    opacity: torch.Tensor  # (B, 1, H, W) in [0, 1]: how much of the pixel is the subject, not the background


@dataclass(frozen=True)
class FieldSample:
    """The subject's 3-D field at world points (what a mesh is extracted from; `model.mesh`)."""

    occupancy: torch.Tensor  # (B, N) in [0, 1]: opacity a thin layer at the point would have in a render;
                             # the visible surface is its 0.5 iso-surface, the background plane is not included
    color: torch.Tensor      # (B, N, 3) in [0, 1]: the radiance at the point, as the renderer would show it


@dataclass(frozen=True)
class FieldBox:
    """The world-space box holding the subject (renders see nothing of it outside): min and max corners."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]


class Backbone(nn.Module, abc.ABC):
    """A 3D-aware generator split into a tunable part (G of the paper) and fixed parts (priors, deformation).

    Everything generic code (stages, deltas, pipeline) needs from a backbone is declared here; generic code never
    imports a concrete backbone package (it finds builders in `model.registry`).

    Weights: `WEIGHT_PARTS` names the parts a user may give files for; each is a submodule of that name
    (`part`), read by `read_part` (safetensors, or .pth with weights_only) and loaded strictly.
    Adapters: the tunable module declares the layer kinds that take LoRA adapters (`ADAPTER_TARGETS`, default
    nn.Linear) and the module types left out (`ADAPTER_EXCLUSIONS`); `model.lora` reads them from it.
    """

    preset: str
    WEIGHT_PARTS: tuple[str, ...] = ()   # names of the weight files a user can give (`load_backbone(weights=...)`)

    # ---- weights -----------------------------------------------------------------------------------------
    def part(self, name: str) -> nn.Module:
        """The submodule a weight part loads into."""
        if name not in self.WEIGHT_PARTS:
            raise ValueError(f"unknown weight part {name!r} of the {self.preset} backbone; parts are "
                             f"{list(self.WEIGHT_PARTS)}")
        return getattr(self, name)

    def read_part(self, name: str, uri: str, storage_options: Mapping | None = None) -> dict[str, torch.Tensor]:
        """One part's state dict from a file (safetensors, or a .pth read with weights_only). A backbone whose
        official files hold more (AniFaceGAN's torch_ema files) overrides this."""
        return read_state_dict(uri, part=name, storage_options=storage_options)

    def load_part(self, name: str, state: Mapping[str, torch.Tensor], source: str) -> None:
        """Load a part strictly (every key, every shape) with an error naming the part and the file."""
        load_strict(self.part(name), state, part=name, source=source)

    def load_weights(self, weights: Mapping[str, str], storage_options: Mapping | None = None) -> None:
        """Load the given parts ({part: local path or fsspec URI}); parts not given keep their weights."""
        unknown = sorted(set(weights) - set(self.WEIGHT_PARTS))
        if unknown:
            raise ValueError(f"unknown weight parts {unknown}; parts of {self.preset!r} are {list(self.WEIGHT_PARTS)}")
        for name, uri in weights.items():
            self.load_part(name, self.read_part(name, str(uri), storage_options), source=str(uri))

    def base_hash(self) -> str:
        """sha256 of the tunable part's weights: what a delta is bound to and resume hashes cover."""
        return sha256_state_dict(self.tunable().state_dict())

    def demo_prior(self) -> DemoPrior | None:
        """For a demo preset run without weights: a callable giving {part: URI} of weights to start from
        (`load_backbone(..., demo_prior=True)`), or None when the preset has none (random weights)."""
        return None

    @property
    @abc.abstractmethod
    def default_resolution(self) -> int:
        """Render size the weights were trained at: the default tuning resolution."""

    # ---- adapters ----------------------------------------------------------------------------------------
    @property
    def adapter_targets(self) -> tuple[type[nn.Module], ...]:
        """Layer kinds inside `tunable()` that get LoRA adapters (nn.Linear, nn.Conv2d), declared by the tunable
        module as `ADAPTER_TARGETS` (default: nn.Linear)."""
        return adapter_targets(self.tunable())

    @property
    def adapter_exclusions(self) -> tuple[type[nn.Module], ...]:
        """Module types inside `tunable()` whose layers get no LoRA adapters (e.g. a latent mapping network),
        declared by the tunable module as `ADAPTER_EXCLUSIONS` so that `model.lora` needs no backbone."""
        return tuple(getattr(self.tunable(), "ADAPTER_EXCLUSIONS", ()))

    # ---- framing -----------------------------------------------------------------------------------------
    @property
    def face_framing(self) -> "FaceFraming":
        """Where a face's GRAM training crop sits in this backbone's renders (`model.faces.align.FaceFraming`):
        painting inputs are framed the same way. Default: exactly the crop, as the official weights."""
        from artmator.model.faces.align import FaceFraming

        return FaceFraming()

    # ---- latents and rendering ---------------------------------------------------------------------------
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

    # ---- speed -------------------------------------------------------------------------------------------
    COMPILED_METHODS: tuple[str, ...] = ()   # the hot methods `set_compile` routes through torch.compile

    def set_compile(self, enabled: bool, backend: str = "inductor") -> None:
        """Route `COMPILED_METHODS` through torch.compile (`model.compile.CompiledOrEager`: any compile failure
        warns once and runs eagerly), or back to eager."""
        from artmator.model.compile import CompiledOrEager

        for name in self.COMPILED_METHODS:
            self.__dict__.pop(name, None)                     # the class's eager method again
            if enabled:
                self.__dict__[name] = CompiledOrEager(getattr(self, name), backend, f"{type(self).__name__}.{name}")
        self.__dict__["_compile_backend"] = backend if enabled else None

    @property
    def compile_backend(self) -> str | None:
        """The torch.compile backend of the hot methods (`set_compile`), None when they run eagerly."""
        return self.__dict__.get("_compile_backend")

    # ---- expressions -------------------------------------------------------------------------------------
    @property
    def supports_expressions(self) -> bool:
        """Whether latents carry an expression code that `with_expression` can replace."""
        return False

    @property
    def default_expressions(self) -> tuple[str, ...]:
        """Expression stills rendered for every painting when a run names none (`RenderConfig.expressions`)."""
        return ()

    def load_expression(self, spec: str, storage_options: Mapping | None = None) -> torch.Tensor:
        """A named built-in or a file URI -> this backbone's expression code (D,); `ExpressionError` if unusable."""
        raise ExpressionError(self._no_expressions(spec))

    def with_expression(self, latent: Latent, expression: torch.Tensor) -> Latent:
        """`latent` with its expression code replaced by `expression` (B, D) or (D,)."""
        raise ExpressionError(self._no_expressions("an expression code"))

    def _no_expressions(self, what: str) -> str:
        return (f"the {self.preset} backbone has no expression codes, so it cannot render {what}; run it without "
                "expressions (leave --expressions out, or give --expressions '', and no manifest expressions)")

    # ---- optional: the 3-D field, for mesh export (`model.mesh`) -----------------------------------------
    @property
    def field_box(self) -> FieldBox:
        """Where `sample_field` is worth sampling (world units, the renderer's frame: y up, frontal camera on +z)."""
        raise NotImplementedError(f"the {self.preset} backbone does not expose its 3-D field (no field_box / "
                                  "sample_field): its paintings get no mesh, only renders")

    def sample_field(self, latent: Latent, points: torch.Tensor, *, psi: float = 1.0) -> FieldSample:
        """Occupancy and colour of latents (batch B) at world points (B, N, 3); optional (see `field_box`)."""
        raise NotImplementedError(f"the {self.preset} backbone does not expose its 3-D field (no field_box / "
                                  "sample_field): its paintings get no mesh, only renders")

    def morph_points(self, latent: Latent, target: Latent, points: torch.Tensor) -> torch.Tensor:
        """Where points of `latent`'s head (B, N, 3) sit in `target`'s, the same head with another expression
        (B, N, 3): how a mesh of `latent` follows an expression (`model.mesh.expression_morphs`); optional."""
        raise NotImplementedError(f"the {self.preset} backbone does not say how its field moves between "
                                  "expressions (no morph_points): its meshes get no expression morph targets")
