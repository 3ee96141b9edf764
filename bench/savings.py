"""Per-painting cost savings, each side by side with the unreduced result and its quality (issue 15, part B).

    python -m bench.tuning savings                                    # quick settings, CPU (tiny head prior)
    python -m bench.tuning savings --settings paper --preset anifacegan --device cuda --random-encoders

Paintings: the quality protocol's (`bench.quality`): a teacher generator (G_ori + a fixed colour-head update)
renders N_q identities at N_v yaws; each identity's frontal render is a "painting" with a known pose, and the
teacher's other views are the truth the tuned result is scored against. All identities are tuned together in one
batch (k = N_q), so per-painting early stopping is exercised in a batch.

Configurations (all of the settings preset's own values except what the row names):

* unreduced: early stopping off in both stages, CLIP-direction views at the tuning resolution (the paper's way);
* early stop: `LocalizeConfig.early_stop` / `StylizeConfig.early_stop` (the preset's, or `--stage1-stop`,
  `--stage2-stop`);
* CLIP views at r px: `StylizeConfig.clip_view_resolution` = r (default: the smallest CLIP encoder's input size,
  when it is below the tuning resolution; `--clip-view-resolution`);
* early stop + CLIP views: both.

Per configuration: tuning wall seconds of the batch (device synchronised), per-painting FLOPs (matmul-like ops,
FlopCounterMode: a step of each stage measured once per per-step cost, times the steps the batch ran: a stopped
painting is rendered with the batch until the batch ends), steps used per painting (mean / max), quality against
the teacher (bench.quality's masked LPIPS/PSNR at the novel views and the frontal view, random evaluation LPIPS with
the quick settings), LPIPS/PSNR of its renders against the unreduced configuration's renders at the same views, and
the pretrained face metrics (`model.faces` FaceScorer: detected_fraction, identity_consistency, likeness,
teacher_identity) as in bench.quality.

Second table, the re-use of the stage-1 latent search: per identity, stage 1 from (a) its own random latent (what
`tune_paintings` does), (b) the previous identity's z* from the unreduced run ("the previous work of the same
painter": the identities share the teacher's style; cyclic, so identity 0 takes the last one), (c) the best z* of
the bank of all other identities (the lowest L_cr at this painting's pose, one render each). Measured: L_cr at
step 0, steps (updates) to reach (a)'s final loss (a itself: all of them), final loss.

Third table, a replay: the unreduced run's own loss curves fed to `model.plateau.plateaued` for a few candidate
settings: the step each stage would stop at (mean over identities), to choose presets from measured curves.
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from artmator.model.delta import apply_delta
from artmator.model.localize import localize
from artmator.model.plateau import NO_EARLY_STOP, PlateauConfig, plateaued
from artmator.model.tune import PaintingInput, TuneConfig, painting_seed, tune_paintings
from bench.common import count_flops, environment, sync, write_tables
from bench.quality import _repeat, colour_lora_teacher, eval_lpips, face_scores, face_summary, score

# Used when the settings preset has no early stopping of its own (see pipeline.settings for the presets').
FALLBACK_STOP = PlateauConfig(patience=10, min_rel_improvement=0.01, window=10, min_steps=20)
REPLAY = ((5, 5, 0.01), (10, 10, 0.01), (10, 10, 0.02), (20, 10, 0.01), (20, 20, 0.01), (30, 20, 0.005))
QUICK_DEFAULTS = {"identities": 3, "views": 5, "teacher_strength": 0.15}
FACE_KEYS = ("detected_fraction", "identity_consistency", "likeness", "teacher_identity")


def unreduced(tune: TuneConfig) -> TuneConfig:
    return replace(tune, stage1=replace(tune.stage1, early_stop=NO_EARLY_STOP),
                   stage2=replace(tune.stage2, early_stop=NO_EARLY_STOP, clip_view_resolution=None))


def configurations(tune: TuneConfig, stop1: PlateauConfig, stop2: PlateauConfig, clip_res: int | None
                   ) -> dict[str, TuneConfig]:
    base = unreduced(tune)
    early = replace(base, stage1=replace(base.stage1, early_stop=stop1), stage2=replace(base.stage2, early_stop=stop2))
    out = {"unreduced": base, "early stop": early}
    if clip_res is not None:
        out[f"CLIP views at {clip_res} px"] = replace(base, stage2=replace(base.stage2, clip_view_resolution=clip_res))
        out[f"early stop + CLIP views at {clip_res} px"] = replace(
            early, stage2=replace(early.stage2, clip_view_resolution=clip_res))
    return out


def step_flops(backbone, encoders, painting: PaintingInput, tune: TuneConfig) -> tuple[float, float]:
    """FLOPs of one stage-1 and one stage-2 step of one painting (differences of 1- and 2-step runs)."""
    def run(s1, s2):
        cfg = replace(tune, stage1=replace(tune.stage1, steps=s1, early_stop=NO_EARLY_STOP),
                      stage2=replace(tune.stage2, steps=s2, early_stop=NO_EARLY_STOP))
        return count_flops(lambda: tune_paintings(backbone, [painting], cfg, encoders))

    base = run(1, 1)
    return float(run(2, 1) - base), float(run(1, 2) - base)


def run(settings, models, args) -> None:
    backbone, encoders, device = models.backbone, models.encoders, models.device
    resolution = settings.tune.resolution or backbone.default_resolution
    quick = settings.tune.encoders.lpips.random_backbone
    n_id = args.identities or QUICK_DEFAULTS["identities"]
    strength = args.teacher_strength if args.teacher_strength is not None else (
        QUICK_DEFAULTS["teacher_strength"] if quick else 0.6)
    teacher = colour_lora_teacher(backbone, strength, 7).to(device)
    lpips_fn = eval_lpips(None, settings, device)
    scorer = None
    if args.face_metrics:
        from artmator.model.faces.metrics import FaceScorer

        scorer = FaceScorer(device=device)

    yaws = torch.linspace(-36.0, 36.0, args.views or QUICK_DEFAULTS["views"])
    if not bool((yaws.abs() < 1e-6).any()):
        yaws = torch.sort(torch.cat([yaws, torch.zeros(1)])).values
    frontal = yaws.abs() < 1e-6
    true = teacher.sample_latent(n_id, torch.Generator().manual_seed(args.seed))
    teacher_imgs, masks, paintings = [], [], []
    with torch.no_grad():
        for i in range(n_id):
            lat = {k: v[i:i + 1] for k, v in true.items()}
            out = teacher.render_latent(_repeat(lat, len(yaws)), yaws, torch.zeros(len(yaws)), resolution, psi=0.7)
            teacher_imgs.append(out.image), masks.append(out.opacity > 0.5)
            paintings.append(PaintingInput(f"identity-{i:03d}", out.image[frontal][:1].contiguous(), 0.0, 0.0))
    if float(torch.cat(masks).float().mean()) < 0.01:
        masks = [torch.ones_like(m) for m in masks]

    stop1 = _stop(args.stage1_stop, settings.tune.stage1.early_stop)
    stop2 = _stop(args.stage2_stop, settings.tune.stage2.early_stop)
    clip_size = min(c.image_size for c in encoders.clip.encoders)
    clip_res = args.clip_view_resolution or (clip_size if clip_size < resolution else None)
    configs = configurations(settings.tune, stop1, stop2, clip_res)
    if args.configs:
        unknown = sorted(set(args.configs) - set(configs))
        if unknown:
            raise SystemExit(f"unknown configurations {unknown}; these exist here: {list(configs)}")
        configs = {k: v for k, v in configs.items() if k == "unreduced" or k in args.configs}

    flops_cache: dict[object, tuple[float, float]] = {}
    rows, unreduced_renders, unreduced_tuned = [], None, None
    for label, tune in configs.items():
        sync(device)
        start = time.perf_counter()
        tuned = tune_paintings(backbone, paintings, tune, encoders)
        sync(device)
        seconds = time.perf_counter() - start
        ok = [(i, t) for i, t in enumerate(tuned) if t.delta is not None]
        steps1 = [t.steps["stage1"] for t in tuned]
        steps2 = [t.steps["stage2"] for t in tuned]
        row = {"config": label, "seconds": seconds, "seconds_per_painting": seconds / n_id,
               "stage1_steps": f"{sum(steps1) / n_id:.1f} / {max(steps1)}",
               "stage2_steps": f"{sum(steps2) / n_id:.1f} / {max(steps2)}",
               "steps_per_painting": [t.steps for t in tuned], "failed": n_id - len(ok)}
        if args.flops:
            key = tune.stage2.clip_view_resolution
            if key not in flops_cache:
                flops_cache[key] = step_flops(backbone, encoders, paintings[0], tune)
            f1, f2 = flops_cache[key]
            row["tflop_per_painting"] = (f1 * max(steps1) + f2 * max(steps2)) / 1e12
            row["stage2_step_gflop"] = f2 / 1e9
        per = {"lpips": [], "psnr": []}
        renders = []
        for i, t in ok:
            m, image = score(apply_delta(backbone, t.delta), {k: v.to(device) for k, v in t.latent.items()},
                             teacher_imgs[i], masks[i], yaws, lpips_fn, resolution)
            renders.append((i, image))
            per["lpips"].append(m["lpips"].cpu()), per["psnr"].append(m["psnr"].cpu())
        if per["lpips"]:
            lp, ps = torch.stack(per["lpips"]), torch.stack(per["psnr"])
            row |= {"lpips_novel": float(lp[:, ~frontal].mean()), "psnr_novel": float(ps[:, ~frontal].mean()),
                    "lpips_frontal": float(lp[:, frontal].mean()), "psnr_frontal": float(ps[:, frontal].mean())}
        if unreduced_renders is None:
            unreduced_renders, unreduced_tuned = dict(renders), tuned
        else:
            both = [(image, unreduced_renders[i]) for i, image in renders if i in unreduced_renders]
            if both:
                a, b = torch.cat([x for x, _ in both]), torch.cat([y for _, y in both])
                whole = torch.ones_like(a[:, :1], dtype=torch.bool)
                from bench.quality import masked_metrics

                m = masked_metrics(a, b, whole, lpips_fn)
                # PSNR of the pooled MSE: a mean of per-view PSNRs would let identical renders (120 dB) dominate
                mse = float(((a - b) / 2).pow(2).mean())
                row |= {"lpips_vs_unreduced": float(m["lpips"].mean()),
                        "psnr_vs_unreduced": -10 * torch.log10(torch.tensor(max(mse, 1e-12))).item()}
        if scorer is not None and renders:
            faces = face_summary([face_scores(scorer, r, teacher_imgs[i], yaws, frontal, paintings[i].image[0])
                                  for i, r in renders])
            row |= {k: faces[k] for k in FACE_KEYS} | {"teacher_identity_pairs": faces["teacher_identity_pairs"]}
        rows.append(row)
        print({k: v for k, v in row.items() if k != "steps_per_painting"}, flush=True)

    reuse = latent_reuse(backbone, encoders, settings.tune, paintings, unreduced_tuned, device) if args.reuse else []
    replay = replay_rows(unreduced_tuned)
    base = rows[0]
    for r in rows[1:]:
        if "tflop_per_painting" in base:
            r["flop_ratio"] = r["tflop_per_painting"] / base["tflop_per_painting"]
        r["seconds_ratio"] = r["seconds"] / base["seconds"]

    env = environment(device)
    note = {"settings": args.settings, "preset": settings.backbone.preset, "tune_resolution": resolution,
            "stage1_steps": settings.tune.stage1.steps, "stage2_steps": settings.tune.stage2.steps,
            "identities (one batch)": n_id, "views": len(yaws), "teacher_strength": strength,
            "clip_input_size": clip_size, "stage1_stop": _describe(stop1), "stage2_stop": _describe(stop2),
            "random_models": uses_random(settings), "tf32": args.tf32}
    cols = ["config", "seconds", "seconds_ratio", "tflop_per_painting", "flop_ratio", "stage2_step_gflop",
            "stage1_steps", "stage2_steps", "lpips_novel", "psnr_novel", "lpips_frontal", "psnr_frontal",
            "lpips_vs_unreduced", "psnr_vs_unreduced", *FACE_KEYS, "teacher_identity_pairs", "failed"]
    reuse_cols = ["init", "loss_step0", "steps_to_random_final", "reached", "final_loss"]
    replay_cols = ["stage", "patience", "window", "min_rel_improvement", "stop_step_mean", "stop_step_max",
                   "steps_run", "loss_at_stop_vs_final"]
    name = args.name or f"tuning_savings_{settings.backbone.preset}_{device.type}"
    write_tables(name, env, note, {"savings": rows, "stage-1 latent re-use": reuse, "plateau replay": replay},
                 {"savings": cols, "stage-1 latent re-use": reuse_cols, "plateau replay": replay_cols},
                 {"steps_per_painting": {r["config"]: r["steps_per_painting"] for r in rows}}, out_dir=args.out_dir)


def latent_reuse(backbone, encoders, tune: TuneConfig, paintings, tuned, device) -> list[dict]:
    """Stage 1 from its own random latent, the previous identity's z*, or the best z* of the others' bank."""
    n = len(paintings)
    if n < 2 or tuned is None or any(t.delta is None for t in tuned):
        return []
    from artmator.model.losses import content_loss

    reference = torch.cat([p.image for p in paintings]).to(device)                      # (N, 3, R, R)
    yaw = torch.tensor([p.yaw_deg for p in paintings], device=device)
    pitch = torch.tensor([p.pitch_deg for p in paintings], device=device)
    bank = [{k: v.to(device) for k, v in t.latent.items()} for t in tuned]
    cfg = replace(tune.stage1, early_stop=NO_EARLY_STOP)
    own = [backbone.sample_latent(1, torch.Generator().manual_seed(painting_seed(tune.seed, p.painting_id)))
           for p in paintings]
    previous = [bank[(i - 1) % n] for i in range(n)]
    best = []
    with torch.no_grad():
        for i in range(n):
            others = [bank[j] for j in range(n) if j != i]
            lat = {k: torch.cat([o[k] for o in others]) for k in others[0]}
            m = len(others)
            image = backbone.render_latent(lat, yaw[i:i + 1].expand(m), pitch[i:i + 1].expand(m),
                                           reference.shape[-1], psi=1.0).image
            loss = content_loss(image, reference[i:i + 1].expand(m, -1, -1, -1), encoders.lpips,
                                cfg.lambda_lpips, cfg.lambda_l2)
            best.append(others[int(torch.argmin(loss))])
    rows, target = [], None
    for label, inits in (("own random latent (today)", own), ("previous work's z*", previous),
                         ("best z* of the bank (N-1 renders)", best)):
        init = {k: torch.cat([x[k].to(device) for x in inits]) for k in inits[0]}
        result = localize(backbone, reference, yaw, pitch, encoders.lpips, cfg, torch.Generator().manual_seed(0),
                          init=init)
        final = result.final_loss.cpu()
        # row s = L_cr after s updates (the last row: at z*), so the own run reaches its target at s = steps
        curves = torch.cat([result.losses.cpu(), final[None]])                            # (steps + 1, N)
        if target is None:
            target = final
        hit = [next((s for s in range(curves.shape[0]) if curves[s, i] <= target[i]), None) for i in range(n)]
        reached = [h for h in hit if h is not None]
        rows.append({"init": label, "loss_step0": float(curves[0].mean()) if len(curves) else None,
                     "steps_to_random_final": (sum(reached) / len(reached)) if reached else None,
                     "reached": f"{len(reached)}/{n}", "final_loss": float(final.mean())})
        print(rows[-1], flush=True)
    return rows


def replay_rows(tuned) -> list[dict]:
    """The unreduced curves through `plateaued`: where each candidate setting would have stopped each stage."""
    if not tuned:
        return []
    rows = []
    for stage, key in (("stage 1", "stage1"), ("stage 2", "total")):
        curves = [t.losses.get(key) or [] for t in tuned if t.delta is not None]
        if not curves or not curves[0]:
            continue
        for patience, window, rel in REPLAY:
            cfg = PlateauConfig(patience=patience, window=window, min_rel_improvement=rel, min_steps=20)
            stops = [next((s for s in range(1, len(c) + 1) if plateaued(c[:s], cfg)), len(c)) for c in curves]
            gap = [_smooth(c, s, window) / _smooth(c, len(c), window) for c, s in zip(curves, stops)]
            rows.append({"stage": stage, "patience": patience, "window": window, "min_rel_improvement": rel,
                         "stop_step_mean": sum(stops) / len(stops), "stop_step_max": max(stops),
                         "steps_run": len(curves[0]), "loss_at_stop_vs_final": sum(gap) / len(gap)})
    return rows


def _smooth(curve, end: int, window: int) -> float:
    part = curve[max(0, end - window):end]
    return sum(part) / len(part)


def _stop(values, preset: PlateauConfig) -> PlateauConfig:
    if values:
        patience, window, rel, min_steps = values
        return PlateauConfig(patience=int(patience), window=int(window), min_rel_improvement=float(rel),
                             min_steps=int(min_steps))
    return preset if preset.enabled else FALLBACK_STOP


def _describe(c: PlateauConfig) -> str:
    return f"patience {c.patience}, window {c.window}, min rel {c.min_rel_improvement}, min steps {c.min_steps}"


def uses_random(settings) -> bool:
    from artmator.pipeline.settings import uses_random_models

    return uses_random_models(settings)


def add_arguments(p) -> None:
    p.add_argument("--identities", type=int, default=None, help="savings: teacher identities, one batch (default 3)")
    p.add_argument("--views", type=int, default=None, help="savings: yaws in [-36, 36] (default 5)")
    p.add_argument("--teacher-strength", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage1-stop", type=float, nargs=4, default=None, metavar=("PATIENCE", "WINDOW", "MIN_REL", "MIN_STEPS"),
                   help="savings: stage-1 early stopping (default: the preset's)")
    p.add_argument("--stage2-stop", type=float, nargs=4, default=None, metavar=("PATIENCE", "WINDOW", "MIN_REL", "MIN_STEPS"))
    p.add_argument("--clip-view-resolution", type=int, default=None,
                   help="savings: CLIP views' size (default: the CLIP input size when below the tuning resolution)")
    p.add_argument("--configs", nargs="*", default=None,
                   help="savings: only these configurations, by name (unreduced always runs)")
    p.add_argument("--flops", action=argparse_bool(), default=True)
    p.add_argument("--face-metrics", action=argparse_bool(), default=True)
    p.add_argument("--reuse", action=argparse_bool(), default=True, help="savings: the stage-1 latent re-use table")
    p.add_argument("--tf32", action=argparse_bool(), default=False, help="TF32 matmuls (CUDA)")
    p.add_argument("--random-encoders", action="store_true",
                   help="CLIP and LPIPS of the settings' architectures with random weights (GPU runs without files)")


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction
