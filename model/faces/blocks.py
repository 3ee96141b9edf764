"""Pieces shared by the face-api ports (descriptor, expressions): TF.js-faithful input preparation, TF 'SAME'
padding, separable convolutions and dense blocks, and strict loading of TF.js weight maps.

Input preparation reproduces face-api's `NetInput.toBatchTensor(size, isCenterInputs=True)` on a face crop:
zero-pad the short side to a square (the odd pixel of an odd difference goes after the image), resize with
TF's legacy bilinear rule (align_corners=False, half_pixel_centers=False: source = dst * in/out) when the square
is not already `size`, then subtract face-api's mean RGB and divide by 255. The interpolation runs in float64 and
is rounded to float32 once, as TF.js's CPU kernel does, so prepared inputs equal TF.js's bit for bit.

Weight loading: torch modules are laid out so that a parameter's dotted name is its TF.js name with '/' (e.g.
`conv32_1.conv1.conv.filters` <-> `conv32_1/conv1/conv/filters`). `load_tfjs_weights` fills every parameter
from the map, converting layouts by the name's last part, and refuses a missing, unused or wrong-shaped tensor.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.weights import WeightsError

# face-api subtracts this RGB mean (0..255 scale) before dividing by 255, for every net fed face crops.
MEAN_RGB = (122.782, 117.001, 104.298)

# TF.js layout -> torch layout, keyed by the last part of the weight name; other names keep their layout.
_TO_TORCH = {
    "filters": (3, 2, 0, 1),  # HWIO -> OIHW
    "pointwise_filter": (3, 2, 0, 1),  # (1, 1, Cin, Cout) -> (Cout, Cin, 1, 1)
    "depthwise_filter": (2, 3, 0, 1),  # (H, W, C, 1) -> (C, 1, H, W)
}


# ----------------------------------------------------------------------------------------------- weights
def load_tfjs_weights(module: nn.Module, weights: Mapping[str, torch.Tensor], what: str) -> None:
    """Copy a TF.js weight map (name -> tensor in TF.js layout) into `module`'s parameters, strictly.

    Every parameter must find its tensor and every tensor must be used: a partial or foreign file would
    otherwise give a net that runs and returns plausible-looking garbage. Raises `WeightsError` (a ValueError)
    naming the offending tensor.
    """
    remaining = dict(weights)
    with torch.no_grad():
        for key, param in module.named_parameters():
            name = key.replace(".", "/")
            if name not in remaining:
                raise WeightsError(f"{what} weights: tensor {name!r} is missing")
            value = remaining.pop(name)
            perm = _TO_TORCH.get(name.rsplit("/", 1)[-1])
            expected = tuple(param.shape) if perm is None else tuple(param.shape[perm.index(i)] for i in range(4))
            if tuple(value.shape) != expected:
                raise WeightsError(f"{what} weights: tensor {name!r} has shape {tuple(value.shape)}, "
                                 f"expected {expected} (TF.js layout)")
            if perm is not None:
                value = value.permute(*perm)
            param.copy_(value.to(param.dtype))
    if remaining:
        raise WeightsError(f"{what} weights: unused tensors {sorted(remaining)}; the file does not match the net")


def empty_param(*shape: int) -> nn.Parameter:
    """A placeholder the TF.js loader fills (NaN so a parameter the loader somehow skipped cannot pass silently)."""
    return nn.Parameter(torch.full(shape, float("nan")))


# ---------------------------------------------------------------------------------------------- padding
def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad (B, C, H, W) as TF's 'SAME' does: total = max((ceil(n/s)-1)*s + k - n, 0), extra pixel after."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: W then H
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


# ---------------------------------------------------------------------------------------- dense blocks
def _same(x: torch.Tensor, stride: int) -> torch.Tensor:
    # 3x3 'SAME' at stride 1 is a symmetric 1-px pad, which conv2d's own `padding` does faster.
    return x if stride == 1 else tf_same_pad(x, 3, stride)


class SeparableConv(nn.Module):
    """TF's separable_conv2d ('SAME') + bias: a 3x3 depthwise conv (carrying the stride), then a 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.depthwise_filter = empty_param(c_in, 1, 3, 3)
        self.pointwise_filter = empty_param(c_out, c_in, 1, 1)
        self.bias = empty_param(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(_same(x, self.stride), self.depthwise_filter, stride=self.stride, groups=x.shape[1],
                     padding=1 if self.stride == 1 else 0)
        return F.conv2d(x, self.pointwise_filter, self.bias)


class Conv(nn.Module):
    """A plain 3x3 'SAME' conv + bias (the first layer of face-api's first dense block, on RGB input)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.filters = empty_param(c_out, c_in, 3, 3)
        self.bias = empty_param(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(_same(x, self.stride), self.filters, self.bias, stride=self.stride,
                        padding=1 if self.stride == 1 else 0)


class DenseBlock4(nn.Module):
    """face-api's 4-layer dense block: conv0 halves the resolution, each later conv sees the sum of all
    earlier outputs (a DenseNet-style block with additive rather than concatenated skips), ReLU after each sum.

    (B, c_in, H, W) -> (B, c_out, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, c_in: int, c_out: int, first: bool = False) -> None:
        super().__init__()
        self.conv0 = Conv(c_in, c_out, stride=2) if first else SeparableConv(c_in, c_out, stride=2)
        self.conv1 = SeparableConv(c_out, c_out)
        self.conv2 = SeparableConv(c_out, c_out)
        self.conv3 = SeparableConv(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + (out2 + out3)))
        return F.relu(out1 + (out2 + (out3 + out4)))


# ---------------------------------------------------------------------------------------- preparation
def pad_to_square(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, S, S), S = max(H, W): zeros on both sides of the short axis, the larger half after
    the image (face-api appends round(diff / 2) with JS rounding, half up, and prepends the rest)."""
    h, w = x.shape[-2:]
    diff = abs(h - w)
    if diff == 0:
        return x
    after = (diff + 1) // 2  # == Math.round(diff * 0.5)
    before = diff - after
    pads = [before, after, 0, 0] if h > w else [0, 0, before, after]
    return F.pad(x, pads)


def _legacy_bilinear_taps(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype):
    ratio = n_in / n_out  # a Python float: double, as in TF.js
    src = torch.arange(n_out, device=device, dtype=torch.float64) * ratio
    lo = src.floor().clamp(min=0)
    frac = (src - lo).to(dtype)
    hi = src.ceil().clamp(max=n_in - 1)
    return lo.long(), hi.long(), frac


def resize_bilinear_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF's legacy bilinear resize (align_corners=False, half_pixel_centers=False) of (B, C, H, W) to size².

    Not torch's `interpolate`, which samples at half-pixel centres: the two differ by up to half a source pixel.
    Computed in float64 (float32 where the device has no float64) and returned as float32, like TF.js's CPU kernel.
    """
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    h, w = x.shape[-2:]
    x = x.to(wide)
    r0, r1, fr = _legacy_bilinear_taps(h, size, x.device, wide)
    c0, c1, fc = _legacy_bilinear_taps(w, size, x.device, wide)
    top, bottom = x[..., r0, :], x[..., r1, :]  # (B, C, size, W)
    top = top[..., c0] + (top[..., c1] - top[..., c0]) * fc
    bottom = bottom[..., c0] + (bottom[..., c1] - bottom[..., c0]) * fc
    return (top + (bottom - top) * fr[:, None]).to(torch.float32)


def prepare_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) RGB in 0..255 -> (B, 3, size, size) float32 net input: pad, resize, subtract mean, / 255."""
    x = pad_to_square(x)
    x = resize_bilinear_tf(x, size) if x.shape[-1] != size else x.to(torch.float32)
    mean = torch.tensor(MEAN_RGB, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / 255.0


FaceInput = Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor


def faces_to_batch(faces: FaceInput, size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Face crops -> (N, 3, size, size) float32 net input on `device`, each crop prepared as face-api does.

    `faces` is one of:
      - a list of (H, W, 3) uint8 RGB crops (numpy or torch; sizes may differ): face-api's own input;
      - an (N, H, W, 3) uint8 numpy array of same-sized crops;
      - an (N, 3, H, W) float torch tensor in [-1, 1] (the repo's image convention; stays differentiable).
    """
    if isinstance(faces, torch.Tensor):
        if faces.ndim != 4 or faces.shape[1] != 3 or not faces.is_floating_point():
            raise ValueError(f"a face tensor must be (N, 3, H, W) float in [-1, 1], got {faces.dtype} "
                             f"{tuple(faces.shape)}; pass uint8 HxWx3 crops as a list or numpy array")
        _check_nonempty(faces.shape[-2:], "face tensor")
        x = (faces.to(device) if device is not None else faces) + 1.0
        return prepare_square(x * 127.5, size)
    if isinstance(faces, np.ndarray):
        if faces.ndim != 4:
            raise ValueError(f"a face array must be (N, H, W, 3) uint8, got shape {faces.shape}")
        faces = list(faces)
    if len(faces) == 0:
        raise ValueError("no face crops given")
    prepared = []
    for i, face in enumerate(faces):
        t = torch.as_tensor(np.asarray(face)) if not isinstance(face, torch.Tensor) else face
        if t.ndim != 3 or t.shape[-1] != 3 or t.dtype != torch.uint8:
            raise ValueError(f"face crop {i} must be (H, W, 3) uint8 RGB, got {t.dtype} {tuple(t.shape)}")
        _check_nonempty(t.shape[:2], f"face crop {i}")
        t = t.to(device) if device is not None else t
        prepared.append(prepare_square(t.permute(2, 0, 1)[None].to(torch.float32), size))  # (1, 3, S, S)
    return torch.cat(prepared)


def _check_nonempty(hw: Sequence[int], what: str) -> None:
    if min(hw) <= 0:
        raise ValueError(f"{what} is empty ({tuple(hw)}); face-api would return an all-zero result for it")
