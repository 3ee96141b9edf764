"""Stage-2 step performance: achieved FLOP/s vs a same-process dense matmul, and where a step's time goes.

    python -m bench.perf                                          # tiny at 64² and anifacegan at 32², CPU
    python -m bench.perf --device cuda --settings paper --configs anifacegan:128 --paintings 4 \
        --precisions fp32 tf32 bf16 --compile bf16
    python -m bench.perf --configs tiny:32 --repeats 1            # toy size (smoke test)
    python -m bench.perf --slots hits all                          # empty manifold slots skipped vs evaluated

Precisions (`--precisions`, one row each): fp32 (TF32 off), tf32 (TF32 matmuls), bf16 (TF32 plus bf16 autocast
over the step's forward: renders, CLIP, LPIPS; backward and Adam outside it). `--compile P...` adds a row per named
precision with the backbone's hot paths compiled (`Backbone.set_compile`, inductor; the first steps compile and are not
timed). Each row also gives how far a frame rendered under that precision/compile is from the fp32 eager frame
(max_abs_diff_vs_fp32, images in [-1, 1]): the price of the speed. The matmul references are dense n×n
matmuls in the same process: fp32 (TF32 off) and bf16 (n = 2048 on a CPU, 8192 on a GPU, where small matmuls
do not reach the card's peak); `ratio_to_matmul` is against fp32, `ratio_to_bf16_matmul` against bf16 (on a GPU
the card's dense bf16 rate, the number to quote).

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
                     (with gradients: also the recorded re-run at the crossings)
  SIREN              FiLM-SIREN colour/density at the manifold points (with packing them when empty slots are skipped)
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
import resource
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import (best_times, count_flops, environment, evaluate_slots, matmul_cpu_flops_per_second,
                          matmul_flops_per_second, sync, with_random_encoders, write_results)
from artmator.model.lora import attach_adapters, trainable_parameters
from artmator.model.stylize import artmator_terms
from artmator.pipeline.settings import PRESET_SETTINGS, load_models, preset_settings

PARTS = ("mapping", "ray sampling", "deform+sampler", "SIREN", "compositing", "augmentation", "CLIP", "LPIPS",
         "other forward", "backward", "optimizer")


class Timers:
    """Accumulates seconds per part; `wrap` returns a timed version of a callable. A timed call inside another
    one counts for the outer part only (no second count)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.depth = 0

    def wrap(self, part: str, fn):
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            sync(self.device)
            start = time.perf_counter()
            self.depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
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
    patch(afm, "radiance_at_hits", "SIREN")
    patch(afm, "composite", "compositing")
    patch(losses, "augment_pair", "augmentation")
    seen = set()
    for bb in backbones:
        for obj, name, part in ((bb.generator.siren.mapping_network, "forward", "mapping"),
                                (bb.deform, "modulation", "mapping"),
                                (bb.deform, "forward_modulated", "deform+sampler"),
                                (bb.generator.model_sample, "field", "deform+sampler"),
                                (bb, "_crossings_grad_at_hits", "deform+sampler"),
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


PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def precision(mode: str, device: torch.device):
    """TF32 matmuls for tf32 and bf16; bf16 autocast (on `device`) for bf16. Restores the flags on exit."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode in ("tf32", "bf16")
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def bench_config(preset: str, resolution: int, paintings: int, device: torch.device, repeats: int,
                 matmul: float, mode: str = "fp32", compile: bool = False, matmul_bf16: float | None = None,
                 settings_name: str = "quick", matmul_cpu: float | None = None,
                 compile_backend: str = "inductor", checkpoint_rays: int | None = None, slots: str = "hits") -> dict:
    settings = replace(preset_settings(settings_name, preset), device=str(device))
    if checkpoint_rays is not None:
        tune = settings.tune
        settings = replace(settings, tune=replace(tune, stage2=replace(tune.stage2, checkpoint_rays=checkpoint_rays)))
    if settings_name != "quick":
        settings = with_random_encoders(settings)        # the paper's encoder architectures, random weights
    models = load_models(settings)
    g_ori, enc = models.backbone, models.encoders
    evaluate_slots(g_ori, slots)
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
        ori_ref = g_ori.render_latent(latent, yaw, pitch, resolution).image      # fp32, eager: the yardstick
    if compile:
        g_ori.set_compile(True, compile_backend)
        g_trn.set_compile(True, compile_backend)
    with torch.no_grad(), precision(mode, device):
        frame = g_ori.render_latent(latent, yaw, pitch, resolution).image.float()
    frame_diff = (frame - ori_ref).abs()

    timers = Timers(device)
    phase = {}

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with precision(mode, device):
            terms = artmator_terms(g_ori, g_trn, latent, reference, ori_ref, yaw, pitch, enc.clip, enc.lpips,
                                   tune.stage2, gen)
            total = sum(terms.values()).sum().float()
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

    if compile:
        for _ in range(2):          # compiles the forward and backward graphs of both renders: not timed
            step()
    flops = count_flops(step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, cpu_seconds = best_times(step, device, repeats=repeats)
    peak_mb = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    phase.clear()
    # Compiled rows: no per-part timers (wrapping the compiled code would recompile it); forward is "other".
    with instrumented(timers, [g_ori, g_trn], enc) if not compile else contextlib.nullcontext():
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
    row = {"preset": preset, "resolution": resolution, "paintings": K, "precision": mode, "compile": compile,
           "slots": slots,
           "checkpoint_rays": checkpoint_rays, "peak_memory_mb": peak_mb,
           "gflop_per_step": flops / 1e9,
           "seconds_per_step": seconds, "gflops_per_s": achieved / 1e9, "matmul_gflops_per_s": matmul / 1e9,
           "ratio_to_matmul": achieved / matmul,
           "ratio_to_bf16_matmul": achieved / matmul_bf16 if matmul_bf16 else None,
           "cpu_seconds_per_step": cpu_seconds if device.type == "cpu" else None,
           "cpu_ratio_to_matmul": flops / cpu_seconds / matmul_cpu if device.type == "cpu" else None,
           "max_abs_diff_vs_fp32": frame_diff.max().item(), "mean_abs_diff_vs_fp32": frame_diff.mean().item(),
           "instrumented_seconds": instrumented_total,
           "breakdown_seconds": {k: round(v, 5) for k, v in breakdown.items()},
           "breakdown_percent": {k: round(100 * v / instrumented_total, 1) for k, v in breakdown.items()}}
    print(f"{preset} {resolution}² K={K} {mode}{' compiled' if compile else ''} slots {slots}: {flops / 1e9:.2f} GFLOP/step in {seconds:.3f} s = {achieved / 1e9:.1f} "
          f"GFLOP/s; matmul {matmul / 1e9:.1f} GFLOP/s; ratio {achieved / matmul:.3f}")
    print("  " + ", ".join(f"{k} {v:.0f}%" for k, v in row["breakdown_percent"].items()))
    return row


def run(configs: list[tuple[str, int]], paintings: int, device: torch.device, repeats: int,
        out_dir: Path | None = None, name: str | None = None, precisions: tuple[str, ...] = ("fp32",),
        compile_precisions: tuple[str, ...] = (), settings_name: str = "quick",
        compile_backend: str = "inductor", checkpoint_rays: int | None = None,
        slots: tuple[str, ...] = ("hits",)) -> list[dict]:
    n = 8192 if device.type == "cuda" else 2048
    with precision("fp32", device):
        matmul = matmul_flops_per_second(device, n)
    matmul_bf16 = matmul_flops_per_second(device, n, dtype=torch.bfloat16) if device.type == "cuda" or \
        "bf16" in precisions + compile_precisions else None
    matmul_cpu = matmul_cpu_flops_per_second() if device.type == "cpu" else None
    cases = [(mode, False) for mode in precisions] + [(mode, True) for mode in compile_precisions]
    rows = [bench_config(preset, res, paintings, device, repeats, matmul, mode, comp, matmul_bf16, settings_name,
                         matmul_cpu, compile_backend, checkpoint_rays, slot)
            for preset, res in configs for mode, comp in cases for slot in slots]
    with precision("fp32", device):
        matmul_after = matmul_flops_per_second(device, n)
    env = environment(device) | {"matmul_n": n, "matmul_gflops_per_s_before": round(matmul / 1e9, 1),
                                 "matmul_gflops_per_s_after": round(matmul_after / 1e9, 1), "repeats": repeats,
                                 "matmul_bf16_gflops_per_s": round(matmul_bf16 / 1e9, 1) if matmul_bf16 else None,
                                 "matmul_cpu_time_gflops_per_s": round(matmul_cpu / 1e9, 1) if matmul_cpu else None}
    # Flatten the breakdown into percent columns for the table.
    table_rows = [{**{k: v for k, v in r.items() if not k.startswith("breakdown")},
                   **{f"% {k}": r["breakdown_percent"][k] for k in PARTS}} | {"breakdown_seconds": r["breakdown_seconds"]}
                  for r in rows]
    columns = ["preset", "resolution", "paintings", "precision", "compile", "slots", "gflop_per_step", "seconds_per_step",
               "gflops_per_s", "matmul_gflops_per_s", "ratio_to_matmul", "ratio_to_bf16_matmul",
               "cpu_seconds_per_step", "cpu_ratio_to_matmul", "max_abs_diff_vs_fp32", "checkpoint_rays",
               "peak_memory_mb"] + [f"% {k}" for k in PARTS]
    notes = ("One stage-2 step (LoRA, default objective) = forward + backward + Adam. FLOPs: FlopCounterMode "
             "(matmul-like ops only). ratio_to_matmul = step FLOP/s ÷ same-process 2048² fp32 matmul FLOP/s "
             "(measured before the configs; the after-value is in the environment line). % columns: share of an "
             "instrumented step (timed sub-calls; backward is not split by part). peak_memory_mb: CUDA, the "
             "most allocated during the timed steps; CPU, the process's peak resident set (ru_maxrss, everything "
             "before included: compare processes with one config each).")
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
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32"])
    p.add_argument("--compile", nargs="*", choices=PRECISIONS, default=[], metavar="PRECISION",
                   help="extra rows with the backbone compiled, at these precisions")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compiled rows")
    p.add_argument("--settings", choices=sorted(PRESET_SETTINGS), default="quick",
                   help="step settings (encoders, stage-2 options); other than quick: the encoders' "
                        "architectures with random weights")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--checkpoint-rays", type=int, default=None,
                   help="stage 2's checkpoint_rays (gradient-checkpointed ray chunks; default: all rays at once)")
    p.add_argument("--slots", nargs="+", choices=["hits", "all"], default=["hits"],
                   help="AniFaceGAN: the FiLM-SIREN at the samples that hit a manifold (hits, the default) and/or "
                        "at every (ray, manifold) slot as the official code (all); a row each")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.configs]
    run(configs, a.paintings, torch.device(a.device), a.repeats, a.out_dir, a.name, tuple(a.precisions),
        tuple(a.compile), a.settings, a.compile_backend, a.checkpoint_rays, tuple(a.slots))


if __name__ == "__main__":
    main()
