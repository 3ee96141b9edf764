"""face-api's 128-d face descriptor (FaceRecognitionNet), ported to torch.

The net is dlib's ResNet-34-like face-recognition model as face-api ships it: a 7x7/2 conv and a 3x3/2 max-pool,
then 14 residual blocks in four widths (32, 64, 128, 256) and a 128-d linear projection of the global average.
Every conv is followed by a per-channel affine "scale" layer (dlib's frozen batch-norm); the downsampling blocks
use 'valid' 3x3/2 convs and a 2x2 average-pool shortcut whose extra channels are zeros, and when the two branches
disagree in size (odd inputs) the conv branch is zero-padded at the bottom/right to the shortcut's size.

Descriptors of the same person lie within Euclidean distance 0.6 of each other (face-api's `FaceMatcher` and
dlib's threshold); `descriptor_distance` is that measure, `descriptor_similarity` the cosine.

Input: face crops as face-api takes them (see `model.faces.tfjs_ops.faces_to_batch`), padded to a square and
resized to 150 px; `describe` returns what face-api's `computeFaceDescriptor` returns for the same crops.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artmator.model.faces.tfjs_ops import FaceInput, TfjsNet, TfjsWeights, faces_to_batch

INPUT_SIZE = 150
DESCRIPTOR_DIM = 128
SAME_PERSON_DISTANCE = 0.6  # face-api's FaceMatcher default: Euclidean distance below this = same person


class ConvLayer(nn.Module):
    """conv (+ bias) -> per-channel scale and shift (dlib's frozen batch-norm) -> optional ReLU.
    'valid' when strided, else 'SAME' (for an odd kernel at stride 1, a symmetric pad).

    TF.js names `<prefix>/conv/{filters,bias}` and `<prefix>/scale/{weights,biases}`.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, padding=(k - 1) // 2 if stride == 1 else 0)
        self.scale = nn.Parameter(torch.ones(c_out))
        self.shift = nn.Parameter(torch.zeros(c_out))

    def load(self, w: TfjsWeights, prefix: str) -> None:
        w.conv(self.conv, f"{prefix}/conv/filters", f"{prefix}/conv/bias")
        w.fill(self.scale, f"{prefix}/scale/weights")
        w.fill(self.shift, f"{prefix}/scale/biases")

    def forward(self, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        out = self.conv(x) * self.scale[:, None, None] + self.shift[:, None, None]
        return F.relu(out) if relu else out


class Residual(nn.Module):
    """Two 3x3 conv layers and an identity shortcut; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, c: int, c_out: int | None = None, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvLayer(c, c_out or c, stride=stride)
        self.conv2 = ConvLayer(c_out or c, c_out or c)

    def load(self, w: TfjsWeights, prefix: str) -> None:
        self.conv1.load(w, f"{prefix}/conv1")
        self.conv2.load(w, f"{prefix}/conv2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x), relu=False) + x)


class ResidualDown(Residual):
    """Downsampling block: 3x3/2 'valid' conv branch + 2x2/2 average-pool shortcut (channels zero-extended).

    (B, c_in, H, W) -> (B, c_out, floor(H/2), floor(W/2)).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x), relu=False)
        pooled = F.avg_pool2d(x, 2, 2)
        dh, dw = pooled.shape[-2] - out.shape[-2], pooled.shape[-1] - out.shape[-1]
        if dh or dw:  # the valid conv lost a row/column the pool kept: zeros at the bottom/right, as face-api
            out = F.pad(out, [0, dw, 0, dh])
        if pooled.shape[1] != out.shape[1]:
            pooled = F.pad(pooled, [0, 0, 0, 0, 0, out.shape[1] - pooled.shape[1]])
        return F.relu(pooled + out)


class FaceDescriptorNet(TfjsNet):
    """(B, 3, 150, 150) prepared face crops (`faces_to_batch(..., 150)`) -> (B, 128) descriptors.

    Build with `FaceDescriptorNet.pretrained()` (face-api's weights) or `FaceDescriptorNet().load_tfjs(map)`.
    Differentiable with respect to its input, so it can also serve as an identity loss.
    """

    WEIGHTS = "face_recognition"

    def __init__(self) -> None:
        super().__init__()
        self.conv32_down = ConvLayer(3, 32, k=7, stride=2)
        self.conv32_1, self.conv32_2, self.conv32_3 = Residual(32), Residual(32), Residual(32)
        self.conv64_down = ResidualDown(32, 64)
        self.conv64_1, self.conv64_2, self.conv64_3 = Residual(64), Residual(64), Residual(64)
        self.conv128_down = ResidualDown(64, 128)
        self.conv128_1, self.conv128_2 = Residual(128), Residual(128)
        self.conv256_down = ResidualDown(128, 256)
        self.conv256_1, self.conv256_2 = Residual(256), Residual(256)
        self.conv256_down_out = ResidualDown(256, 256)
        self.fc = nn.Linear(256, DESCRIPTOR_DIM, bias=False)

    def load_weights(self, w: TfjsWeights) -> None:
        for name, block in self.named_children():
            if name != "fc":
                block.load(w, name)               # TF.js names `conv32_1/conv1/conv/filters`, ...
        w.linear(self.fc, "fc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv32_down(x)                                  # (B, 32, 72, 72) for 150-px input
        x = F.max_pool2d(x, 3, 2)                                # (B, 32, 35, 35)
        x = self.conv32_3(self.conv32_2(self.conv32_1(x)))
        x = self.conv64_down(x)                                  # (B, 64, 17, 17)
        x = self.conv64_3(self.conv64_2(self.conv64_1(x)))
        x = self.conv128_down(x)                                 # (B, 128, 8, 8)
        x = self.conv128_2(self.conv128_1(x))
        x = self.conv256_down(x)                                 # (B, 256, 4, 4)
        x = self.conv256_2(self.conv256_1(x))
        x = self.conv256_down_out(x)                             # (B, 256, 2, 2)
        return self.fc(x.mean(dim=(2, 3)))                       # (B, 128)


@lru_cache(maxsize=None)
def default_descriptor_net() -> FaceDescriptorNet:
    """The pretrained net on CPU, built once per process."""
    return FaceDescriptorNet.pretrained()


def describe(faces: FaceInput, net: FaceDescriptorNet | None = None, batch_size: int = 64) -> np.ndarray:
    """Face crops -> (N, 128) float32 descriptors, as face-api's `computeFaceDescriptor` gives for each crop.

    `faces`: a list of (H, W, 3) uint8 RGB crops (any sizes), an (N, H, W, 3) uint8 array, or an (N, 3, H, W)
    float tensor in [-1, 1]. Runs on `net`'s device (default: the shared CPU net) in chunks of `batch_size`.
    On CUDA, torch lets cuDNN convolutions use TF32 by default (`torch.backends.cudnn.allow_tf32`), which
    trades the ~1e-7 agreement with TF.js seen on CPU for ~10-bit-mantissa products; turn it off if that matters.
    """
    net = net or default_descriptor_net()
    batch = faces_to_batch(faces, INPUT_SIZE, net.device)        # (N, 3, 150, 150)
    with torch.inference_mode():
        out = [net(chunk) for chunk in batch.split(batch_size)]
    return torch.cat(out).cpu().numpy()


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors: face-api's matching measure (< 0.6: same person)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def descriptor_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two descriptors, in [-1, 1] (descriptors are not unit-norm; their norm is ~1.3-1.5)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
