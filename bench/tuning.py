"""Tuning benchmarks, each measured side by side in one run on the demo paintings.

    python -m bench.tuning curves   # loss curves of stage 1 and 2 at long step counts (justifies the defaults)
    python -m bench.tuning batch    # paintings/hour tuning k = 1, 2, 4 (, 8) paintings together vs one at a time
    python -m bench.tuning delta    # LoRA vs full tuning: delta bytes and reference-view quality on the same painting
                                    # (+ the bytes of a default delta of the official `anifacegan` preset)
    python -m bench.tuning savings  # early stopping, CLIP views at the encoder's size, stage-1 latent re-use: seconds,
                                    # FLOPs, steps and quality side by side with the unreduced run (bench/savings.py)

Defaults use the `quick` settings (tiny backbone with the procedural head prior, random tiny encoders) so they
run on a CPU; `--settings paper --preset anifacegan --device cuda` with real weights for GPU numbers.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench import savings
from bench.common import environment, with_random_encoders, write_results
from artmator.model.images import load_painting
from artmator.model.lora import DeltaConfig
from artmator.model.tune import PaintingInput, tune_paintings
from artmator.pipeline.manifest import load_manifest
from artmator.pipeline.settings import PRESET_SETTINGS, JobSettings, load_models, preset_settings

DEMO = Path(__file__).resolve().parent.parent / "manifests" / "demo" / "manifest.parquet"


def demo_paintings(settings: JobSettings, resolution: int, n: int) -> list[PaintingInput]:
    """n paintings from the demo manifest (repeated with new ids when n > 4), all at the frontal pose if unknown."""
    tasks, _ = load_manifest(str(DEMO))
    out = []
    for i in range(n):
        t = tasks[i % len(tasks)]
        image = load_painting(t.image_uri, resolution, None, settings.image)
        out.append(PaintingInput(f"{t.painting_id}-{i}", image, t.yaw_deg or 0.0, t.pitch_deg or 0.0))
    return out


def curves(settings: JobSettings, models, args) -> list[dict]:
    """Mean loss over the demo paintings at checkpoints of long stage-1 and stage-2 runs."""
    tune = replace(settings.tune, stage1=replace(settings.tune.stage1, steps=args.stage1_steps),
                   stage2=replace(settings.tune.stage2, steps=args.stage2_steps))
    res = tune.resolution or models.backbone.default_resolution
    paintings = demo_paintings(settings, res, args.paintings)
    start = time.perf_counter()
    tuned = tune_paintings(models.backbone, paintings, tune, models.encoders)
    seconds = time.perf_counter() - start
    rows = []
    for stage, key, total in (("stage1", "stage1", args.stage1_steps), ("stage2", "total", args.stage2_steps)):
        for step in sorted({0, 5, 10, 20, 30, 40, 60, 80, 100, 150, 200, 300, 400, total - 1} & set(range(total))):
            vals = [t.losses[key][step] for t in tuned]
            rows.append({"stage": stage, "step": step, "mean_loss": sum(vals) / len(vals)})
    for t in tuned:
        print(t.painting_id, {k: round(v, 4) for k, v in t.metrics.items()})
    lp1 = sum(t.metrics["lpips_stage1"] for t in tuned) / len(tuned)
    lp2 = sum(t.metrics["lpips_ref"] for t in tuned) / len(tuned)
    rows.append({"stage": "reference LPIPS", "step": "after stage 1 -> after stage 2", "mean_loss": f"{lp1:.4f} -> {lp2:.4f}"})
    rows.append({"stage": "wall time", "step": f"{len(tuned)} paintings batched", "mean_loss": f"{seconds:.1f} s"})
    for r in rows:
        print(r)
    return rows


def batch(settings: JobSettings, models, args) -> list[dict]:
    """Throughput of k paintings tuned together relative to k = 1, same steps, same paintings.

    `--repeats` rounds over all k (interleaved, so slow phases of a shared machine hit every k alike); the
    fastest time per k is kept. CPU time of this process (all threads) is recorded too: on a machine shared with
    other jobs it is far less disturbed than wall time, so `cpu_ratio_to_k1` is the steadier estimate there.
    """
    tune = replace(settings.tune, stage1=replace(settings.tune.stage1, steps=args.stage1_steps),
                   stage2=replace(settings.tune.stage2, steps=args.stage2_steps))
    res = tune.resolution or models.backbone.default_resolution
    warm = replace(tune, stage1=replace(tune.stage1, steps=1), stage2=replace(tune.stage2, steps=1))
    best: dict[int, list[float]] = {k: [] for k in args.ks}
    cpu: dict[int, list[float]] = {k: [] for k in args.ks}
    for _ in range(max(1, args.repeats)):
        for k in args.ks:
            paintings = demo_paintings(settings, res, k)
            tune_paintings(models.backbone, paintings[:1], warm, models.encoders)
            start, cpu_start = time.perf_counter(), time.process_time()
            tune_paintings(models.backbone, paintings, tune, models.encoders)
            best[k].append(time.perf_counter() - start)
            cpu[k].append(time.process_time() - cpu_start)
            print({"k": k, "seconds": best[k][-1], "cpu_seconds": cpu[k][-1]})
    rows, base, cpu_base = [], None, None
    for k in args.ks:
        seconds = min(best[k])
        per_hour = 3600 * k / seconds
        base = base or per_hour
        cpu_per_painting = min(cpu[k]) / k
        cpu_base = cpu_base or cpu_per_painting
        rows.append({"k": k, "seconds": seconds, "paintings_per_hour": per_hour, "ratio_to_k1": per_hour / base,
                     "cpu_seconds_per_painting": cpu_per_painting, "cpu_ratio_to_k1": cpu_base / cpu_per_painting,
                     "all_seconds": [round(t, 2) for t in best[k]]})
        print(rows[-1])
    return rows


def delta(settings: JobSettings, models, args) -> list[dict]:
    """LoRA (default rank) vs full tuning on the same paintings: bytes and reference-view LPIPS/PSNR."""
    res = settings.tune.resolution or models.backbone.default_resolution
    paintings = demo_paintings(settings, res, args.paintings)
    base_bytes = sum(t.numel() * t.element_size() for t in models.backbone.tunable().state_dict().values())
    rows = []
    for label, cfg in (("lora", DeltaConfig()), ("full", DeltaConfig(mode="full", storage_dtype="float32"))):
        stage2 = replace(settings.tune.stage2, steps=args.stage2_steps)
        tune = replace(settings.tune, delta=cfg, stage1=replace(settings.tune.stage1, steps=args.stage1_steps),
                       stage2=stage2)
        start = time.perf_counter()
        tuned = tune_paintings(models.backbone, paintings, tune, models.encoders)
        seconds = time.perf_counter() - start
        from artmator.model.delta import encode_delta

        nbytes = sum(len(encode_delta(t.delta.tensors, t.delta.metadata)) for t in tuned) / len(tuned)
        rows.append({"mode": label, "delta_bytes": nbytes, "base_bytes": base_bytes, "ratio": nbytes / base_bytes,
                     "lpips_stage1": _mean(tuned, "lpips_stage1"), "lpips_ref": _mean(tuned, "lpips_ref"),
                     "psnr_ref": _mean(tuned, "psnr_ref"), "seconds": seconds})
        print(rows[-1])
    rows.append(anifacegan_delta_bytes())
    print(rows[-1])
    return rows


def anifacegan_delta_bytes() -> dict:
    """Bytes of a default (rank-4 LoRA, fp16) delta file for the official `anifacegan` preset, untuned adapters
    (a file's size does not depend on the values), with the paper settings as its resolved config."""
    import json

    from artmator.model import load_backbone
    from artmator.model.delta import DeltaMetadata, encode_delta, painting_delta
    from artmator.model.lora import attach_adapters
    from artmator.pipeline.settings import paper_settings

    backbone = load_backbone("anifacegan")
    config = DeltaConfig()
    base_bytes = sum(t.numel() * t.element_size() for t in backbone.tunable().state_dict().values())
    module = attach_adapters(backbone.tunable(), config, 1, 0)
    meta = DeltaMetadata(base_sha256=backbone.base_hash(), preset="anifacegan", config=config,
                         latent=backbone.sample_latent(1, torch.Generator().manual_seed(0)),
                         resolved_config=json.dumps(paper_settings().tune.to_dict(), sort_keys=True))
    delta = painting_delta(module, 0, meta)
    nbytes = len(encode_delta(delta.tensors, delta.metadata))
    return {"mode": "lora (anifacegan preset, default rank 4)", "delta_bytes": nbytes, "base_bytes": base_bytes,
            "ratio": nbytes / base_bytes}


def _given(value, default):
    return default if value is None else value


def _mean(tuned, key):
    return sum(t.metrics[key] for t in tuned) / len(tuned)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["curves", "batch", "delta", "savings"])
    p.add_argument("--settings", choices=sorted(PRESET_SETTINGS), default="quick")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--paintings", type=int, default=4)
    p.add_argument("--stage1-steps", type=int, default=None)
    p.add_argument("--stage2-steps", type=int, default=None)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=2, help="batch: interleaved rounds, fastest kept")
    p.add_argument("--resolution", type=int, default=None, help="tuning resolution (default: the settings')")
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--name", default=None, help="result file name (default tuning_<what>_<preset>_<device>)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    savings.add_arguments(p)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = a.tf32
    settings = replace(preset_settings(a.settings, a.preset), device=a.device)
    if a.resolution:
        settings = replace(settings, tune=replace(settings.tune, resolution=a.resolution))
    if a.random_encoders:
        settings = with_random_encoders(settings)
    if a.what == "savings":
        tune = settings.tune
        tune = replace(tune, stage1=replace(tune.stage1, steps=_given(a.stage1_steps, tune.stage1.steps)),
                       stage2=replace(tune.stage2, steps=_given(a.stage2_steps, tune.stage2.steps)))
        settings = replace(settings, tune=tune)
        savings.run(settings, load_models(settings), a)
        return
    a.stage1_steps = a.stage1_steps if a.stage1_steps is not None else {"curves": 300, "batch": 20, "delta": settings.tune.stage1.steps}[a.what]
    a.stage2_steps = a.stage2_steps if a.stage2_steps is not None else {"curves": 200, "batch": 10, "delta": settings.tune.stage2.steps}[a.what]
    models = load_models(settings)
    rows = {"curves": curves, "batch": batch, "delta": delta}[a.what](settings, models, a)
    env = environment(torch.device(a.device)) | {"settings": a.settings, "preset": a.preset,
                                                 "stage1_steps": a.stage1_steps, "stage2_steps": a.stage2_steps}
    columns = list(rows[0].keys()) if rows else []
    cols = sorted({c for r in rows for c in r}, key=lambda c: (columns.index(c) if c in columns else 99, c))
    env |= {"resolution": settings.tune.resolution}
    write_results(a.name or f"tuning_{a.what}_{a.preset}_{torch.device(a.device).type}", rows, env, cols,
                  out_dir=a.out_dir)


if __name__ == "__main__":
    main()
