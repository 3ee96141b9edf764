"""Reading the shipped face-network weights (safetensors converted from face-api's TF.js files).

The files keep TF.js's uint8 quantization; the affine parameters live in the file's metadata and are applied
here exactly as TF.js does (`value = q * scale + min` in double, stored as float32), so our tensors equal the ones TF.js uses.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import safe_open

WEIGHTS_DIR = Path(__file__).with_name("weights")
NETS = ("ssd_mobilenetv1", "face_landmark_68", "face_recognition", "face_expression")


@lru_cache(maxsize=None)
def _load(net: str) -> dict[str, torch.Tensor]:
    if net not in NETS:
        raise ValueError(f"unknown face network {net!r}; shipped: {list(NETS)}")
    path = WEIGHTS_DIR / f"{net}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        quant = json.loads((f.metadata() or {}).get("quantization", "{}"))
        out = {}
        for name in f.keys():
            t = f.get_tensor(name)
            if name in quant:
                scale, low = quant[name]
                # TF.js computes q * scale + min in double precision and stores the result as float32.
                t = (t.to(torch.float64) * scale + low).to(torch.float32)
            out[name] = t
    return out


def load_face_weights(net: str) -> dict[str, torch.Tensor]:
    """TF.js weight name (e.g. `"mobilenetv1/conv_0/filters"`) -> tensor in TF.js layout (HWIO filters).

    Returns fresh copies; callers convert layouts (HWIO -> OIHW) when they build their modules.
    """
    return {k: v.clone() for k, v in _load(net).items()}
