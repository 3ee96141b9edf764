"""face-api's 7-class facial expression classifier (FaceExpressionNet), ported to torch.

face-api's FaceFeatureExtractor (`model.faces.tfjs_ops.FaceFeatureExtractor`: four dense blocks of widths
32/64/128/256, each halving the resolution: 112 -> 56 -> 28 -> 14 -> 7, then a 7x7 average) feeding a linear
layer over the 7 expressions. The landmark net uses the same extractor class with its own weights.

Input: face crops as face-api takes them (see `model.faces.tfjs_ops.faces_to_batch`), padded to a square and
resized to 112 px; `classify` returns what face-api's `predictExpressions` returns for the same crops.
The classifier was trained on photographs; on paintings read its probabilities as a rough cue, not a label.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from artmator.model.faces.tfjs_ops import FaceFeatureExtractor, FaceInput, TfjsNet, TfjsWeights, faces_to_batch

INPUT_SIZE = 112
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")  # face-api's order


class FaceExpressionNet(TfjsNet):
    """(B, 3, 112, 112) prepared face crops (`faces_to_batch(..., 112)`) -> (B, 7) logits in `EXPRESSIONS` order.

    Build with `FaceExpressionNet.pretrained()` (face-api's weights) or `FaceExpressionNet().load_tfjs(map)`.
    face-api's `forward` returns softmax(logits); here `forward` stops at the logits (softmax them yourself, or
    use `classify`) so a training loss can use them directly.
    """

    WEIGHTS = "face_expression"

    def __init__(self) -> None:
        super().__init__()
        self.extractor = FaceFeatureExtractor()
        self.fc = nn.Linear(FaceFeatureExtractor.CHANNELS[-1], len(EXPRESSIONS))

    def load_weights(self, w: TfjsWeights) -> None:
        self.extractor.load(w)
        w.linear(self.fc, "fc/weights", "fc/bias")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 112, 112) -> (B, 256) bottleneck features (face-api's FaceFeatureExtractor + flatten)."""
        return self.extractor(x)

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
    batch = faces_to_batch(faces, INPUT_SIZE, net.device)           # (N, 3, 112, 112)
    with torch.inference_mode():
        logits = torch.cat([net(chunk) for chunk in batch.split(batch_size)])
    return torch.softmax(logits, dim=1).cpu().numpy()


def classify(faces: FaceInput, net: FaceExpressionNet | None = None) -> list[dict[str, float]]:
    """Face crops -> one {expression: probability} dict per crop (face-api's `predictExpressions`)."""
    probs = expression_probabilities(faces, net)
    return [dict(zip(EXPRESSIONS, map(float, row))) for row in probs]
