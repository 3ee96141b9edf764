"""Per-painting cost as a whole, and the "catalog overnight" budget it implies.

    python -m bench.painting_cost                                   # quick settings, CPU (tiny backbone)
    python -m bench.painting_cost --settings paper --preset anifacegan --device cuda --ks 1 8

For each batch size k (paintings tuned together in one optimisation, `JobSettings.paintings_per_batch`), one run
of the real code path a tuning actor takes: `tune_paintings` (stage 1 localization, stage 2 stylization) on k
demo paintings at a given pose, then the turntable and expression renders of each (`render_turntable`,
`render_expressions`). Measured per painting:

* seconds of stage 1, stage 2 and renders (wall time, device synchronised). `--measure-steps S1 S2` runs fewer
  steps than the settings and scales each stage linearly to the settings' counts (a step's cost does not
  depend on its index; stated in the output as `scaled_from`);
* FLOPs of matmul-like ops (torch's FlopCounterMode): a stage-1 step and a stage-2 step as the difference of
  one- and two-step runs (so setup is not counted as steps), one rendered frame, all times the settings' counts;
* achieved FLOP/s and its ratio to a dense 2048² matmul measured in the same process (the only number worth
  comparing across machines);
* paintings per device-hour and per 12-hour night on 1, 8 and 64 devices, assuming the measured per-painting
  time and no other overhead (Ray's own overhead is `bench.pipeline_overhead`).

Numbers on a CPU are labelled as such; the README's overnight table says which card gave GPU numbers.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from artmator.model.render import render_expressions, render_turntable
from artmator.model.tune import tune_paintings
from artmator.pipeline.settings import PRESET_SETTINGS, JobSettings, load_models, preset_settings, resolve_expressions
from bench.common import (count_flops, environment, evaluate_slots, hit_fraction, matmul_flops_per_second, sync,
                          with_random_encoders, write_tables)
from bench.tuning import demo_paintings

NIGHT_HOURS = 12.0
FLEETS = (1, 8, 64)


def with_steps(settings: JobSettings, s1: int, s2: int) -> JobSettings:
    tune = settings.tune
    return replace(settings, tune=replace(tune, stage1=replace(tune.stage1, steps=s1),
                                          stage2=replace(tune.stage2, steps=s2)))


def stage_flops(settings: JobSettings, models, paintings) -> dict[str, float]:
    """FLOPs of one stage-1 step, one stage-2 step (for all `paintings` together) and one rendered frame, and the
    share of manifold slots that frame evaluates (`hit_fraction`)."""
    def tuned(s1, s2):
        return count_flops(lambda: tune_paintings(models.backbone, paintings, with_steps(settings, s1, s2).tune,
                                                  models.encoders))

    base = tuned(1, 1)
    s1 = tuned(2, 1) - base
    s2 = tuned(1, 2) - base
    [one] = tune_paintings(models.backbone, paintings[:1], with_steps(settings, 1, 1).tune, models.encoders)
    frame_config = replace(settings.render, turntable_frames=1, frame_batch=1)
    latent = {k: v.to(models.device) for k, v in one.latent.items()}
    frame = count_flops(lambda: render_turntable(models.backbone, latent, frame_config))
    hits = hit_fraction(models.backbone, lambda: render_turntable(models.backbone, latent, frame_config))
    return {"stage1_step": float(s1), "stage2_step": float(s2), "frame": float(frame), "hit_fraction": hits}


def measure(settings: JobSettings, models, k: int, s1: int, s2: int, expressions) -> dict[str, float]:
    """Seconds of stage 1, stage 2 and renders per painting for k paintings tuned together."""
    device = models.device
    resolution = settings.tune.resolution or models.backbone.default_resolution
    paintings = [replace(p, image=p.image.to(device)) for p in demo_paintings(settings, resolution, k)]
    sync(device)
    tuned = tune_paintings(models.backbone, paintings, with_steps(settings, s1, s2).tune, models.encoders)
    sync(device)
    t = tuned[0].timings
    start = time.perf_counter()
    with torch.no_grad():
        for one in tuned:
            latent = {k: v.to(device) for k, v in one.latent.items()}   # tuned latents come back on the CPU
            render_turntable(models.backbone, latent, settings.render, one.yaw_deg, one.pitch_deg)
            render_expressions(models.backbone, latent, expressions, settings.render, one.yaw_deg, one.pitch_deg)
    sync(device)
    renders = time.perf_counter() - start
    full1, full2 = settings.tune.stage1.steps, settings.tune.stage2.steps
    return {"stage1_s": t["stage1"] / k * (full1 / max(s1, 1)), "stage2_s": t["stage2"] / k * (full2 / max(s2, 1)),
            "renders_s": renders / k}


def run(args) -> None:
    device = torch.device(args.device)
    settings = replace(preset_settings(args.settings, args.preset), device=args.device)
    render = settings.render
    if args.frames:
        render = replace(render, turntable_frames=args.frames)
    if args.render_resolution:
        render = replace(render, resolution=args.render_resolution)
    settings = replace(settings, render=render)
    if args.resolution:
        settings = replace(settings, tune=replace(settings.tune, resolution=args.resolution))
    if args.random_encoders:
        settings = with_random_encoders(settings)
    if args.compile:
        settings = replace(settings, backbone=replace(settings.backbone, compile=True))
    if args.autocast:
        settings = replace(settings, render=replace(settings.render, autocast=True))
    if args.autocast_tuning:
        tune = settings.tune
        settings = replace(settings, tune=replace(tune, stage1=replace(tune.stage1, autocast=True),
                                                  stage2=replace(tune.stage2, autocast=True)))
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    models = load_models(settings)
    evaluate_slots(models.backbone, args.slots)
    expressions = resolve_expressions(models.backbone, settings.render.expressions)
    s1 = args.measure_steps[0] if args.measure_steps else settings.tune.stage1.steps
    s2 = args.measure_steps[1] if args.measure_steps else settings.tune.stage2.steps
    matmul = matmul_flops_per_second(device)
    resolution = settings.tune.resolution or models.backbone.default_resolution
    flops = stage_flops(settings, models, demo_paintings(settings, resolution, 1)) if args.flops else {}
    frames = settings.render.turntable_frames + len(expressions) + 0  # + the reference still is one more frame
    rows = []
    for k in args.ks:
        try:
            measure(settings, models, k, 1, 1, expressions) if args.warmup else None
            m = measure(settings, models, k, s1, s2, expressions)
        except torch.OutOfMemoryError:
            # Stage 2 keeps every sample of k renders for the backward pass: k is bounded by device memory.
            torch.cuda.empty_cache()
            rows.append({"k": k, "error": "out of device memory"})
            print(rows[-1], flush=True)
            continue
        total = m["stage1_s"] + m["stage2_s"] + m["renders_s"]
        row = {"k": k, **m, "total_s": total, "paintings_per_hour": 3600.0 / total}
        for n in FLEETS:
            row[f"night_{n}"] = int(NIGHT_HOURS * 3600.0 / total * n)
        if flops:
            work = (flops["stage1_step"] * settings.tune.stage1.steps + flops["stage2_step"]
                    * settings.tune.stage2.steps + flops["frame"] * (frames + 1))
            row |= {"tflop_per_painting": work / 1e12, "achieved_tflops": work / total / 1e12,
                    "vs_matmul": work / total / matmul}
        rows.append(row)
        print(row, flush=True)
    env = environment(device) | {"matmul_tflops": matmul / 1e12, "tf32": args.tf32}
    facts = {"flops_per_unit": {k: v for k, v in flops.items() if k != "hit_fraction"},
             "hit_fraction": flops.get("hit_fraction"), "frames_rendered_per_painting": frames + 1,
             "scaled_from": {"stage1_steps": s1, "stage2_steps": s2}}
    cols = ["k", "stage1_s", "stage2_s", "renders_s", "total_s", "paintings_per_hour",
            *[f"night_{n}" for n in FLEETS], "tflop_per_painting", "achieved_tflops", "vs_matmul", "error"]
    settings_note = {"settings": args.settings, "preset": args.preset, "tune_resolution": resolution,
                     "render_resolution": settings.render.resolution, "stage1_steps": settings.tune.stage1.steps,
                     "stage2_steps": settings.tune.stage2.steps, "autocast_renders": settings.render.autocast,
                     "autocast_tuning": settings.tune.stage2.autocast,
                     "encoders": [c.model_name for c in settings.tune.encoders.clip] + [settings.tune.encoders.lpips.net],
                     "random_encoders": args.random_encoders, "compile": args.compile, "slots": args.slots}
    name = args.name or f"painting_cost_{args.settings}_{device.type}"
    write_tables(name, env, settings_note, {"per painting": rows}, {"per painting": cols}, facts,
                 out_dir=args.out_dir)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", choices=sorted(PRESET_SETTINGS), default="quick")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--measure-steps", type=int, nargs=2, default=None, metavar=("S1", "S2"),
                   help="run this many steps and scale each stage to the settings' counts")
    p.add_argument("--flops", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--resolution", type=int, default=None, help="tuning resolution (default: the settings')")
    p.add_argument("--render-resolution", type=int, default=None)
    p.add_argument("--frames", type=int, default=None, help="turntable frames (default: the settings')")
    p.add_argument("--random-encoders", action="store_true",
                   help="CLIP and LPIPS of the settings' architectures with random weights (cost only)")
    p.add_argument("--autocast", action="store_true", help="renders in bf16/fp16 autocast (CUDA only)")
    p.add_argument("--autocast-tuning", action="store_true",
                   help="stage 1 and stage 2 forwards in bf16 autocast (CUDA only; the settings' autocast fields)")
    p.add_argument("--compile", action="store_true",
                   help="the backbone's hot paths through torch.compile (BackboneSettings.compile); the warm-up "
                        "run (--warmup) takes the compile time")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=False, help="TF32 matmuls (CUDA)")
    p.add_argument("--slots", choices=["hits", "all"], default="hits",
                   help="AniFaceGAN: the FiLM-SIREN at the samples that hit a manifold (hits) or at every (ray, "
                        "manifold) slot, as the official code (all). With random generator weights few slots are "
                        "hit, so 'all' is the bound to quote for trained weights until their hit share is measured")
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--name", default=None)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
