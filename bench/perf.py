"""Stage-2 step performance: achieved FLOP/s vs a same-process dense matmul, and where a step's time goes.

    python -m bench.perf                                          # tiny at 64² and anifacegan at 32², CPU
    python -m bench.perf --device cuda --configs anifacegan:128 anifacegan:256 --paintings 4
    python -m bench.perf --configs tiny:32 --repeats 1            # toy size (smoke test)

One step is exactly the body of `model.stylize.stylize` for the default objective (LoRA adapters, K paintings):
zero_grad -> `artmator_terms` (one random view per painting: G_ori and G_trn renders, CLIP directions, LPIPS at the
reference view) -> backward -> Adam step. Latents are random (a step's cost does not depend on their values).

FLOP/s: FLOPs of one step (forward + backward) counted by torch's FlopCounterMode, which counts matmul-like ops
only (linear, bmm, conv); elementwise work (sin, sigmoid, compositing) is not counted, so the ratio is a lower
bound on how busy the machine is. Time = best of `--repeats` steps. The matmul reference is a 2048² fp32 matmul
in the same process, measured in the same run.

Breakdown: timed sub-calls. During `--repeats` instrumented steps, the parts below are wrapped in timers
(perf_counter; on CUDA with a synchronize before and after each part, which slightly inflates the total), the
wrappers are removed afterwards; times are per step, averaged:
  mapping            radiance mapping network (latent -> FiLM freq/phase) and the deformation's modulation net
  ray sampling       camera rays, coarse samples along rays, background plane (rays.make_rays/sample_along_rays/...)
  deform+sampler     expression deformation of the coarse samples, manifold scalar field, manifold intersection
  SIREN              FiLM-SIREN colour/density at the manifold points
  compositing        alpha compositing of the manifold samples
  augmentation       CLIP input crops/resizes of both images of each pair
  CLIP               CLIP image encoder forward passes
  LPIPS              L_spa forward
  other forward      everything else in the forward (loss arithmetic, reshapes, Python)
  backward           `loss.backward()` (all parts together: autograd does not run through the wrappers)
  optimizer          zero_grad + Adam step
"""
from __future__ import annotations

import argparse
import contextlib
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import best_time, count_flops, environment, matmul_flops_per_second, sync, write_results
from artmator.model.lora import attach_adapters, trainable_parameters
from artmator.model.stylize import artmator_terms
from artmator.pipeline.settings import quick_settings, load_models

PARTS = ("mapping", "ray sampling", "deform+sampler", "SIREN", "compositing", "augmentation", "CLIP", "LPIPS",
         "other forward", "backward", "optimizer")


class Timers:
    """Accumulates seconds per part; `wrap` returns a timed version of a callable."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, part: str, fn):
        def timed(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(self.device)
                self.seconds[part] += time.perf_counter() - start
        return timed


@contextlib.contextmanager
def instrumented(timers: Timers, backbones, encoders):
    """Install timers on the rendering and loss parts (module attributes / instance methods); removed on exit."""
    import artmator.model.anifacegan.model as afm
    import artmator.model.anifacegan.rays as rays
    import artmator.model.losses as losses
    patches = []  # (object, attribute name, original, had instance attribute)

    def patch(obj, name, part):
        had = name in vars(obj)
        original = getattr(obj, name)
        patches.append((obj, name, original, had))
        setattr(obj, name, timers.wrap(part, original))

    for fn in ("make_rays", "sample_along_rays", "intersect_plane_z"):
        patch(rays, fn, "ray sampling")
    patch(afm, "intersect_manifolds", "deform+sampler")
    patch(afm, "composite", "compositing")
    patch(losses, "augment_pair", "augmentation")
    seen = set()
    for bb in backbones:
        for obj, name, part in ((bb.generator.siren.mapping_network, "forward", "mapping"),
                                (bb.deform, "modulation", "mapping"),
                                (bb.deform, "forward_modulated", "deform+sampler"),
                                (bb.generator.model_sample, "field", "deform+sampler"),
                                (bb.generator.siren, "forward", "SIREN")):
            if (id(obj), name) not in seen:
                seen.add((id(obj), name))
                patch(obj, name, part)
    clip_encoders = getattr(encoders.clip, "encoders", [encoders.clip])
    for enc in clip_encoders:
        patch(enc, "forward", "CLIP")
    patch(encoders.lpips, "forward", "LPIPS")
    try:
        yield
    finally:
        for obj, name, original, had in reversed(patches):
            if had:
                setattr(obj, name, original)
            else:
                delattr(obj, name)


def bench_config(preset: str, resolution: int, paintings: int, device: torch.device, repeats: int,
                 matmul: float) -> dict:
    settings = replace(quick_settings(preset), device=str(device))
    models = load_models(settings)
    g_ori, enc = models.backbone, models.encoders
    tune = settings.tune
    K = paintings
    seeds = list(range(K))
    module = attach_adapters(g_ori.tunable(), tune.delta, K, seeds)
    g_trn = g_ori.with_tunable(module)
    params = list(trainable_parameters(module))
    opt = torch.optim.Adam(params, lr=tune.stage2.lr_lora)
    gen = torch.Generator().manual_seed(0)
    latent = {k: v.to(device) for k, v in g_ori.sample_latent(K, gen).items()}
    yaw = torch.zeros(K, device=device)
    pitch = torch.zeros(K, device=device)
    with torch.no_grad():
        ref_latent = {k: v.to(device) for k, v in g_ori.sample_latent(K, torch.Generator().manual_seed(1)).items()}
        reference = g_ori.render_latent(ref_latent, yaw, pitch, resolution).image
        ori_ref = g_ori.render_latent(latent, yaw, pitch, resolution).image

    timers = Timers(device)
    phase = {}

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        terms = artmator_terms(g_ori, g_trn, latent, reference, ori_ref, yaw, pitch, enc.clip, enc.lpips,
                               tune.stage2, gen)
        total = sum(terms.values()).sum()
        sync(device)
        t1 = time.perf_counter()
        total.backward()
        sync(device)
        t2 = time.perf_counter()
        opt.step()
        sync(device)
        t3 = time.perf_counter()
        phase["forward"] = phase.get("forward", 0.0) + (t1 - t0)
        phase["backward"] = phase.get("backward", 0.0) + (t2 - t1)
        phase["optimizer"] = phase.get("optimizer", 0.0) + (t3 - t2)

    flops = count_flops(step)
    seconds = best_time(step, device, repeats=repeats)
    phase.clear()
    with instrumented(timers, [g_ori, g_trn], enc):
        for _ in range(repeats):
            step()
    per = {k: v / repeats for k, v in timers.seconds.items()}
    fwd = phase["forward"] / repeats
    breakdown = {p: per.get(p, 0.0) for p in PARTS[:8]}
    breakdown["other forward"] = max(0.0, fwd - sum(breakdown.values()))
    breakdown["backward"] = phase["backward"] / repeats
    breakdown["optimizer"] = phase["optimizer"] / repeats
    instrumented_total = sum(breakdown.values())
    achieved = flops / seconds
    row = {"preset": preset, "resolution": resolution, "paintings": K, "gflop_per_step": flops / 1e9,
           "seconds_per_step": seconds, "gflops_per_s": achieved / 1e9, "matmul_gflops_per_s": matmul / 1e9,
           "ratio_to_matmul": achieved / matmul, "instrumented_seconds": instrumented_total,
           "breakdown_seconds": {k: round(v, 5) for k, v in breakdown.items()},
           "breakdown_percent": {k: round(100 * v / instrumented_total, 1) for k, v in breakdown.items()}}
    print(f"{preset} {resolution}² K={K}: {flops / 1e9:.2f} GFLOP/step in {seconds:.3f} s = {achieved / 1e9:.1f} "
          f"GFLOP/s; matmul {matmul / 1e9:.1f} GFLOP/s; ratio {achieved / matmul:.3f}")
    print("  " + ", ".join(f"{k} {v:.0f}%" for k, v in row["breakdown_percent"].items()))
    return row


def run(configs: list[tuple[str, int]], paintings: int, device: torch.device, repeats: int,
        out_dir: Path | None = None, name: str | None = None) -> list[dict]:
    matmul = matmul_flops_per_second(device)
    rows = [bench_config(preset, res, paintings, device, repeats, matmul) for preset, res in configs]
    matmul_after = matmul_flops_per_second(device)
    env = environment(device) | {"matmul_gflops_per_s_before": round(matmul / 1e9, 1),
                                 "matmul_gflops_per_s_after": round(matmul_after / 1e9, 1), "repeats": repeats}
    # Flatten the breakdown into percent columns for the table.
    table_rows = [{**{k: v for k, v in r.items() if not k.startswith("breakdown")},
                   **{f"% {k}": r["breakdown_percent"][k] for k in PARTS}} | {"breakdown_seconds": r["breakdown_seconds"]}
                  for r in rows]
    columns = ["preset", "resolution", "paintings", "gflop_per_step", "seconds_per_step", "gflops_per_s",
               "matmul_gflops_per_s", "ratio_to_matmul"] + [f"% {k}" for k in PARTS]
    notes = ("One stage-2 step (LoRA, default objective) = forward + backward + Adam. FLOPs: FlopCounterMode "
             "(matmul-like ops only). ratio_to_matmul = step FLOP/s ÷ same-process 2048² fp32 matmul FLOP/s "
             "(measured before the configs; the after-value is in the environment line). % columns: share of an "
             "instrumented step (timed sub-calls; backward is not split by part).")
    write_results(name or f"perf_stage2_{device.type}", table_rows, env, columns, notes=notes, out_dir=out_dir)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny:64", "anifacegan:32"], metavar="PRESET:RES")
    p.add_argument("--paintings", type=int, default=1, help="K paintings per step (batched adapters)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--name", default=None)
    a = p.parse_args(argv)
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.configs]
    run(configs, a.paintings, torch.device(a.device), a.repeats, a.out_dir, a.name)


if __name__ == "__main__":
    main()
