"""face-api's 68-point landmark net (`FaceLandmark68Net`, the full one), ported to PyTorch from its TF.js weights.

Landmarks are located on a face crop and mapped back exactly as face-api's `detectAllFaces(...)
.withFaceLandmarks()` does for tensor inputs, so results agree with it to float rounding:

1. crop: the box is clipped to the image and *floored* (x, y, width and height separately);
2. the crop is zero-padded to a square *centred* (odd pixel after), resized (legacy bilinear) to 112x112,
   mean-subtracted (122.782, 117.001, 104.298) and divided by 255;
3. the net outputs 68 (x, y) in [0,1] of the padded square; face-api removes the padding as `|w - h| / 2`
   in 112-pixel units (not the floored amount step 2 used), rescales to the crop size and finally shifts by
   the *unfloored* box corner (x, y). Steps 1 and 3 together make points sit up to a pixel off the crop
   they were found in; we keep that, since matching face-api is the point of the port.

One deliberate difference: for a box reaching past the top/left border we shift by the clipped corner
(max(x, 0), max(y, 0)), where the crop really starts. face-api's detector never produces such boxes (it clamps
them at 0), so its pipeline is unaffected; shifting by a negative corner would misplace every point.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol, Union

import numpy as np
import torch
from torch import Tensor, nn

from model.faces.tfjs_ops import (
    Conv2dSame, TfjsWeights, copy_into, depthwise_to_oihw, hwio_to_oihw, square_net_input,
)
from model.faces.weights import load_face_weights

INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
_CHANNELS = (32, 64, 128, 256)  # output channels of dense0..dense3


class _HasBox(Protocol):
    box: tuple[float, float, float, float]


BoxLike = Union[Sequence[float], _HasBox]  # (x, y, w, h) in pixels, or a DetectedFace


class _SeparableConv(nn.Module):
    """3x3 depthwise (SAME) -> 1x1 pointwise -> + bias (TF `separableConv2d` followed by a bias add)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.depthwise = Conv2dSame(cin, cin, 3, stride, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def load(self, w: TfjsWeights, prefix: str) -> None:
        cin, cout = self.depthwise.weight.shape[0], self.pointwise.weight.shape[0]
        copy_into(self.depthwise.weight, depthwise_to_oihw(w.take(f"{prefix}/depthwise_filter", (3, 3, cin, 1))))
        copy_into(self.pointwise.weight, hwio_to_oihw(w.take(f"{prefix}/pointwise_filter", (1, 1, cin, cout))))
        copy_into(self.pointwise.bias, w.take(f"{prefix}/bias", (cout,)))

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class _DenseBlock(nn.Module):
    """Four convs, the first with stride 2, each later one fed the ReLU of the sum of all earlier outputs."""

    def __init__(self, cin: int, cout: int, first: bool) -> None:
        super().__init__()
        self.first = first
        self.conv0 = Conv2dSame(cin, cout, 3, 2) if first else _SeparableConv(cin, cout, 2)
        self.convs = nn.ModuleList(_SeparableConv(cout, cout, 1) for _ in range(3))

    def load(self, w: TfjsWeights, prefix: str) -> None:
        if self.first:
            o, i = self.conv0.weight.shape[:2]
            copy_into(self.conv0.weight, hwio_to_oihw(w.take(f"{prefix}/conv0/filters", (3, 3, i, o))))
            copy_into(self.conv0.bias, w.take(f"{prefix}/conv0/bias", (o,)))
        else:
            self.conv0.load(w, f"{prefix}/conv0")
        for k, conv in enumerate(self.convs, start=1):
            conv.load(w, f"{prefix}/conv{k}")

    def forward(self, x: Tensor) -> Tensor:
        out1 = torch.relu(self.conv0(x))
        out2 = self.convs[0](out1)
        out3 = self.convs[1](torch.relu(out1 + out2))
        out4 = self.convs[2](torch.relu(out1 + (out2 + out3)))
        return torch.relu(out1 + (out2 + (out3 + out4)))


def crop_region(box: tuple[float, float, float, float], image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """face-api's `Box.clipAtImageBorders(...).floor()`: integer (x, y, w, h) of the pixels the net sees."""
    x, y, w, h = box
    img_h, img_w = image_hw
    cx, cy = max(x, 0.0), max(y, 0.0)
    cw, ch = min(x + w - cx, img_w - cx), min(y + h - cy, img_h - cy)
    return math.floor(cx), math.floor(cy), math.floor(cw), math.floor(ch)


def _as_box(box: BoxLike) -> tuple[float, float, float, float]:
    b = box.box if hasattr(box, "box") else box
    x, y, w, h = (float(v) for v in b)
    return x, y, w, h


class FaceLandmark68Net(nn.Module):
    """face-api's FaceLandmark68Net: a 4-dense-block feature extractor + a linear 256 -> 136 layer.

    Build with `FaceLandmark68Net.pretrained()`.
    """

    def __init__(self) -> None:
        super().__init__()
        cins = (3,) + _CHANNELS[:-1]
        self.blocks = nn.ModuleList(_DenseBlock(i, o, first=k == 0) for k, (i, o) in enumerate(zip(cins, _CHANNELS)))
        self.fc = nn.Linear(_CHANNELS[-1], 136)
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1))

    @classmethod
    def pretrained(cls) -> FaceLandmark68Net:
        """The shipped face-api weights (model/faces/weights/face_landmark_68.safetensors), in eval mode."""
        return cls.from_tfjs(load_face_weights("face_landmark_68"))

    @classmethod
    def from_tfjs(cls, tensors: Mapping[str, Tensor], source: str = "face_landmark_68") -> FaceLandmark68Net:
        """Build from a TF.js name -> tensor map (TF.js layouts); every tensor must be used, with its shape."""
        net = cls()
        w = TfjsWeights(tensors, source)
        for k, block in enumerate(net.blocks):
            block.load(w, f"dense{k}")
        copy_into(net.fc.weight, w.take("fc/weights", (_CHANNELS[-1], 136)).T)
        copy_into(net.fc.bias, w.take("fc/bias", (136,)))
        w.finish()
        return net.eval()

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    def preprocess(self, crops: Sequence[np.ndarray | Tensor]) -> Tensor:
        """HxWx3 face crops (0..255) -> (B,3,112,112) normalised net input (centred padding, legacy resize)."""
        x = square_net_input(crops, INPUT_SIZE, centered=True, device=self.device)  # (B,3,112,112) 0..255
        return (x - self.mean_rgb) / 255

    def forward(self, x: Tensor) -> Tensor:
        """(B,3,112,112) normalised -> (B,68,2) landmarks (x, y) relative to the padded 112x112 square."""
        for block in self.blocks:
            x = block(x)                            # ... -> (B,256,7,7)
        x = x.mean(dim=(2, 3))                      # 7x7 'valid' average pool with a 7x7 input = global mean
        return self.fc(x).view(-1, 68, 2)

    @torch.no_grad()
    def detect_batch(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[BoxLike]]) -> list[np.ndarray]:
        """For each image (HxWx3 uint8 RGB) and its boxes, (N_i,68,2) float64 landmarks in source pixels.

        All crops of all images go through the net as one batch. A box with no pixel inside its image (the
        detector can return one lying wholly in the padding of a non-square image) gets NaN landmarks; face-api
        drops such faces instead, silently.
        """
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        if not images:
            return []
        crops, dims, shifts, keep, counts = [], [], [], [], []
        for image, image_boxes in zip(images, boxes):
            for raw in image_boxes:
                box = _as_box(raw)
                x, y, w, h = crop_region(box, image.shape[:2])
                keep.append(w > 0 and h > 0)
                if keep[-1]:
                    crops.append(image[y:y + h, x:x + w])
                    dims.append((w, h))
                    shifts.append((max(box[0], 0.0), max(box[1], 0.0)))
            counts.append(len(image_boxes))
        points = np.full((len(keep), 68, 2), np.nan)  # NaN rows: boxes with no pixel inside the image
        if crops:
            rel = self(self.preprocess(crops))      # (M,68,2) relative to the padded square
            found = to_crop_relative(rel, dims).to(torch.float64).cpu().numpy()
            points[np.asarray(keep)] = found * np.asarray(dims, dtype=np.float64)[:, None] + np.asarray(shifts)[:, None]
        return list(np.split(points, np.cumsum(counts)[:-1]))

    def detect(self, image: np.ndarray, boxes: Sequence[BoxLike]) -> np.ndarray:
        """(N,68,2) landmarks (x, y) in source pixels for the faces in `boxes` ((x, y, w, h) or DetectedFace)."""
        return self.detect_batch([image], [boxes])[0]


def to_crop_relative(rel: Tensor, crop_wh: Sequence[tuple[int, int]]) -> Tensor:
    """(N,68,2) net output relative to the padded square -> relative to each (w, h) crop, in float32 like
    face-api's `postProcess`: (out * 112 - pad) / scaled size, pad = |scaled w - scaled h| / 2 on the short side."""
    pads, sizes = [], []
    for w, h in crop_wh:
        scale = INPUT_SIZE / max(w, h)
        sw, sh = w * scale, h * scale
        pads.append((abs(sw - sh) / 2 if sw < sh else 0.0, abs(sw - sh) / 2 if sh < sw else 0.0))
        sizes.append((sw, sh))
    pad = torch.tensor(pads, dtype=torch.float32, device=rel.device)[:, None]    # (N,1,2)
    size = torch.tensor(sizes, dtype=torch.float32, device=rel.device)[:, None]  # (N,1,2)
    return (rel * INPUT_SIZE - pad) / size
