"""Render benchmark: the renderer's achieved FLOP/s as a ratio to a same-process dense matmul.

    python -m bench.render                       # anifacegan preset at 64² and 128², CPU
    python -m bench.render --device cuda --resolutions 64 128 256
    python -m bench.render --preset tiny --resolutions 32   # toy size (smoke test)

FLOPs are counted by torch's FlopCounterMode over matmul-like ops (the renderer's cost is almost all in the
MLPs); time is the best of a few no-grad renders. Both are measured in one process next to the matmul reference.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.common import best_time, count_flops, environment, matmul_flops_per_second, write_results
from artmator.model import load_backbone


def run(preset: str, resolutions: list[int], device: torch.device, repeats: int, out_dir: Path | None = None) -> list[dict]:
    backbone = load_backbone(preset, device=device)
    latent = backbone.sample_latent(1, torch.Generator().manual_seed(0))
    matmul = matmul_flops_per_second(device)
    rows = []
    for res in resolutions:
        def render():
            with torch.no_grad():
                return backbone.render_latent(latent, 0.0, 0.0, res)

        flops = count_flops(render)
        seconds = best_time(render, device, repeats=repeats)
        achieved = flops / seconds
        rows.append({"preset": preset, "resolution": res, "gflop": flops / 1e9, "seconds": seconds,
                     "gflops_per_s": achieved / 1e9, "matmul_gflops_per_s": matmul / 1e9,
                     "ratio_to_matmul": achieved / matmul})
        print(f"{preset} {res}²: {flops / 1e9:.1f} GFLOP in {seconds:.3f} s = {achieved / 1e9:.1f} GFLOP/s; "
              f"matmul {matmul / 1e9:.1f} GFLOP/s; ratio {achieved / matmul:.2f}")
    env = environment(device)
    name = f"render_{preset}_{device.type}"
    write_results(name, rows, env, ["preset", "resolution", "gflop", "seconds", "gflops_per_s",
                                    "matmul_gflops_per_s", "ratio_to_matmul"], out_dir=out_dir,
                  notes="ratio_to_matmul = renderer FLOP/s ÷ same-process dense 2048² matmul FLOP/s.")
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="anifacegan")
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=None)
    a = p.parse_args(argv)
    run(a.preset, a.resolutions, torch.device(a.device), a.repeats, a.out_dir)


if __name__ == "__main__":
    main()
