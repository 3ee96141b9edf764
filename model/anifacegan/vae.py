"""Coefficient VAEs: a Gaussian latent (256-d in the official model) <-> 3DMM identity or expression coefficients."""
from __future__ import annotations

import torch
from torch import nn


class CoefficientVAE(nn.Module):
    """MLP VAE over Deep3DFaceRecon coefficients (identity: 80, expression: 64).

    Layout and names match the official `VAE_ID` / `VAE_EXP` so `vae.pth` loads strictly.
    """

    def __init__(self, coeff_dim: int, latent_dim: int, hidden_dim: int, num_layers: int):
        super().__init__()
        self.coeff_dim = coeff_dim
        self.latent_dim = latent_dim
        dims = [coeff_dim] + [hidden_dim] * num_layers
        self.encoder = nn.Sequential(
            *[nn.Sequential(nn.Linear(a, b), nn.LeakyReLU()) for a, b in zip(dims[:-1], dims[1:])]
        )
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_var = nn.Linear(hidden_dim, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, hidden_dim)
        self.decoder = nn.Sequential(
            *[nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU()) for _ in range(num_layers)]
        )
        self.final_layer = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(), nn.Linear(hidden_dim, coeff_dim)
        )
        self.requires_grad_(False)  # the VAEs are fixed priors, never tuned

    def encode(self, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # coeffs: (B, coeff_dim) -> mu, log_var: (B, latent_dim)
        h = self.encoder(coeffs)
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        # latent: (B, latent_dim) -> coeffs: (B, coeff_dim)
        return self.final_layer(self.decoder(self.decoder_input(latent)))

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Coefficients decoded from N(0, I) latents (how the official code samples identities)."""
        device = self.fc_mu.weight.device
        latent = torch.randn(batch, self.latent_dim, generator=generator, device=generator.device if generator else "cpu")
        return self.decode(latent.to(device))
