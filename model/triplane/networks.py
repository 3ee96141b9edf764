"""The tri-plane generator's networks: mapping z -> w, modulated conv synthesis of three feature planes, and the
small decoder MLP that turns a sampled feature into density and colour (EG3D's architecture, small).

The tunable part (`TriplaneGenerator`) is built from plain `nn.Linear` and `nn.Conv2d` layers, which is what it
declares for LoRA adapters; modulation and demodulation happen around the convolutions and read the weight each
batch element sees (`model.lora.effective_weight`), so an adapted, a merged and a fully tuned generator agree.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from artmator.model.lora import effective_weight

LRELU_GAIN = math.sqrt(2.0)  # keeps activations' second moment through leaky ReLU(0.2), as StyleGAN


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): normalised z through a leaky-ReLU MLP. `w_avg` is the truncation centre."""

    def __init__(self, z_dim: int, w_dim: int, layers: int):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def reset_parameters(self) -> None:
        for fc in self.net:
            nn.init.kaiming_normal_(fc.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(fc.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=-1, keepdim=True) + 1e-8)     # second-moment normalisation
        for fc in self.net:
            x = F.leaky_relu(fc(x), 0.2) * LRELU_GAIN
        return x

    @torch.no_grad()
    def estimate_w_avg(self, samples: int, seed: int = 0) -> None:
        """Set `w_avg` to the mean w of `samples` seeded z (EG3D tracks it during training instead)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(samples, self.net[0].in_features, generator=g).to(self.w_avg.device)
        self.w_avg.copy_(self(z).mean(0))

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """Truncation trick: w_avg + psi · (w - w_avg) (psi = 1: unchanged)."""
        return w if psi == 1 else self.w_avg + psi * (w - self.w_avg)


class ModulatedConv(nn.Module):
    """StyleGAN2's modulated convolution: input channels scaled by a per-sample style from w, a plain conv, then
    (optionally) each output channel divided by the norm of its modulated weights, plus a bias.

    x (B, in, H, W), w (B, w_dim) -> (B, out, H, W). Demodulation uses the weight each sample's adapter sees, so
    it holds for LoRA-adapted and merged weights alike.
    """

    def __init__(self, w_dim: int, in_channels: int, out_channels: int, kernel: int, demodulate: bool = True,
                 activate: bool = True):
        super().__init__()
        self.affine = nn.Linear(w_dim, in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.demodulate, self.activate = demodulate, activate

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.affine.weight, nonlinearity="linear")
        self.affine.weight.data.mul_(0.5)                                        # styles: 1 ± 0.5 across latents
        nn.init.ones_(self.affine.bias)
        nn.init.kaiming_normal_(self.conv.weight, a=0.2, nonlinearity="leaky_relu")
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)                                                   # (B, in)
        y = self.conv(x * style[:, :, None, None])                               # (B, out, H, W)
        if self.demodulate:
            weight = effective_weight(self.conv)                                 # (K|1, out, in, kh, kw)
            energy = weight.square().sum(dim=(3, 4))                             # (K|1, out, in)
            y = y * torch.rsqrt((energy * style.square()[:, None, :]).sum(-1) + 1e-8)[:, :, None, None]
        y = y + self.bias[None, :, None, None]
        return F.leaky_relu(y, 0.2) * LRELU_GAIN if self.activate else y


class PlaneSynthesis(nn.Module):
    """w (B, w_dim) -> three axis-aligned feature planes (B, 3, C, P, P).

    A learned 4×4 constant, one modulated 3×3 conv per resolution with bilinear ×2 upsampling in between, and a
    modulated 1×1 conv without demodulation (StyleGAN's toRGB) that emits 3·C channels, split into the planes.
    """

    def __init__(self, w_dim: int, channels: int, upsamplings: int, plane_channels: int):
        super().__init__()
        self.const = nn.Parameter(torch.zeros(channels, 4, 4))
        self.convs = nn.ModuleList([ModulatedConv(w_dim, channels, channels, 3) for _ in range(upsamplings + 1)])
        self.to_planes = ModulatedConv(w_dim, channels, 3 * plane_channels, 1, demodulate=False, activate=False)
        self.plane_channels = plane_channels

    def reset_parameters(self) -> None:
        nn.init.normal_(self.const)
        for m in [*self.convs, self.to_planes]:
            m.reset_parameters()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.const.repeat(w.shape[0], 1, 1, 1)                               # (B, ch, 4, 4)
        for i, conv in enumerate(self.convs):
            if i:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = conv(x, w)
        planes = self.to_planes(x, w)                                            # (B, 3·C, P, P)
        return planes.reshape(w.shape[0], 3, self.plane_channels, *planes.shape[-2:])


class PlaneDecoder(nn.Module):
    """EG3D's OSG decoder: aggregated plane feature (B, N, C) -> raw density (B, N, 1), colour (B, N, 3) in ~[0, 1]."""

    def __init__(self, plane_channels: int, hidden: int):
        super().__init__()
        self.hidden = nn.Linear(plane_channels, hidden)
        self.out = nn.Linear(hidden, 1 + 3)

    def reset_parameters(self, density_gain: float = 18.0, empty_density: float = -3.0,
                         color_gain: float = 2.0) -> None:
        """Kaiming init, then a contrasty density and saturated colours, so that even random weights render solid
        3D blobs that turn with the camera instead of a flat fog: the density row is scaled by `density_gain` and
        its bias set so that a zero feature (outside the box) has raw density `empty_density` (clear air) and a
        grey colour."""
        for fc in (self.hidden, self.out):
            nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
            nn.init.zeros_(fc.bias)
        with torch.no_grad():
            self.out.weight[:1].mul_(density_gain)
            self.out.bias[:1] = empty_density - self.out.weight[0].sum() * math.log(2.0)   # softplus(0) = log 2
            self.out.weight[1:].mul_(color_gain)
            self.out.bias[1:] = -self.out.weight[1:].sum(dim=1) * math.log(2.0)          # zero feature: grey

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.out(F.softplus(self.hidden(features)))
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001                # EG3D widens the sigmoid slightly
        return x[..., :1], rgb


class TriplaneGenerator(nn.Module):
    """The tunable generator G: plane synthesis + decoder. LoRA adapts its linears and convolutions."""

    ADAPTER_TARGETS = (nn.Linear, nn.Conv2d)

    def __init__(self, synthesis: PlaneSynthesis, decoder: PlaneDecoder):
        super().__init__()
        self.synthesis = synthesis
        self.decoder = decoder

    def reset_parameters(self) -> None:
        self.synthesis.reset_parameters()
        self.decoder.reset_parameters()
