"""FiLM-SIREN building blocks shared by the radiance and deformation networks (pi-GAN style).

Attribute names (`layer`, `network`) follow the official AniFaceGAN checkpoints so state dicts load strictly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from artmator.model.lora import BatchedLoRA, effective_weight

# The official networks map a raw frequency f to 15·f + 30 before the sine (pi-GAN's FiLM scaling).
FREQ_SCALE = 15.0
FREQ_SHIFT = 30.0


class FiLMLayer(nn.Module):
    """sin(γ ⊙ (W x + b) + β): one FiLM-conditioned sine layer; γ, β are per-sample (B, H)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.layer = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor, columns: slice = slice(None),
                shift: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, N, in)  freq, phase: (B, out) already scaled  ->  (B, N, out); see `film_sine`
        return film_sine(self.layer, x, freq, phase, columns, shift)


def film_sine(layer: nn.Module, x: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor,
              columns: slice = slice(None), shift: torch.Tensor | None = None) -> torch.Tensor:
    """pi-GAN's FiLM-SIREN layer (Chan et al. 2021, §3.1): sin(γ ⊙ (W x + b) + β).

    layer: an nn.Linear (or a LoRA-adapted one, `model.lora`); x: (B, N, in); freq γ, phase β: (B, out), γ already
    scaled (`scale_frequencies`); `columns` selects the input columns of W that x feeds, `shift` (B, out) is added
    to W x + b (what the other columns contribute when their input is constant over a frame). Returns (B, N, out).

    γ and β are constant over a frame's N points, so they fold into each frame's weight and bias:
    γ ⊙ (W x + b) + β = (γ ⊙ W) x + (γ ⊙ b + β): one batched matmul with its bias and one sine, instead of a
    matmul, a product, a sum and a sine over the (B, N, out) activations. A LoRA-adapted layer folds its dense
    per-painting weight W + s·B_k A_k (`model.lora.effective_weight`): its gradient costs one more full matmul,
    but replaces the adapters' four rank-r products over the activations, which are memory-bound and slower
    (bench/README.md, render section). Only when γ needs a gradient and W does not (latent inversion) would the
    fold add a full matmul for nothing; that case takes γ ⊙ (W x + b) + β as one fused multiply-add.
    """
    if not folds(layer, x, freq, phase):
        h = F.linear(x, layer.weight[:, columns], layer.bias)                # (B, N, out)
        if shift is not None:
            phase = torch.addcmul(phase, freq, shift)                       # γ ⊙ (h + s) + β = γ ⊙ h + (γ ⊙ s + β)
        return torch.sin(torch.addcmul(phase.unsqueeze(1), h, freq.unsqueeze(1)))
    weight = effective_weight(layer)[..., columns]                          # (1 or K, out, in)
    if weight.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"this layer holds {weight.shape[0]} adapters (one per painting) but got {x.shape[0]} "
                         f"frames; render exactly {weight.shape[0]} latents at once")
    bias = layer.bias if shift is None else layer.bias + shift               # (out,) or (B, out)
    w = freq.unsqueeze(-1) * weight                                         # (B, out, in)
    b = torch.addcmul(phase, freq, bias).unsqueeze(1)                        # (B, 1, out)
    pre = torch.baddbmm(b, x, w.transpose(1, 2))                            # (B, N, out)
    return torch.sin(pre) if needs_grad(x, freq, phase, layer) else pre.sin_()


def needs_grad(*items) -> bool:
    """Whether autograd records an op on these tensors/modules (else intermediates may be overwritten in place)."""
    if not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for item in items
               for t in (item.parameters() if isinstance(item, nn.Module) else (item,)))


def folds(layer: nn.Module, x: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor) -> bool:
    """Whether `film_sine` folds γ, β into the weight (see there): always, except for a γ-only gradient."""
    if not needs_grad(x, freq, phase, layer):
        return True
    return isinstance(layer, BatchedLoRA) or layer.weight.requires_grad or not freq.requires_grad


def batched_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """layer(x) for an nn.Linear or a LoRA-adapted one as one batched matmul with its dense per-painting weight
    (see `film_sine` for why): x (B, N, in) -> (B, N, out)."""
    weight = effective_weight(layer)                                        # (1 or K, out, in)
    return torch.baddbmm(layer.bias, x, weight.transpose(1, 2).expand(x.shape[0], -1, -1))


class MappingNetwork(nn.Module):
    """4-layer leaky-ReLU MLP from a latent code to FiLM frequencies and phases (first and second half)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.LeakyReLU(0.2),
            nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(0.2),
            nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(0.2),
            nn.Linear(hidden_dim, out_dim),
        )

    def reset_parameters(self) -> None:
        for m in self.network:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
        with torch.no_grad():
            self.network[-1].weight.mul_(0.25)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # z: (B, in) -> raw freq, phase: (B, out/2) each (unscaled; see `scale_frequencies`)
        out = self.network(z)
        half = out.shape[-1] // 2
        return out[..., :half], out[..., half:]


def scale_frequencies(raw_freq: torch.Tensor) -> torch.Tensor:
    return raw_freq * FREQ_SCALE + FREQ_SHIFT


def siren_uniform_(linear: nn.Linear, omega: float = 25.0) -> None:
    """SIREN hidden-layer init: U(±sqrt(6/fan_in)/omega) (pi-GAN `frequency_init`)."""
    bound = math.sqrt(6.0 / linear.weight.shape[1]) / omega
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)


def siren_first_layer_uniform_(linear: nn.Linear) -> None:
    """SIREN first-layer init: U(±1/fan_in)."""
    bound = 1.0 / linear.weight.shape[1]
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)
