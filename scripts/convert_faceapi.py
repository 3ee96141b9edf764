"""Convert the TF.js face networks of the npm package `@vladmandic/face-api` to safetensors, once.

Run from a folder where `npm install @vladmandic/face-api@1.7.15` was done:

    python scripts/convert_faceapi.py node_modules/@vladmandic/face-api model/faces/weights

Weights are stored exactly as the package ships them: uint8-quantized tensors stay uint8, with their TF.js
affine dequantization (`value = q * scale + min`) kept in the file's metadata, so nothing is rounded twice and
the files stay as small as the originals. `artmator.model.faces.weights.load_face_weights` dequantizes.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

NETS = ("ssd_mobilenetv1", "face_landmark_68", "face_recognition", "face_expression")
_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "uint16": np.uint16}


def convert(package: Path, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    version = json.loads((package / "package.json").read_text())["version"]
    sums = {}
    for net in NETS:
        manifest = json.loads((package / "model" / f"{net}_model-weights_manifest.json").read_text())
        tensors, quant = {}, {}
        for group in manifest:
            blob = b"".join((package / "model" / p).read_bytes() for p in group["paths"])
            offset = 0
            for w in group["weights"]:
                q = w.get("quantization")
                dtype = _DTYPES[q["dtype"] if q else w["dtype"]]
                count = int(np.prod(w["shape"], dtype=np.int64))
                nbytes = count * np.dtype(dtype).itemsize
                arr = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(w["shape"])
                offset += nbytes
                tensors[w["name"]] = np.ascontiguousarray(arr)
                if q:
                    quant[w["name"]] = [q["scale"], q["min"]]
            if offset != len(blob):
                raise ValueError(f"{net}: {len(blob) - offset} bytes left over in {group['paths']}")
        meta = {"source": f"npm @vladmandic/face-api@{version} model/{net}_model",
                "license": "MIT", "quantization": json.dumps(quant, sort_keys=True)}
        path = out / f"{net}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        sums[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


if __name__ == "__main__":
    for name, digest in convert(Path(sys.argv[1]), Path(sys.argv[2])).items():
        print(f"{digest}  {name}")
