"""FiLM-SIREN building blocks shared by the radiance and deformation networks (pi-GAN style).

Attribute names (`layer`, `network`) follow the official AniFaceGAN checkpoints so state dicts load strictly.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# The official networks map a raw frequency f to 15·f + 30 before the sine (pi-GAN's FiLM scaling).
FREQ_SCALE = 15.0
FREQ_SHIFT = 30.0


class FiLMLayer(nn.Module):
    """sin(γ ⊙ (W x + b) + β): one FiLM-conditioned sine layer; γ, β are per-sample (B, H)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.layer = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        # x: (B, N, in)  freq, phase: (B, out) already scaled  ->  (B, N, out)
        return torch.sin(freq.unsqueeze(1) * self.layer(x) + phase.unsqueeze(1))


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
