"""SSD-MobileNetV1 face detector, a PyTorch port of face-api's `SsdMobilenetv1` (weights from its TF.js model).

The goal is to reproduce face-api's detections, not just "a face detector": the same input geometry (zero
padding at the bottom/right, legacy bilinear resize to 512), the same anchor decoding, the same greedy NMS
(IoU > 0.5 suppresses, ties kept in anchor order) and the same mapping back to pixels, including its
rounding of the resized image size. The network is fixed to 512x512 inputs: the anchors (5118 of them) are
baked into the weight file.

Pipeline: `preprocess` (images -> (B,3,512,512) in [-1,1]) -> `forward` (decoded boxes + face scores for all
anchors) -> `detections` (threshold, NMS, pixels). `detect` / `detect_batch` chain the three.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from artmator.model.faces.tfjs_ops import Conv2dSame, FaceWeightsError, TfjsNet, TfjsWeights, js_round, square_net_input

INPUT_SIZE = 512
IOU_THRESHOLD = 0.5
_BN_EPSILON = 0.0010000000474974513  # float32(1e-3), as the TF graph stores it
# (pointwise output channels, depthwise stride) of MobileNetV1 layers conv_1 .. conv_13.
_MOBILENET = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
              (512, 1), (512, 1), (1024, 2), (1024, 1)]
# (in, out, kernel, stride) of the extra SSD feature layers Prediction/Conv2d_0 .. 7.
_EXTRA = [(1024, 256, 1, 1), (256, 512, 3, 2), (512, 128, 1, 1), (128, 256, 3, 2), (256, 128, 1, 1),
          (128, 256, 3, 2), (256, 64, 1, 1), (64, 128, 3, 2)]
# (in channels, anchors per cell, feature map side) of the six box predictors, for a 512 input.
_HEADS = [(512, 3, 32), (1024, 6, 16), (512, 6, 8), (256, 6, 4), (256, 6, 2), (128, 6, 1)]
NUM_ANCHORS = sum(a * s * s for _, a, s in _HEADS)  # 5118
_NUM_CLASSES = 3  # background, face, (unused); face-api's score is sigmoid of logit 1


@dataclass(frozen=True)
class DetectedFace:
    """One face: `box` = (x, y, w, h) in source-image pixels (float, may reach into padding), `score` in (0,1)."""

    box: tuple[float, float, float, float]
    score: float


class _PointwiseConv(nn.Module):
    """conv (1x1 or 3x3, SAME) + folded batch-norm offset + ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = Conv2dSame(cin, cout, kernel, stride)

    def load(self, w: TfjsWeights, prefix: str) -> None:
        w.conv(self.conv, f"{prefix}/weights", f"{prefix}/convolution_bn_offset")

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).clamp_(0, 6)


class _DepthwiseConv(nn.Module):
    """3x3 depthwise conv (SAME) + inference batch norm + ReLU6."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.conv = Conv2dSame(channels, channels, 3, stride, groups=channels, bias=False)
        for name in ("mean", "variance", "scale", "offset"):
            self.register_buffer(name, torch.zeros(channels))

    def load(self, w: TfjsWeights, prefix: str) -> None:
        w.conv(self.conv, f"{prefix}/depthwise_weights")
        for buf, tf_name in (("mean", "moving_mean"), ("variance", "moving_variance"), ("scale", "gamma"),
                             ("offset", "beta")):
            w.fill(getattr(self, buf), f"{prefix}/BatchNorm/{tf_name}")

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        x = F.batch_norm(x, self.mean, self.variance, self.scale, self.offset, False, 0.0, _BN_EPSILON)
        return x.clamp_(0, 6)


class _MobileNetV1(nn.Module):
    """Backbone; returns the conv_11 (B,512,32,32) and final (B,1024,16,16) feature maps for a 512 input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_0 = _PointwiseConv(3, 32, 3, 2)
        self.depthwise = nn.ModuleList()
        self.pointwise = nn.ModuleList()
        cin = 32
        for cout, stride in _MOBILENET:
            self.depthwise.append(_DepthwiseConv(cin, stride))
            self.pointwise.append(_PointwiseConv(cin, cout))
            cin = cout

    def load(self, w: TfjsWeights) -> None:
        self.conv_0.load(w, "MobilenetV1/Conv2d_0_pointwise")
        for i, (dw, pw) in enumerate(zip(self.depthwise, self.pointwise), start=1):
            dw.load(w, f"MobilenetV1/Conv2d_{i}_depthwise")
            pw.load(w, f"MobilenetV1/Conv2d_{i}_pointwise")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv_0(x)
        conv11 = x
        for i, (dw, pw) in enumerate(zip(self.depthwise, self.pointwise), start=1):
            x = pw(dw(x))
            if i == 11:
                conv11 = x
        return conv11, x


class _BoxPredictor(nn.Module):
    """Per-cell 1x1 convs: box encodings (A*4) and class logits (A*3), flattened in TF's (y, x, anchor) order."""

    def __init__(self, cin: int, anchors: int) -> None:
        super().__init__()
        self.box = nn.Conv2d(cin, anchors * 4, 1)
        self.cls = nn.Conv2d(cin, anchors * _NUM_CLASSES, 1)

    def load(self, w: TfjsWeights, prefix: str) -> None:
        for conv, tf_name in ((self.box, "BoxEncodingPredictor"), (self.cls, "ClassPredictor")):
            w.conv(conv, f"{prefix}/{tf_name}/weights", f"{prefix}/{tf_name}/biases")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        box = self.box(x).permute(0, 2, 3, 1).reshape(b, -1, 4)              # (B,H*W*A,4)
        cls = self.cls(x).permute(0, 2, 3, 1).reshape(b, -1, _NUM_CLASSES)   # (B,H*W*A,3)
        return box, cls


# Graph constants the TF export left in the weight file; face-api ignores them, we check they describe
# the graph this module hard-codes (so a different export fails loudly instead of decoding garbage).
_GRAPH_CONSTANTS: dict[str, list[float]] = {
    "Preprocessor/ResizeImage/size": [INPUT_SIZE, INPUT_SIZE],
    "Preprocessor/mul/x": [float(np.float32(1 / 127.5))],
    "Preprocessor/sub/y": [1.0],
    "Prediction/BoxPredictor_0/stack/3": [4.0],
    "Prediction/BoxPredictor_0/stack_1/2": [float(_NUM_CLASSES)],
    "Prediction/BoxPredictor_0/strided_slice/stack": [0.0],
    "Prediction/BoxPredictor_0/strided_slice/stack_1": [1.0],
    **{f"Prediction/BoxPredictor_{i}/stack_1/1": [float(a * s * s)] for i, (_, a, s) in enumerate(_HEADS)},
    "concat_1/axis": [1.0],
    "Postprocessor/stack/1": [float(NUM_ANCHORS)],
    "Postprocessor/Slice/begin": [0.0, 0.0, 1.0],
    "Postprocessor/Slice/size": [-1.0, -1.0, -1.0],
}


def _check_graph_constants(w: TfjsWeights) -> None:
    for name, expected in _GRAPH_CONSTANTS.items():
        got = w.take(name, (len(expected),)).tolist()
        if not np.allclose(got, expected, rtol=0, atol=1e-9):
            raise FaceWeightsError(f"{w.source}: graph constant {name!r} is {got}, this port assumes {expected}")


class FaceDetector(TfjsNet):
    """face-api's SSD-MobileNetV1 face detector. Build with `FaceDetector.pretrained()` (or `from_tfjs(map)`)."""

    WEIGHTS = "ssd_mobilenetv1"

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _MobileNetV1()
        self.extra = nn.ModuleList(_PointwiseConv(*spec) for spec in _EXTRA)
        self.heads = nn.ModuleList(_BoxPredictor(cin, a) for cin, a, _ in _HEADS)
        self.register_buffer("anchors", torch.zeros(NUM_ANCHORS, 4))  # (N,4) ymin,xmin,ymax,xmax in [0,1]-ish

    def load_weights(self, w: TfjsWeights) -> None:
        self.backbone.load(w)
        for i, layer in enumerate(self.extra):
            layer.load(w, f"Prediction/Conv2d_{i}_pointwise")
        for i, head in enumerate(self.heads):
            head.load(w, f"Prediction/BoxPredictor_{i}")
        self.anchors.copy_(w.take("Output/extra_dim", (1, NUM_ANCHORS, 4))[0])
        _check_graph_constants(w)

    def preprocess(self, images: Sequence[np.ndarray]) -> Tensor:
        """HxWx3 uint8 RGB images -> (B,3,512,512) in [-1,1]: zero-pad bottom/right to square, resize, scale."""
        x = square_net_input(images, INPUT_SIZE, centered=False, device=self.device)  # (B,3,512,512) 0..255
        return x / 127.5 - 1

    def predict_raw(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B,3,512,512) in [-1,1] -> box encodings (B,5118,4) (ty,tx,th,tw) and class logits (B,5118,3)."""
        conv11, x = self.backbone(x)          # (B,512,32,32), (B,1024,16,16)
        maps = [conv11, x]
        for i, layer in enumerate(self.extra):
            x = layer(x)
            if i % 2 == 1:                    # the stride-2 layers feed predictors 2..5
                maps.append(x)
        boxes, logits = zip(*(head(m) for head, m in zip(self.heads, maps)))
        return torch.cat(boxes, 1), torch.cat(logits, 1)

    def decode(self, encodings: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Anchor decoding (SSD box coder, scales 10,10,5,5) -> boxes (B,N,4) ymin,xmin,ymax,xmax relative to
        the padded square, and face scores (B,N) = sigmoid(logit 1)."""
        a = self.anchors
        size_y, size_x = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        center_y, center_x = a[:, 0] + size_y / 2, a[:, 1] + size_x / 2
        half_y = torch.exp(encodings[..., 2] / 5) * size_y / 2
        half_x = torch.exp(encodings[..., 3] / 5) * size_x / 2
        cy = encodings[..., 0] / 10 * size_y + center_y
        cx = encodings[..., 1] / 10 * size_x + center_x
        boxes = torch.stack([cy - half_y, cx - half_x, cy + half_y, cx + half_x], -1)
        return boxes, torch.sigmoid(logits[..., 1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B,3,512,512) in [-1,1] -> boxes (B,5118,4) relative ymin,xmin,ymax,xmax, scores (B,5118)."""
        return self.decode(*self.predict_raw(x))

    @torch.no_grad()
    def detect_batch(self, images: Sequence[np.ndarray], min_confidence: float = 0.5,
                     max_results: int = 100) -> list[list[DetectedFace]]:
        """Faces of each HxWx3 uint8 RGB image, best score first (face-api `locateFaces`)."""
        _check_options(min_confidence, max_results)
        if len(images) == 0:
            return []
        boxes, scores = self(self.preprocess(images))
        return [detections(b, s, img.shape[:2], min_confidence, max_results)
                for b, s, img in zip(boxes, scores, images)]

    def detect(self, image: np.ndarray, min_confidence: float = 0.5, max_results: int = 100) -> list[DetectedFace]:
        """Faces in one HxWx3 uint8 RGB image, best score first."""
        return self.detect_batch([image], min_confidence, max_results)[0]


def _check_options(min_confidence: float, max_results: int) -> None:
    # face-api rejects thresholds outside (0,1); 0 would keep all 5118 anchors.
    if not 0 < min_confidence < 1:
        raise ValueError(f"min_confidence must be in (0, 1), got {min_confidence}")
    if max_results < 1:
        raise ValueError(f"max_results must be >= 1, got {max_results}")


def non_max_suppression(boxes: Tensor, scores: Tensor, max_results: int, iou_threshold: float,
                        score_threshold: float) -> list[int]:
    """face-api's greedy NMS: keep scores > threshold, best first (ties in index order), drop any box whose
    IoU with an already kept one exceeds `iou_threshold`. boxes (N,4) y0,x0,y1,x1; IoU in float64.

    Written out rather than `torchvision.ops.nms` because torchvision neither guarantees the tie order nor
    computes IoU in double, so borderline boxes could be kept or dropped differently.
    """
    keep = torch.nonzero(scores > score_threshold).flatten()
    if keep.numel() == 0:
        return []
    order = keep[torch.sort(scores[keep], descending=True, stable=True).indices]
    b = boxes[order].to(torch.float64)
    y0, x0 = torch.minimum(b[:, 0], b[:, 2]), torch.minimum(b[:, 1], b[:, 3])
    y1, x1 = torch.maximum(b[:, 0], b[:, 2]), torch.maximum(b[:, 1], b[:, 3])
    area = (y1 - y0) * (x1 - x0)
    alive = torch.ones(len(order), dtype=torch.bool, device=b.device)
    selected: list[int] = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        selected.append(int(order[i]))
        if len(selected) >= max_results:
            break
        inter = ((torch.minimum(y1[i], y1) - torch.maximum(y0[i], y0)).clamp(min=0)
                 * (torch.minimum(x1[i], x1) - torch.maximum(x0[i], x0)).clamp(min=0))
        iou = inter / (area[i] + area - inter)
        iou = torch.where((area[i] <= 0) | (area <= 0), torch.zeros_like(iou), iou)
        alive &= iou <= iou_threshold
    return selected


def detections(boxes: Tensor, scores: Tensor, image_hw: tuple[int, int], min_confidence: float = 0.5,
               max_results: int = 100) -> list[DetectedFace]:
    """One image's decoded (N,4) boxes and (N,) scores -> thresholded, NMS'd faces in source pixels.

    face-api clips the relative box to [0,1] of the padded square and rescales it by 512 / round(side * 512 /
    max(H, W)) per axis, then by the image size; the rounding makes the result differ from an exact
    `relative * max(H, W)` by up to ~0.1% on non-square images. Kept, to agree with face-api.
    """
    boxes, scores = boxes.detach().cpu(), scores.detach().cpu()  # NMS is a short sequential loop: CPU is best
    h, w = image_hw
    scale = INPUT_SIZE / max(h, w)
    pad_x = INPUT_SIZE / js_round(w * scale)
    pad_y = INPUT_SIZE / js_round(h * scale)
    idx = non_max_suppression(boxes, scores, max_results, IOU_THRESHOLD, min_confidence)
    rows = boxes[idx].to(torch.float64).tolist()
    vals = scores[idx].to(torch.float64).tolist()
    out = []
    for (y0, x0, y1, x1), score in zip(rows, vals):
        top, bottom = max(0.0, y0) * pad_y, min(1.0, y1) * pad_y
        left, right = max(0.0, x0) * pad_x, min(1.0, x1) * pad_x
        out.append(DetectedFace(box=(left * w, top * h, (right - left) * w, (bottom - top) * h), score=score))
    return out
