"""Official AniFaceGAN checkpoint files and how they map onto the backbone's parts."""
from __future__ import annotations

from collections.abc import Mapping

from artmator.model.weights import (WeightsError, load_torch_pickle, looks_like_safetensors, parse_state_dict,
                                    read_weight_bytes, unwrap_state_dict)

# Where the official repository (YueWuHKUST/AniFaceGAN) keeps each part. `generator.pth` holds the raw
# generator; `ema.pth` holds its exponential moving average, which the official inference copies over it.
OFFICIAL_FILES = {
    "generator": "checkpoints/generator.pth",
    "ema": "checkpoints/ema.pth",
    "deform": "checkpoints/dif.pth",
    "vae_id": "pretrained_vaes/identity/vae.pth",
    "vae_exp": "pretrained_vaes/expression/vae.pth",
}


def official_weights(root: str) -> dict[str, str]:
    """Part -> URI for a checkout (local path or fsspec URI) of the official repository, using the EMA weights."""
    root = root.rstrip("/")
    return {
        "generator": f"{root}/{OFFICIAL_FILES['ema']}",
        "deform": f"{root}/{OFFICIAL_FILES['deform']}",
        "vae_id": f"{root}/{OFFICIAL_FILES['vae_id']}",
        "vae_exp": f"{root}/{OFFICIAL_FILES['vae_exp']}",
    }


def read_part(part: str, uri: str, expected_names: list[str], storage_options: Mapping | None = None) -> dict:
    """Read one part's weights: safetensors, a plain torch state dict, or a torch_ema file (`shadow_params`)."""
    data = read_weight_bytes(uri, part=part, storage_options=storage_options)
    if looks_like_safetensors(data):
        return parse_state_dict(data, part=part, source=uri)
    obj = load_torch_pickle(data, part=part, source=uri)
    if isinstance(obj, Mapping) and "shadow_params" in obj:
        # torch_ema.ExponentialMovingAverage.state_dict(): the averaged tensors in generator.parameters() order.
        shadow = obj["shadow_params"]
        if not isinstance(shadow, list) or len(shadow) != len(expected_names):
            raise WeightsError(
                f"{part}: {uri} holds {len(shadow) if isinstance(shadow, list) else 'no'} EMA tensors, "
                f"the {part} has {len(expected_names)} parameters."
            )
        return dict(zip(expected_names, shadow))
    return unwrap_state_dict(obj, part=part, source=uri)
