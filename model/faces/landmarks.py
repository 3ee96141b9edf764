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
from collections.abc import Sequence
from typing import Protocol, Union

import numpy as np
import torch
from torch import Tensor, nn

from artmator.model.faces.tfjs_ops import FaceFeatureExtractor, TfjsNet, TfjsWeights, faces_to_batch

INPUT_SIZE = 112


class _HasBox(Protocol):
    box: tuple[float, float, float, float]


BoxLike = Union[Sequence[float], _HasBox]  # (x, y, w, h) in pixels, or a DetectedFace


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


class FaceLandmark68Net(TfjsNet):
    """face-api's FaceLandmark68Net: its FaceFeatureExtractor (shared design with the expression net, own
    weights) + a linear 256 -> 136 layer. Build with `FaceLandmark68Net.pretrained()` (or `from_tfjs(map)`).
    """

    WEIGHTS = "face_landmark_68"

    def __init__(self) -> None:
        super().__init__()
        self.extractor = FaceFeatureExtractor()
        self.fc = nn.Linear(FaceFeatureExtractor.CHANNELS[-1], 136)

    def load_weights(self, w: TfjsWeights) -> None:
        self.extractor.load(w)
        w.linear(self.fc, "fc/weights", "fc/bias")

    def preprocess(self, crops: Sequence[np.ndarray | Tensor]) -> Tensor:
        """HxWx3 uint8 face crops -> (B,3,112,112) normalised net input (centred padding, legacy resize)."""
        return faces_to_batch(crops, INPUT_SIZE, self.device)

    def forward(self, x: Tensor) -> Tensor:
        """(B,3,112,112) normalised -> (B,68,2) landmarks (x, y) relative to the padded 112x112 square."""
        return self.fc(self.extractor(x)).view(-1, 68, 2)

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
