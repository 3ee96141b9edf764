"""The one TF.js (face-api) helper layer of the four face-net ports: numerics, input preparation, building
blocks and strict weight loading, shared by `detector`, `landmarks`, `descriptor` and `expression`.

- `js_round(v)`: JavaScript `Math.round` (halves go up), not Python's banker's `round`; face-api uses it for
  padding amounts and reshaped sizes.
- `same_padding(size, kernel, stride)` / `Conv2dSame`: TF's "SAME" padding puts the odd pixel of padding
  *after* the input (bottom/right), while `nn.Conv2d(padding=k//2)` pads symmetrically; for stride-2 3x3 convs
  on even inputs TF pads (0, 1). `Conv2dSame` pads from the actual input size at run time (depthwise: `groups=C`).
- `hwio_to_oihw(w)`, `depthwise_to_oihw(w)`: TF.js filter layouts (kh, kw, in, out) and (kh, kw, C, 1) -> torch's.
- `resize_bilinear_tf(x, size)`: `tf.image.resizeBilinear(alignCorners=false, halfPixelCenters=false)`, the
  legacy grid `src = dst * in/out` that `F.interpolate` cannot express, in float64 rounded once to float32 like
  the TF.js CPU kernel, so prepared inputs equal TF.js's bit for bit.
- `pad_to_square(x, centered)`: zeros along the short axis, after the image (the detector) or split around it
  with the odd pixel after (`centered`: the face nets), as face-api's `NetInput.toBatchTensor` pads.
- `square_net_input(images, size, centered)`: `NetInput.toBatchTensor` itself: HxWx3 images -> (B,3,size,size)
  float32 in 0..255 (pad, then resize unless already `size`). `faces_to_batch(faces, size)` is the face nets'
  front end on top of it: checks the crops, also takes stacked arrays and [-1,1] tensors (differentiably), and
  normalises as face-api does for them (`(x - MEAN_RGB) / 255`).
- `TfjsWeights`: strict, consuming reader of a TF.js name -> tensor map. Modules `take` each tensor by name
  with its TF.js shape (or fill a conv / linear layer with `conv` / `linear`); a missing name, a wrong shape or
  a tensor nobody took is a `FaceWeightsError` (a `model.weights.WeightsError`) naming the tensor.
- `TfjsNet`: base of the four nets: `pretrained()`, `from_tfjs(map)`, `load_tfjs(map)` and `device`, around
  the net's own `load_weights(w)`.
- `SeparableConv`, `DenseBlock`, `FaceFeatureExtractor`: face-api's FaceFeatureExtractor (four dense blocks of
  separable convs, then a 7x7 average), the shared trunk of the landmark and the expression nets.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from artmator.model.faces.weights import load_face_weights
from artmator.model.weights import WeightsError

# face-api subtracts this RGB mean (0..255 scale), then divides by 255, for every net fed face crops.
MEAN_RGB = (122.782, 117.001, 104.298)

FaceInput = Sequence[np.ndarray | Tensor] | np.ndarray | Tensor


class FaceWeightsError(WeightsError):
    """A TF.js weight map does not fit the network being loaded (missing, unexpected, or mis-shaped tensor)."""


def js_round(v: float) -> int:
    """JavaScript `Math.round`: nearest integer, halves rounded towards +infinity."""
    return math.floor(v + 0.5)


# ------------------------------------------------------------------------------------------- convolutions
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


# ------------------------------------------------------------------------------------ input preparation
def _legacy_axis(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    # Sample positions dst * (in/out) (the ratio a Python float: double, as in TF.js), clamped like its kernel.
    src = torch.arange(n_out, dtype=torch.float64, device=device) * (n_in / n_out)
    lo = src.floor().clamp(min=0)
    hi = src.ceil().clamp(max=n_in - 1)
    return lo.long(), hi.long(), (src - lo).to(dtype)


def resize_bilinear_tf(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """TF.js `resizeBilinear(alignCorners=false, halfPixelCenters=false)` of (..., H, W); returns float32.

    Not torch's `interpolate`, which samples at half-pixel centres (up to half a source pixel apart). Arithmetic
    follows the TF.js CPU kernel: along x first, then y, in float64 (float32 on MPS, which has no float64),
    stored as float32 once. `size` is an int (square) or (out_h, out_w); the same size returns a float32 copy.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if tuple(x.shape[-2:]) == (out_h, out_w):
        return x.to(torch.float32)
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    y0, y1, fy = _legacy_axis(x.shape[-2], out_h, x.device, wide)
    x0, x1, fx = _legacy_axis(x.shape[-1], out_w, x.device, wide)
    v = x.to(wide)
    top_rows, bottom_rows = v[..., y0, :], v[..., y1, :]          # (..., out_h, W)
    top = top_rows[..., x0] + (top_rows[..., x1] - top_rows[..., x0]) * fx
    bottom = bottom_rows[..., x0] + (bottom_rows[..., x1] - bottom_rows[..., x0]) * fx
    return (top + (bottom - top) * fy[:, None]).to(torch.float32)  # (..., out_h, out_w)


def pad_to_square(x: Tensor, centered: bool = True) -> Tensor:
    """(..., H, W) -> (..., S, S), S = max(H, W), zeros along the short axis: all after the image (bottom/right),
    or when `centered` split around it with the larger half after (face-api appends `Math.round(diff / 2)`)."""
    h, w = x.shape[-2:]
    diff = abs(h - w)
    if diff == 0:
        return x
    after = js_round(diff * 0.5) if centered else diff
    before = diff - after
    return F.pad(x, (before, after, 0, 0) if h > w else (0, 0, before, after))


def square_net_input(images: Sequence[np.ndarray | Tensor], size: int, centered: bool,
                     device: torch.device | str | None = "cpu") -> Tensor:
    """face-api `NetInput.toBatchTensor(size, centered)`: HxWx3 images (any sizes, 0..255) -> (B,3,size,size)
    float32 in 0..255. Each net normalises the result itself."""
    out = []
    for image in images:
        t = torch.from_numpy(np.array(image)) if isinstance(image, np.ndarray) else image
        if t.ndim != 3 or t.shape[-1] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {tuple(t.shape)}")
        t = t.to(device=device, dtype=torch.float32).permute(2, 0, 1)  # (3,H,W) in 0..255
        out.append(resize_bilinear_tf(pad_to_square(t, centered), size))
    return torch.stack(out)  # (B,3,size,size) in 0..255


def normalize_face_input(x: Tensor) -> Tensor:
    """(B,3,S,S) RGB in 0..255 -> face-api's face-net input `(x - MEAN_RGB) / 255`, float32."""
    mean = torch.tensor(MEAN_RGB, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / 255.0


def faces_to_batch(faces: FaceInput, size: int, device: torch.device | str | None = None) -> Tensor:
    """Face crops -> (N, 3, size, size) float32 net input on `device`, each crop prepared as face-api does
    (zero-pad to a centred square, legacy bilinear resize, `normalize_face_input`).

    `faces` is one of:
      - a list of (H, W, 3) uint8 RGB crops (numpy or torch; sizes may differ): face-api's own input;
      - an (N, H, W, 3) uint8 numpy array of same-sized crops;
      - an (N, 3, H, W) float torch tensor in [-1, 1] (the repo's image convention; stays differentiable).
    """
    if isinstance(faces, Tensor):
        if faces.ndim != 4 or faces.shape[1] != 3 or not faces.is_floating_point():
            raise ValueError(f"a face tensor must be (N, 3, H, W) float in [-1, 1], got {faces.dtype} "
                             f"{tuple(faces.shape)}; pass uint8 HxWx3 crops as a list or numpy array")
        _check_nonempty(faces.shape[-2:], "face tensor")
        x = ((faces.to(device) if device is not None else faces) + 1.0) * 127.5
        return normalize_face_input(resize_bilinear_tf(pad_to_square(x), size))
    if isinstance(faces, np.ndarray):
        if faces.ndim != 4:
            raise ValueError(f"a face array must be (N, H, W, 3) uint8, got shape {faces.shape}")
        faces = list(faces)
    if len(faces) == 0:
        raise ValueError("no face crops given")
    crops = [face if isinstance(face, Tensor) else np.asarray(face) for face in faces]
    for i, t in enumerate(crops):
        if t.ndim != 3 or t.shape[-1] != 3 or t.dtype != (torch.uint8 if isinstance(t, Tensor) else np.uint8):
            raise ValueError(f"face crop {i} must be (H, W, 3) uint8 RGB, got {t.dtype} {tuple(t.shape)}")
        _check_nonempty(t.shape[:2], f"face crop {i}")
    return normalize_face_input(square_net_input(crops, size, centered=True, device=device))


def _check_nonempty(hw: Sequence[int], what: str) -> None:
    if min(hw) <= 0:
        raise ValueError(f"{what} is empty ({tuple(hw)}); face-api would return an all-zero result for it")


# --------------------------------------------------------------------------------------- weight loading
class TfjsWeights:
    """Strict, consuming view of a TF.js weight map: every tensor must be taken exactly once, with its shape."""

    def __init__(self, tensors: Mapping[str, Tensor], source: str) -> None:
        self._tensors = dict(tensors)
        self._taken: set[str] = set()
        self.source = source

    def take(self, name: str, shape: Sequence[int]) -> Tensor:
        """The tensor `name` (float32, TF.js layout), which must have `shape`."""
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

    def fill(self, target: Tensor, name: str) -> None:
        """Copy the tensor `name`, of `target`'s shape and layout, into a parameter or buffer."""
        copy_into(target, self.take(name, target.shape))

    def conv(self, conv: nn.Conv2d, filters: str, bias: str | None = None) -> None:
        """Fill a conv from a TF.js filter ((kh, kw, in, out); (kh, kw, C, 1) for a depthwise conv) and bias."""
        o, i, kh, kw = conv.weight.shape
        if conv.groups == 1:
            copy_into(conv.weight, hwio_to_oihw(self.take(filters, (kh, kw, i, o))))
        elif conv.groups == o and i == 1:
            copy_into(conv.weight, depthwise_to_oihw(self.take(filters, (kh, kw, o, 1))))
        else:
            raise TypeError(f"no TF.js filter layout for a conv with {conv.groups} groups")
        if bias is not None:
            self.fill(conv.bias, bias)

    def linear(self, linear: nn.Linear, weights: str, bias: str | None = None) -> None:
        """Fill a linear layer from a TF.js (in, out) matrix and bias."""
        copy_into(linear.weight, self.take(weights, linear.weight.shape[::-1]).T)
        if bias is not None:
            self.fill(linear.bias, bias)

    def finish(self) -> None:
        """Raise if any tensor of the map was never taken (a sign the architecture and the file disagree)."""
        left = sorted(set(self._tensors) - self._taken)
        if left:
            raise FaceWeightsError(f"{self.source}: unexpected tensors (unused by the net): {left}")


def copy_into(param: Tensor, value: Tensor) -> None:
    """Copy a converted TF.js tensor into a module parameter/buffer; shapes must already agree."""
    with torch.no_grad():
        param.copy_(value)


NetT = TypeVar("NetT", bound="TfjsNet")


class TfjsNet(nn.Module):
    """Base of the face-api ports: a net built from a TF.js weight map. Subclasses name their shipped file
    (`WEIGHTS`, see `model.faces.weights.NETS`) and take every tensor of it in `load_weights`."""

    WEIGHTS: ClassVar[str]

    def load_weights(self, w: TfjsWeights) -> None:
        raise NotImplementedError

    def load_tfjs(self: NetT, tensors: Mapping[str, Tensor], source: str | None = None) -> NetT:
        """Fill in place from a TF.js name -> tensor map (TF.js layouts), strictly: every tensor must be used,
        with its shape, and every parameter and buffer filled; else `FaceWeightsError` naming the tensor."""
        w = TfjsWeights(tensors, source or self.WEIGHTS)
        state = list(self.named_parameters()) + list(self.named_buffers())
        with torch.no_grad():
            for _, t in state:
                t.fill_(float("nan"))  # a parameter no `load_weights` fills cannot pass silently
            self.load_weights(w)
        w.finish()
        unfilled = [name for name, t in state if not torch.isfinite(t).all()]
        if unfilled:
            raise FaceWeightsError(f"{w.source}: {unfilled} not filled by the loader (or not finite in the map)")
        return self

    @classmethod
    def from_tfjs(cls: type[NetT], tensors: Mapping[str, Tensor], source: str | None = None) -> NetT:
        """A new net from a TF.js weight map (see `load_tfjs`), in eval mode."""
        return cls().load_tfjs(tensors, source).eval()

    @classmethod
    def pretrained(cls: type[NetT]) -> NetT:
        """The shipped face-api weights (model/faces/weights/<WEIGHTS>.safetensors), in eval mode, gradients off."""
        return cls.from_tfjs(load_face_weights(cls.WEIGHTS)).requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


# ------------------------------------------------------------------------- face-api FaceFeatureExtractor
class SeparableConv(nn.Module):
    """TF `separableConv2d` ('SAME') + bias: a 3x3 depthwise conv (carrying the stride), then a 1x1 conv."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = Conv2dSame(cin, cin, 3, stride, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def load(self, w: TfjsWeights, prefix: str) -> None:
        w.conv(self.depthwise, f"{prefix}/depthwise_filter")
        w.conv(self.pointwise, f"{prefix}/pointwise_filter", f"{prefix}/bias")

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class DenseBlock(nn.Module):
    """face-api's 4-conv dense block: conv0 halves the resolution (a plain 3x3 conv on RGB input when `first`),
    each later conv sees the ReLU of the sum of all earlier outputs (additive DenseNet-style skips).

    (B, cin, H, W) -> (B, cout, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, cin: int, cout: int, first: bool = False) -> None:
        super().__init__()
        self.conv0 = Conv2dSame(cin, cout, 3, 2) if first else SeparableConv(cin, cout, 2)
        self.convs = nn.ModuleList(SeparableConv(cout, cout) for _ in range(3))

    def load(self, w: TfjsWeights, prefix: str) -> None:
        if isinstance(self.conv0, SeparableConv):
            self.conv0.load(w, f"{prefix}/conv0")
        else:
            w.conv(self.conv0, f"{prefix}/conv0/filters", f"{prefix}/conv0/bias")
        for k, conv in enumerate(self.convs, start=1):
            conv.load(w, f"{prefix}/conv{k}")

    def forward(self, x: Tensor) -> Tensor:
        out1 = torch.relu(self.conv0(x))
        out2 = self.convs[0](out1)
        out3 = self.convs[1](torch.relu(out1 + out2))
        out4 = self.convs[2](torch.relu(out1 + (out2 + out3)))
        return torch.relu(out1 + (out2 + (out3 + out4)))


class FaceFeatureExtractor(nn.Module):
    """face-api's FaceFeatureExtractor (TF.js names `dense0` .. `dense3`) + its 7x7/2 'valid' average pool:
    (B, 3, 112, 112) -> 56 -> 28 -> 14 -> 7 -> (B, 256). The landmark and expression nets' shared trunk."""

    CHANNELS = (32, 64, 128, 256)

    def __init__(self) -> None:
        super().__init__()
        cins = (3,) + self.CHANNELS[:-1]
        self.blocks = nn.ModuleList(DenseBlock(i, o, first=k == 0)
                                    for k, (i, o) in enumerate(zip(cins, self.CHANNELS)))

    def load(self, w: TfjsWeights) -> None:
        for k, block in enumerate(self.blocks):
            block.load(w, f"dense{k}")

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)                                # ... -> (B, 256, 7, 7)
        return F.avg_pool2d(x, 7, 2).flatten(1)         # (B, 256)
