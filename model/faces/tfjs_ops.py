"""Small pieces needed to reproduce TF.js (face-api) numerics in PyTorch.

What this module offers, and why each exists:

- `same_padding(size, kernel, stride)` / `Conv2dSame`: TF's "SAME" padding puts the odd pixel of padding
  *after* the input (bottom/right), while `nn.Conv2d(padding=k//2)` pads symmetrically. For stride-2 3x3
  convolutions on even inputs TF pads (0, 1), so a symmetric pad shifts every output by one pixel.
  `Conv2dSame` pads at run time from the actual input size; it also serves depthwise convs (`groups=C`).
- `hwio_to_oihw(w)`, `depthwise_to_oihw(w)`: TF.js stores conv filters as (kh, kw, in, out) and depthwise
  filters as (kh, kw, C, 1); torch wants (out, in, kh, kw) and (C, 1, kh, kw).
- `resize_bilinear_tf(x, size)`: `tf.image.resizeBilinear(..., alignCorners=false, halfPixelCenters=false)`,
  the legacy sampling grid `src = dst * in/out` (no half-pixel centres), which `F.interpolate` cannot
  express. It interpolates in float64 and rounds to float32 like the TF.js CPU kernel.
- `square_net_input(images, size, centered)`: face-api's `NetInput.toBatchTensor`: zero-pad each HxWx3 image
  to a square (at the bottom/right, or split around the image when `centered`; the extra pixel of an odd
  split goes after), then `resize_bilinear_tf` to `size`. Values stay in 0..255; each net normalises itself.
- `js_round(v)`: JavaScript `Math.round` (halves go up), which differs from Python's banker's `round`;
  face-api uses it for padding amounts and reshaped sizes.
- `TfjsWeights`: a strict reader over a TF.js name -> tensor map. Modules `take` their tensors by name with
  the expected TF.js shape; a missing name, a wrong shape, or a tensor nobody took is a `FaceWeightsError`
  (a `model.weights.WeightsError`) that names it. `copy_into(param, value)` fills a parameter without autograd.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.weights import WeightsError


class FaceWeightsError(WeightsError):
    """A TF.js weight map does not fit the network being loaded (missing, unexpected, or mis-shaped tensor)."""


def js_round(v: float) -> int:
    """JavaScript `Math.round`: nearest integer, halves rounded towards +infinity."""
    return math.floor(v + 0.5)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) along one axis; the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """`nn.Conv2d` with TF "SAME" padding computed from the input size at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # (B,C,H,W) -> (B,C',ceil(H/s),ceil(W/s))
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        if (top, left) != (bottom, right):  # asymmetric: pad explicitly (zeros, as TF)
            x = F.pad(x, (left, right, top, bottom))
            top = left = 0
        return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)


def hwio_to_oihw(w: Tensor) -> Tensor:
    """(kh, kw, in, out) TF.js filter -> (out, in, kh, kw) torch weight."""
    return w.permute(3, 2, 0, 1).contiguous()


def depthwise_to_oihw(w: Tensor) -> Tensor:
    """(kh, kw, C, 1) TF.js depthwise filter -> (C, 1, kh, kw) torch weight for `groups=C`."""
    return w.permute(2, 3, 0, 1).contiguous()


def _legacy_axis(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    # Sample positions dst * (in/out) in double precision, clamped like the TF.js kernel.
    src = torch.arange(out_size, dtype=torch.float64, device=device) * (in_size / out_size)
    lo = src.floor().clamp(min=0)
    hi = src.ceil().clamp(max=in_size - 1)
    return lo.long(), hi.long(), src - lo


def resize_bilinear_tf(x: Tensor, size: tuple[int, int]) -> Tensor:
    """TF.js `resizeBilinear(alignCorners=false, halfPixelCenters=false)` on (B,C,H,W); returns float32.

    Arithmetic follows the TF.js CPU kernel: interpolate along x first, then y, in float64, and store float32.
    """
    out_h, out_w = size
    if x.shape[-2:] == (out_h, out_w):
        return x.to(torch.float32)
    y0, y1, fy = _legacy_axis(x.shape[-2], out_h, x.device)
    x0, x1, fx = _legacy_axis(x.shape[-1], out_w, x.device)
    v = x.to(torch.float64)
    top_rows, bottom_rows = v[..., y0, :], v[..., y1, :]          # (B,C,out_h,W)
    top = top_rows[..., x0] + (top_rows[..., x1] - top_rows[..., x0]) * fx
    bottom = bottom_rows[..., x0] + (bottom_rows[..., x1] - bottom_rows[..., x0]) * fx
    return (top + (bottom - top) * fy[:, None]).to(torch.float32)  # (B,C,out_h,out_w)


def _pad_to_square(x: Tensor, centered: bool) -> Tensor:
    # (C,H,W) -> (C,S,S), S = max(H,W), zeros added along the shorter axis.
    h, w = x.shape[-2:]
    diff = abs(h - w)
    if diff == 0:
        return x
    after = js_round(diff * 0.5) if centered else diff
    before = diff - after
    pad = (before, after, 0, 0) if h > w else (0, 0, before, after)
    return F.pad(x, pad)


def square_net_input(images: Sequence[np.ndarray | Tensor], size: int, centered: bool,
                     device: torch.device | str = "cpu") -> Tensor:
    """face-api `NetInput.toBatchTensor(size, centered)`: list of HxWx3 uint8 -> (B,3,size,size) float32 in 0..255."""
    out = []
    for image in images:
        t = torch.from_numpy(np.array(image)) if isinstance(image, np.ndarray) else image
        if t.ndim != 3 or t.shape[-1] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {tuple(t.shape)}")
        t = t.to(device=device, dtype=torch.float32).permute(2, 0, 1)  # (3,H,W) in 0..255
        t = _pad_to_square(t, centered)
        out.append(resize_bilinear_tf(t[None], (size, size))[0])
    return torch.stack(out)  # (B,3,size,size) in 0..255


class TfjsWeights:
    """Strict, consuming view of a TF.js weight map: every tensor must be taken exactly once, with its shape."""

    def __init__(self, tensors: Mapping[str, Tensor], source: str) -> None:
        self._tensors = dict(tensors)
        self._taken: set[str] = set()
        self.source = source

    def take(self, name: str, shape: Sequence[int]) -> Tensor:
        if name not in self._tensors:
            raise FaceWeightsError(f"{self.source}: missing tensor {name!r}")
        if name in self._taken:
            raise FaceWeightsError(f"{self.source}: tensor {name!r} taken twice")
        t = self._tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise FaceWeightsError(
                f"{self.source}: tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        self._taken.add(name)
        return t.to(torch.float32)

    def finish(self) -> None:
        """Raise if any tensor of the map was never taken (a sign the architecture and the file disagree)."""
        left = sorted(set(self._tensors) - self._taken)
        if left:
            raise FaceWeightsError(f"{self.source}: unexpected tensors {left}")


def copy_into(param: Tensor, value: Tensor) -> None:
    """Copy a converted TF.js tensor into a module parameter/buffer; shapes must already agree."""
    with torch.no_grad():
        param.copy_(value)
