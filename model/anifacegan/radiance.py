"""The radiance generator: FiLM-SIREN colour/density field plus the manifold sampler (scalar field whose
level sets are the radiance manifolds). Together they are the official `generator.pth` (`siren.*`, `model_sample.*`)."""
from __future__ import annotations

import math

import torch
from torch import nn

from artmator.model.anifacegan.film import FiLMLayer, MappingNetwork, scale_frequencies, siren_first_layer_uniform_, siren_uniform_


class RadianceSiren(nn.Module):
    """FiLM-SIREN with per-layer density and colour heads (official `SPATIALSIRENMULTI_NEW`).

    Density and colour are sums over the heads after layers 1..L-1; the last colour head reads a view-conditioned
    FiLM layer. The mapping network turns [z_id, noise] into frequencies/phases for L+1 FiLM layers.
    """

    def __init__(self, latent_dim: int, hidden_dim: int, mapping_hidden_dim: int, num_layers: int, warp_scale: float):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.warp_scale = warp_scale
        self.network = nn.ModuleList(
            [FiLMLayer(3, hidden_dim)] + [FiLMLayer(hidden_dim, hidden_dim) for _ in range(num_layers - 1)]
        )
        self.output_sigma = nn.ModuleList([nn.Linear(hidden_dim, 1) for _ in range(num_layers - 1)])
        self.color_layer_sine = nn.ModuleList([FiLMLayer(hidden_dim + 3, hidden_dim)])
        self.output_color = nn.ModuleList([nn.Linear(hidden_dim, 3) for _ in range(num_layers - 1)])
        self.mapping_network = MappingNetwork(latent_dim, mapping_hidden_dim, (num_layers + 1) * hidden_dim * 2)

    def reset_parameters(self) -> None:
        for lin in [f.layer for f in self.network] + list(self.output_sigma) + [self.color_layer_sine[0].layer] + list(self.output_color):
            siren_uniform_(lin)
        siren_first_layer_uniform_(self.network[0].layer)
        self.mapping_network.reset_parameters()

    def forward(self, points: torch.Tensor, raw_freq: torch.Tensor, phase: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        """points, view_dirs: (B, N, 3); raw_freq, phase: (B, (L+1)·H) -> (B, N, 4) = sigmoid RGB, raw density."""
        freq = scale_frequencies(raw_freq)
        H = self.hidden_dim
        x = points * self.warp_scale
        sigma = 0.0
        rgb = 0.0
        last = len(self.network) - 1
        for i, film in enumerate(self.network):
            x = film(x, freq[:, i * H:(i + 1) * H], phase[:, i * H:(i + 1) * H])
            if i == 0:
                continue
            sigma = sigma + self.output_sigma[i - 1](x)
            feature = x
            if i == last:
                cl = slice((last + 1) * H, (last + 2) * H)
                feature = self.color_layer_sine[0](torch.cat([view_dirs, x], dim=-1), freq[:, cl], phase[:, cl])
            rgb = rgb + self.output_color[i - 1](feature)
        return torch.cat([torch.sigmoid(rgb), sigma], dim=-1)


class ManifoldSampler(nn.Module):
    """ReLU MLP: a scalar field s(x) in canonical space; ray/manifold intersections are its level sets."""

    def __init__(self, hidden_dim: int, warp_scale: float, center: tuple[float, float, float]):
        super().__init__()
        self.warp_scale = warp_scale
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32), persistent=False)
        self.network = nn.Sequential(
            nn.Linear(3, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
        )
        self.output_layer = nn.Linear(hidden_dim, 1)

    def reset_parameters(self, init_radius: float = 0.0) -> None:
        with torch.no_grad():
            for m in self.network:
                if isinstance(m, nn.Linear):
                    m.weight.normal_(0.0, math.sqrt(2.0 / m.weight.shape[0]))
                    m.bias.zero_()
            self.output_layer.weight.fill_(10.0 * math.sqrt(math.pi / self.output_layer.weight.shape[1]))
            self.output_layer.bias.fill_(-init_radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The raw field on already-prepared coordinates: (..., 3) -> (..., 1)."""
        return self.output_layer(self.network(x))

    def field(self, canonical_warped: torch.Tensor) -> torch.Tensor:
        """s at canonical points as the deformation network returns them (warped frame): (..., 3) -> (..., 1).

        The official code warps these points a second time and shifts them by `center` so that only one side
        of the field's two-sided level sets faces the camera; kept as is for checkpoint compatibility.
        """
        return self(canonical_warped * self.warp_scale - self.center)


class RadianceGenerator(nn.Module):
    """The tunable 3D generator G: `siren` (radiance) and `model_sample` (manifolds); official `generator.pth`."""

    # No LoRA adapters inside the mapping network (model.lora): z* already steers that path, and its last layer
    # is 61 % of the generator's weights.
    ADAPTER_EXCLUSIONS = (MappingNetwork,)

    def __init__(self, siren: RadianceSiren, model_sample: ManifoldSampler):
        super().__init__()
        self.siren = siren
        self.model_sample = model_sample

    def reset_parameters(self) -> None:
        self.siren.reset_parameters()
        self.model_sample.reset_parameters()
