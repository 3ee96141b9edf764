"""Latent diversity (paper §4.4): mean pairwise LPIPS over M sampled identities, base vs stylized generator.

    python -m bench.diversity                       # quick: tiny backbone, M = 8 identities, 64 px, CPU
    python -m bench.diversity --identities 50 --settings paper --preset anifacegan --device cuda …weights…

The stylized generator is G_ori plus the delta from tuning ONE demo painting (`manifests/demo`, the first row,
at its pose) with the chosen settings. The same M identities (sampled with `--seed`, truncation `--psi`) are
rendered by both generators at the same views (`--yaws`, pitch 0); for each generator and view the LPIPS of
every pair of identities is averaged (M·(M-1)/2 pairs), then over views. A stylization that collapses
identities onto the painting's face lowers the stylized value relative to the base (ratio < 1); the paper's
claim is that 3DArtmator keeps the latent space diverse. Evaluation LPIPS as in `bench.quality` (a separate
random AlexNet LPIPS with the quick settings: only the ratio within a run is meaningful).
"""
from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import environment, write_results
from bench.quality import eval_lpips
from bench.tuning import demo_paintings
from artmator.model.delta import apply_delta
from artmator.model.tune import tune_paintings
from artmator.pipeline.settings import PRESET_SETTINGS, JobSettings, load_models, preset_settings


@torch.no_grad()
def pairwise_lpips(gen, latents, yaws: list[float], resolution: int, psi: float, lpips_fn) -> torch.Tensor:
    """Mean LPIPS of every identity pair, per view -> (len(yaws),)."""
    m = latents["z_id"].shape[0]
    pairs = list(itertools.combinations(range(m), 2))
    i, j = (torch.tensor(x) for x in zip(*pairs))
    out = []
    for yaw in yaws:
        images = gen.render_latent(latents, yaw, 0.0, resolution, psi=psi).image
        out.append(lpips_fn(images[i], images[j]).mean())
    return torch.stack(out)


def run(settings: JobSettings, identities: int, yaws: list[float], resolution: int, seed: int, psi: float,
        eval_lpips_spec: str | None, out_dir: Path | None = None) -> list[dict]:
    models = load_models(settings)
    backbone, device = models.backbone, models.device
    tune_res = settings.tune.resolution or backbone.default_resolution
    painting = demo_paintings(settings, tune_res, 1)
    start = time.perf_counter()
    tuned = tune_paintings(backbone, painting, settings.tune, models.encoders)[0]
    seconds = time.perf_counter() - start
    if tuned.delta is None:
        raise RuntimeError(f"tuning the demo painting failed: {tuned.error}")
    stylized = apply_delta(backbone, tuned.delta)
    lpips_fn = eval_lpips(eval_lpips_spec, settings, device)
    latents = {k: v.to(device) for k, v in backbone.sample_latent(identities, torch.Generator().manual_seed(seed)).items()}
    base = pairwise_lpips(backbone, latents, yaws, resolution, psi, lpips_fn)
    styl = pairwise_lpips(stylized, latents, yaws, resolution, psi, lpips_fn)
    rows = [
        {"generator": "base G_ori", "mean_pairwise_lpips": float(base.mean()), "per_view": [round(float(v), 4) for v in base],
         "ratio_to_base": 1.0},
        {"generator": f"stylized ({tuned.painting_id.rsplit('-', 1)[0]}, {settings.tune.delta.mode})",
         "mean_pairwise_lpips": float(styl.mean()), "per_view": [round(float(v), 4) for v in styl],
         "ratio_to_base": float(styl.mean() / base.mean())},
    ]
    for r in rows:
        print(r)
    env = environment(device) | {"preset": settings.backbone.preset, "identities": identities,
                                 "pairs": identities * (identities - 1) // 2, "yaws": yaws, "resolution": resolution,
                                 "psi": psi, "seed": seed, "stage1_steps": settings.tune.stage1.steps,
                                 "stage2_steps": settings.tune.stage2.steps, "tuning_seconds": round(seconds, 1)}
    notes = ("Mean LPIPS over all pairs of M identities (same latents for both generators), averaged over the "
             "views; per_view lists the yaws in order. Higher = more diverse.")
    write_results(f"diversity_{settings.backbone.preset}_{device.type}", rows, env,
                  ["generator", "mean_pairwise_lpips", "ratio_to_base", "per_view"], notes=notes, out_dir=out_dir)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", choices=sorted(PRESET_SETTINGS), default="quick")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--identities", type=int, default=8)
    p.add_argument("--yaws", type=float, nargs="+", default=[-20.0, 0.0, 20.0])
    p.add_argument("--resolution", type=int, default=64, help="render and tuning size")
    p.add_argument("--stage1-steps", type=int, default=None)
    p.add_argument("--stage2-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--psi", type=float, default=0.7)
    p.add_argument("--eval-lpips", default=None, metavar="NET[=URI]")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out-dir", type=Path, default=None)
    a = p.parse_args(argv)
    settings = preset_settings(a.settings, a.preset)
    tune = replace(settings.tune, resolution=a.resolution)
    if a.stage1_steps is not None:
        tune = replace(tune, stage1=replace(tune.stage1, steps=a.stage1_steps))
    if a.stage2_steps is not None:
        tune = replace(tune, stage2=replace(tune.stage2, steps=a.stage2_steps))
    settings = replace(settings, tune=tune, device=a.device)
    run(settings, a.identities, a.yaws, a.resolution, a.seed, a.psi, a.eval_lpips, a.out_dir)


if __name__ == "__main__":
    main()
