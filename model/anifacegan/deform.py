"""Expression deformation network: moves observation-space points into the canonical (neutral) space."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from artmator.model.anifacegan.film import FiLMLayer, MappingNetwork, scale_frequencies, siren_first_layer_uniform_, siren_uniform_


class ExpressionDeformation(nn.Module):
    """FiLM-SIREN conditioned on [identity, expression] coefficients that predicts a 3-D offset per point.

    The official network takes 7 input channels, of which the last 4 are always zero (a dropped feature);
    names and shapes match `dif.pth`. Coordinates are warped by `warp_scale` first; the returned points and
    offsets are in that warped frame, exactly as the official implementation returns them.
    """

    def __init__(self, cond_dim: int, hidden_dim: int, mapping_hidden_dim: int, num_layers: int, warp_scale: float,
                 in_dim: int = 7, out_dim: int = 7):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.warp_scale = warp_scale
        self.network = nn.ModuleList(
            [FiLMLayer(in_dim, hidden_dim)] + [FiLMLayer(hidden_dim, hidden_dim) for _ in range(num_layers - 1)]
        )
        self.final_layer = nn.Linear(hidden_dim, out_dim)
        self.mapping_network = MappingNetwork(cond_dim, mapping_hidden_dim, num_layers * hidden_dim * 2)

    def reset_parameters(self) -> None:
        for film in self.network:
            siren_uniform_(film.layer)
        siren_first_layer_uniform_(self.network[0].layer)
        siren_uniform_(self.final_layer)
        nn.init.zeros_(self.final_layer.weight)  # start as the identity map
        self.mapping_network.reset_parameters()

    def modulation(self, z_id: torch.Tensor, z_exp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # z_id: (B, 80), z_exp: (B, 64) -> scaled freq, phase: (B, layers*hidden)
        raw_freq, phase = self.mapping_network(torch.cat([z_id, z_exp], dim=-1))
        return scale_frequencies(raw_freq), phase

    def forward_modulated(self, points: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor):
        """points: (B, N, 3) world -> (canonical (B, N, 3), offsets (B, N, 3)), both in the warped frame."""
        warped = points * self.warp_scale
        H = self.hidden_dim
        # The 4 always-zero input channels contribute nothing: the first layer reads its first 3 weight columns.
        h = self.network[0](warped, freq[:, :H], phase[:, :H], columns=slice(0, 3))
        for i, film in enumerate(self.network[1:], start=1):
            h = film(h, freq[:, i * H:(i + 1) * H], phase[:, i * H:(i + 1) * H])
        final = self.final_layer
        offsets = F.linear(h, final.weight[:3], final.bias[:3])      # only the first 3 outputs are used
        return warped + offsets, offsets

    def forward(self, z_id: torch.Tensor, z_exp: torch.Tensor, points: torch.Tensor):
        """points: (B, ..., 3) -> canonical points and offsets of the same shape (warped frame)."""
        freq, phase = self.modulation(z_id, z_exp)
        flat = points.reshape(points.shape[0], -1, 3)
        canonical, offsets = self.forward_modulated(flat, freq, phase)
        return canonical.reshape(points.shape), offsets.reshape(points.shape)
