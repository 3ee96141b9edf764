"""Helpers of the settings tests: for any leaf of a config tree, another valid value than the one it has."""
from __future__ import annotations

import typing
from typing import Any, Literal

from artmator.model.encoders import TINY_CLIP, ClipConfig, LpipsConfig
from artmator.pipeline.config_schema import Leaf, format_text

# Leaves whose other value a type alone cannot give (a registered preset, a format Pillow reads, a file name).
SPECIAL: dict[str, Any] = {
    "backbone.preset": lambda v: "anifacegan" if v == "tiny" else "tiny",
    "backbone.weights": lambda v: (("generator", "/weights/other-generator.pth"),),
    "backbone.compile_backend": lambda v: "aot_eager" if v != "aot_eager" else "inductor",
    "device": lambda v: "cuda:1" if v == "cpu" else "cpu",
    "render.expressions": lambda v: ("happiness", "neutral") if v is None else None,
    "image.formats": lambda v: v[:-1] if len(v) > 1 else ("JPEG", "PNG"),
    "image.background": lambda v: (10, 20, 30),
    "tune.stage2.augment.scale": lambda v: (0.5, 1.0) if v != (0.5, 1.0) else (0.6, 1.0),
    "tune.stage2.augment.ratio": lambda v: (0.5, 2.0) if v != (0.5, 2.0) else (0.75, 1.25),
    "tune.stage2.augment.flip_p": lambda v: 0.25 if v != 0.25 else 0.75,
    "tune.encoders.clip": lambda v: (ClipConfig("ViT-B-32", "openai", "s3://bucket/clip.safetensors"),)
                                    if v == (TINY_CLIP,) else (TINY_CLIP,),
    "tune.encoders.lpips": lambda v: LpipsConfig("vgg", "/weights/vgg16.pth") if v.random_backbone
                                     else LpipsConfig(net="alex", random_backbone=True),
}


def other_value(leaf: Leaf, value: Any) -> Any:
    """A valid value of `leaf` different from `value`."""
    if leaf.name in SPECIAL:
        return SPECIAL[leaf.name](value)
    hint = leaf.hint
    args = typing.get_args(hint)
    if type(None) in args:                                        # X | None
        inner = next(a for a in args if a is not type(None))
        if value is not None:
            return None
        return {int: 48, float: 5.0}[inner]
    if hint is bool:
        return not value
    if typing.get_origin(hint) is Literal:
        return next(a for a in args if a != value)
    if hint is int:
        return value + 1
    if hint is float:
        return value + 0.25
    if hint is str:                                                   # free text (the weights' licence)
        return value + " (other)"
    if typing.get_origin(hint) is tuple and args[1:] == (Ellipsis,) and args[0] is float:
        return (*value, 45.0)
    raise AssertionError(f"no other value known for {leaf.name} ({hint!r}): add it to SPECIAL")


def leaf_args(leaf: Leaf, value: Any) -> list[str]:
    """Command-line arguments that set `leaf` to `value` (a repeated leaf: one option per item)."""
    if leaf.is_flag:
        return [leaf.flags[0] if value else "--no-" + leaf.flags[0][2:]]
    if leaf.repeated:
        return [a for v in value for a in (leaf.flags[0], format_text(leaf.item, v))]
    return [leaf.flags[0], format_text(leaf.hint, value)]
