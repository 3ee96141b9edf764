"""face-api's 7-class facial expression classifier (FaceExpressionNet), ported to torch.

A small DenseNet-like feature extractor (four `DenseBlock4`s of widths 32/64/128/256, each halving the
resolution: 112 -> 56 -> 28 -> 14 -> 7, then a 7x7 average) feeding a linear layer over the 7 expressions. The
landmark net uses the same extractor design but its own weights, so nothing is shared at run time.

Input: face crops as face-api takes them (see `model.faces.blocks.faces_to_batch`), padded to a square and
resized to 112 px; `classify` returns what face-api's `predictExpressions` returns for the same crops.
The classifier was trained on photographs; on paintings read its probabilities as a rough cue, not a label.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.faces.blocks import DenseBlock4, FaceInput, empty_param, faces_to_batch, load_tfjs_weights
from model.faces.weights import load_face_weights

INPUT_SIZE = 112
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")  # face-api's order


class _Linear(nn.Module):
    """TF.js names `fc/{weights,bias}`, weights in TF.js layout (in, out)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weights = empty_param(c_in, c_out)
        self.bias = empty_param(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weights + self.bias


class FaceExpressionNet(nn.Module):
    """(B, 3, 112, 112) prepared face crops (`faces_to_batch(..., 112)`) -> (B, 7) logits in `EXPRESSIONS` order.

    Build with `FaceExpressionNet.pretrained()` (face-api's weights) or `FaceExpressionNet().load_tfjs(map)`.
    face-api's `forward` returns softmax(logits); here `forward` stops at the logits (softmax them yourself, or
    use `classify`) so a training loss can use them directly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dense0 = DenseBlock4(3, 32, first=True)
        self.dense1 = DenseBlock4(32, 64)
        self.dense2 = DenseBlock4(64, 128)
        self.dense3 = DenseBlock4(128, 256)
        self.fc = _Linear(256, len(EXPRESSIONS))

    @classmethod
    def pretrained(cls) -> "FaceExpressionNet":
        """The net with face-api's shipped weights, in eval mode, gradients off."""
        return cls().load_tfjs(load_face_weights("face_expression")).eval().requires_grad_(False)

    def load_tfjs(self, weights: Mapping[str, torch.Tensor]) -> "FaceExpressionNet":
        """Fill from a TF.js weight map (names like `dense1/conv0/depthwise_filter`); strict, see load_tfjs_weights."""
        load_tfjs_weights(self, weights, "face_expression")
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 112, 112) -> (B, 256) bottleneck features (face-api's FaceFeatureExtractor + flatten)."""
        x = self.dense3(self.dense2(self.dense1(self.dense0(x))))  # (B, 256, 7, 7)
        return F.avg_pool2d(x, 7, 2).flatten(1)                     # (B, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))                            # (B, 7) logits


@lru_cache(maxsize=None)
def default_expression_net() -> FaceExpressionNet:
    """The pretrained net on CPU, built once per process."""
    return FaceExpressionNet.pretrained()


def expression_probabilities(faces: FaceInput, net: FaceExpressionNet | None = None,
                             batch_size: int = 256) -> np.ndarray:
    """Face crops -> (N, 7) float32 softmax probabilities, columns in `EXPRESSIONS` order.

    `faces`: a list of (H, W, 3) uint8 RGB crops (any sizes), an (N, H, W, 3) uint8 array, or an (N, 3, H, W)
    float tensor in [-1, 1]. Runs on `net`'s device (default: the shared CPU net) in chunks of `batch_size`.
    """
    net = net or default_expression_net()
    device = next(net.parameters()).device
    batch = faces_to_batch(faces, INPUT_SIZE, device)               # (N, 3, 112, 112)
    with torch.inference_mode():
        logits = torch.cat([net(chunk) for chunk in batch.split(batch_size)])
    return torch.softmax(logits, dim=1).cpu().numpy()


def classify(faces: FaceInput, net: FaceExpressionNet | None = None) -> list[dict[str, float]]:
    """Face crops -> one {expression: probability} dict per crop (face-api's `predictExpressions`)."""
    probs = expression_probabilities(faces, net)
    return [dict(zip(EXPRESSIONS, map(float, row))) for row in probs]
