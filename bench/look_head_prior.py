"""Render the head prior (analytic reference and fitted tiny backbone) to PNGs for a visual check.

usage: python bench/look_head_prior.py OUT_DIR [--reference-only] [--steps-scale F]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artmator.model import load_backbone
from artmator.model.anifacegan.demo_prior import HeadPriorConfig, reference_render, smile_direction, tiny_head_weights


def to_png(img: torch.Tensor, path: Path, scale: int = 1) -> None:
    """img (3, H, W) in [0, 1] -> PNG (nearest-upscaled by `scale`)."""
    a = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(a).resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST).save(path)


def strip(images: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(images, dim=2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--reference-only", action="store_true")
    ap.add_argument("--steps-scale", type=float, default=1.0)
    ap.add_argument("--res", type=int, default=64)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    yaws = [-20.0, 0.0, 20.0]
    to_png(strip([reference_render(y, 128)[0] for y in yaws]), args.out / "reference.png")
    if args.reference_only:
        return
    cfg = HeadPriorConfig()
    if args.steps_scale != 1.0:
        s = args.steps_scale
        cfg = replace(cfg, sampler_steps=int(cfg.sampler_steps * s), siren_steps=int(cfg.siren_steps * s),
                      deform_steps=int(cfg.deform_steps * s))
    t0 = time.perf_counter()
    weights = tiny_head_weights(args.out / "cache", cfg)
    print(f"fit/cache: {time.perf_counter() - t0:.1f}s")
    bb = load_backbone("tiny", weights=weights)
    g = torch.Generator().manual_seed(3)
    lat = bb.sample_latent(4, g)
    smile = smile_direction()
    with torch.no_grad():
        rows, ops = [], []
        for i in range(4):
            one = {k: v[i:i + 1] for k, v in lat.items()}
            r = [bb.render_latent(one, y, 0.0, args.res, psi=0.7) for y in yaws]
            rs = bb.render_latent(bb.with_expression(one, smile), 0.0, 0.0, args.res, psi=0.7)
            rows.append(strip([x.image[0] * 0.5 + 0.5 for x in r] + [rs.image[0] * 0.5 + 0.5]))
            ops.append(strip([x.opacity[0].expand(3, -1, -1) for x in r]
                             + [((rs.image[0] - r[1].image[0]).abs().sum(0, keepdim=True) * 4).expand(3, -1, -1)]))
        to_png(torch.cat(rows, dim=1), args.out / "renders.png", scale=2)
        to_png(torch.cat(ops, dim=1), args.out / "opacity_and_smile_diff.png", scale=2)


if __name__ == "__main__":
    main()
