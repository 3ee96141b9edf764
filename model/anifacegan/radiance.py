"""The radiance generator: FiLM-SIREN colour/density field plus the manifold sampler (scalar field whose
level sets are the radiance manifolds). Together they are the official `generator.pth` (`siren.*`, `model_sample.*`)."""
from __future__ import annotations

import math

import torch
from torch import nn

from artmator.model.anifacegan.film import (FiLMLayer, MappingNetwork, batched_linear, folds, needs_grad, scale_frequencies,
                                           siren_first_layer_uniform_, siren_uniform_)
from artmator.model.lora import effective_weight


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
        """points: (B, N, 3); view_dirs: (B, N, 3), or (B, 1, 3) for one direction per frame (locked view);
        raw_freq, phase: (B, (L+1)·H) -> (B, N, 4) = sigmoid RGB, raw density.

        Density and colour are sums of the per-layer heads; each layer's colour and density heads run as one
        (4 × H) matmul accumulated into the running (B, N, 4) sum.
        """
        freq = scale_frequencies(raw_freq)
        H = self.hidden_dim
        x = points * self.warp_scale
        last = len(self.network) - 1
        heads = self._heads(x.dtype)                              # [(1 or K, 4, H)] per layer 1..L-1, last: 2
        out = heads.pop()                                         # (1, 1, 4) summed head biases
        for i, film in enumerate(self.network):
            x = film(x, freq[:, i * H:(i + 1) * H], phase[:, i * H:(i + 1) * H])
            if i == 0:
                continue
            if i == last:
                cl = slice((last + 1) * H, (last + 2) * H)
                feature = self._color_feature(view_dirs, x, freq[:, cl], phase[:, cl])
                out = _accumulate(out, feature, heads[-1])        # colour from the view-conditioned feature
            out = _accumulate(out, x, heads[i - 1])
        rgb, sigma = out.split([3, 1], dim=-1)
        return torch.cat([torch.sigmoid(rgb), sigma], dim=-1)

    def _heads(self, dtype: torch.dtype) -> list[torch.Tensor]:
        """Per-layer [colour; density] head weights (1 or K, 4, H) for layers 1..L-1, where the last layer's
        holds only its density row, then its colour rows alone, then the summed head biases (1, 1, 4)."""
        heads = [torch.cat([effective_weight(c), effective_weight(s)], dim=1)
                 for c, s in zip(self.output_color, self.output_sigma)]
        colour_last = heads[-1].clone()
        colour_last[:, 3:] = 0
        heads[-1] = heads[-1] * torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, device=heads[-1].device).view(1, 4, 1)
        bias = torch.cat([sum(c.bias for c in self.output_color), sum(s.bias for s in self.output_sigma)])
        return heads + [colour_last, bias.view(1, 1, 4)]

    def _color_feature(self, view_dirs: torch.Tensor, x: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor):
        """The view-conditioned FiLM layer on [view direction, x]: (B, N, H)."""
        film = self.color_layer_sine[0]
        if view_dirs.shape[1] == 1 and folds(film.layer, x, freq, phase):
            # One direction per frame: its columns' contribution is a per-frame shift of W x + b.
            view_w = effective_weight(film.layer)[..., :3]                              # (1 or K, H, 3)
            shift = torch.matmul(view_w, view_dirs.transpose(1, 2)).squeeze(-1)        # (B, H)
            return film(x, freq, phase, columns=slice(3, None), shift=shift)
        return film(torch.cat([view_dirs.expand(-1, x.shape[1], -1), x], dim=-1), freq, phase)


def _accumulate(out: torch.Tensor, x: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """out + x headᵀ: (B or 1, N or 1, 4) + (B, N, H) (1 or K, 4, H)ᵀ, in place where autograd allows."""
    head_t = head.transpose(1, 2).expand(x.shape[0], -1, -1)                # (B, H, 4)
    if out.shape[:2] == x.shape[:2] and out.dtype == x.dtype == head.dtype and not needs_grad(out, x, head):
        return out.baddbmm_(x, head_t)
    return torch.baddbmm(out, x, head_t)

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
        """The raw field on already-prepared coordinates: (..., 3) -> (..., 1). Each linear layer is one batched
        matmul (`batched_linear`) followed by an in-place ReLU (a matmul's backward never needs its output)."""
        h = x.reshape(x.shape[0] if x.dim() > 2 else 1, -1, x.shape[-1])          # (B, N, 3)
        for layer in self.network:
            if not isinstance(layer, nn.ReLU):                  # Linear (or adapted), ReLU, ...: ReLU in place
                h = batched_linear(layer, h).relu_()
        return batched_linear(self.output_layer, h).reshape(*x.shape[:-1], 1)

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
