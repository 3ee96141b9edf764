"""Multi-view stylization quality against a stylized teacher generator (the protocol of the paper's Table 2).

    python -m bench.quality                        # quick: tiny head-prior backbone, N_q = 3, N_v = 5 yaws, 64 px, CPU
    python -m bench.quality --backbone random      # quick, random tiny generator (no face), 32 px: the earlier run
    python -m bench.quality --full --device cuda   # paper protocol: N_q = 50, N_v = 7, paper settings (GPU, weights)
    python -m bench.quality --full --preset anifacegan --official-root DIR \\
        --teacher-weights generator=s3://…/stylized_ema.pth --clip ViT-B-32:openai=… --lpips vgg=… \\
        --eval-lpips alex=…/alexnet-owt-7be5be79.pth

Protocol. A stylized *teacher* 3D generator Q renders N_q identities (teacher latents sampled with `--seed`) at
N_v yaws uniformly spaced in [-36°, 36°] (pitch 0). Every method sees only the FRONTAL render of an identity as
its "painting" (pose given: yaw = pitch = 0), tunes on it, and renders its result (z*, G_trn) at the same yaws.
Metrics compare each method's render with the teacher's render at the same yaw:

  * mask M = teacher opacity > 0.5 (the teacher's face/head region; `render_latent(...).opacity`); where that
    covers under 1 % of the pixels (the random tiny generator renders nothing opaque) M = the whole image, and
    the environment's `mask` says so;
  * PSNR: MSE over the mask pixels only (all 3 channels, images on the [0, 1] scale), -10·log10(MSE);
  * LPIPS and SSIM: on both images with every pixel outside M set to the same constant (0 in [-1, 1], mid grey),
    so the background contributes no difference; SSIM (11-px Gaussian window, `model.metrics.ssim`) is the mean
    over the whole image, so its absolute value rises with the background fraction (same M for every method);
  * "novel" = mean over identities and the non-frontal yaws; "frontal" = the painting's own view, separately.

Teachers. (a) `--teacher-weights part=URI …`: any generator `load_backbone(preset, weights=…)` loads (e.g. a
second, stylized checkpoint of the same preset); parts not given are the student's. (b) Default, self-contained:
the student's own backbone G_ori with a fixed, seeded style change the methods are never given: rank-3 low-rank
updates on the colour heads only (`siren.output_color.*` and `siren.color_layer_sine.0.layer`; `attach_adapters`
then lora_B ~ N(0, `--teacher-strength`²) seeded by `--teacher-seed`). Geometry (density, manifolds,
deformation) is unchanged, so the teacher is a view-consistent 3D recolouring of G_ori: a method that transfers
the frontal style to the whole head scores well at the side views; one that only fits the frontal pixels does not.

Methods (all switches of the same code, `model.tune.tune_paintings`): 3DArtmator with LoRA adapters (default),
3DArtmator with full weights (paper lr 1e-5), PTI-style baseline (L2 + LPIPS at the reference view, same
adapters and lr), and the ablations w/o localization (stage 2 from a random latent), w/o directional loss,
w/o spatial loss. Reference rows: "stage 1 only" (G_ori at the LoRA run's z*: no stylization) and
"G_ori at the true latent" (the style gap itself: the original generator at the teacher's own identity).

LPIPS for evaluation is a separate instance from the training loss: `--eval-lpips net=URI` for real weights; with
the quick settings (no weights offline) it is a randomly initialised AlexNet LPIPS with seed 1234 (training uses
seed 0), i.e. a fixed random-feature distance — compare methods within one run only, not with the paper.

Face metrics (pretrained: the face-api detector, 68 landmarks, 128-d descriptor of `model.faces`; `--no-face-metrics`
skips them). Per method and identity, `FaceScorer.score(turntable = the renders at the non-frontal yaws, their
yaws, reference = the render at the painting's pose (yaw 0), painting_face = the painting the method tuned on,
expression_stills = {})` (the bench renders no expression stills), and per novel view the descriptor cosine of the
method's render against the teacher's render at that view (`score([render_v], [yaw_v], teacher_v, None, {})`'s
identity_consistency): `teacher_identity`, a pretrained-network "same head as the teacher at the novel views".
Reported per method: detected_fraction (mean over identities), identity_consistency, likeness, pose_error_deg
(means over the identities where they exist; `*_n` = how many), teacher_identity (mean over the (identity, novel
view) pairs with a face in both renders; `teacher_identity_pairs`), and `face_flags` (identities per
`face_flags` flag). Row "ceiling: the teacher's own renders" scores the teacher the same way (its likeness and
teacher_identity are 1 by construction wherever a face is found; its other columns are what any method can
reach). A missing face makes a metric None ("None" in the Markdown), not 0.

Backbone. `--backbone head-prior` (default): G_ori is the tiny preset fitted to the procedural head
(`model.anifacegan.demo_prior`), so renders show a face to measure; `--backbone random`: the randomly initialised tiny
generator (no face: detected_fraction 0, the other face columns None). Quick defaults per backbone: head-prior 64 px and teacher
strength 0.15 — at 0.6 the colour-head update turns the head prior's renders into noise no detector reads (0/20
renders found at 64 px); 0.15 is the largest strength of a sweep (0, 0.1, 0.15, 0.2, 0.3) whose teacher renders
are detected as often as G_ori's own (0.70 of 8 identities x 5 yaws at 64 px; 32 px renders: 0.25); random 32 px
and 0.6 (the earlier protocol).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import environment, write_results
from artmator.model.backbone import Backbone, Latent
from artmator.model.delta import apply_delta
from artmator.model.encoders import LpipsConfig, load_lpips
from artmator.model.lora import DeltaConfig, attach_adapters, lora_layers
from artmator.model.metrics import ssim
from artmator.model.tune import PaintingInput, tune_paintings
from artmator.pipeline.settings import JobSettings, load_models, preset_settings

COLOUR_HEADS = ("siren.output_color.", "siren.color_layer_sine.")
EVAL_LPIPS_SEED = 1234

METHODS = ("3DArtmator (LoRA)", "3DArtmator (full)", "PTI-style", "w/o localization", "w/o directional",
           "w/o spatial")
CEILING = "ceiling: the teacher's own renders"
BACKBONES = ("head-prior", "random")
# Quick defaults per backbone (see the module docstring): resolution, teacher strength.
QUICK_DEFAULTS = {"head-prior": (64, 0.15), "random": (32, 0.6)}
FULL_TEACHER_STRENGTH = 0.6
MIN_MASK_COVERAGE = 0.01   # below this share of teacher pixels the mask is dropped (metrics over the whole image)
FACE_COLUMNS = ("detected_fraction", "identity_consistency", "likeness", "pose_error_deg", "teacher_identity")


# ---- teachers ---------------------------------------------------------------------------------------------
def colour_lora_teacher(backbone: Backbone, strength: float = 0.6, seed: int = 7, rank: int = 3) -> Backbone:
    """G_ori plus seeded low-rank updates on the colour heads only (geometry untouched): the default teacher."""
    module = attach_adapters(backbone.tunable(), DeltaConfig(rank=rank, alpha=float(rank)), 1, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, layer in lora_layers(module).items():
            if name.startswith(COLOUR_HEADS):
                layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * strength)
    module.requires_grad_(False)
    return backbone.with_tunable(module)


def weights_teacher(settings: JobSettings, spec: list[str]) -> Backbone:
    """A teacher generator from weight files: `part=URI` items (a bare URI is the generator)."""
    from artmator.pipeline.settings import load_backbone_only

    weights = dict(settings.backbone.weights)
    for item in spec:
        part, sep, uri = item.partition("=")
        weights.update({part: uri} if sep else {"generator": item})
    return load_backbone_only(replace(settings, backbone=replace(settings.backbone, weights=tuple(weights.items()))))


# ---- metrics ----------------------------------------------------------------------------------------------
def masked_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lpips_fn) -> dict[str, torch.Tensor]:
    """pred, target (B, 3, H, W) in [-1, 1]; mask (B, 1, H, W) bool -> {"lpips", "psnr", "ssim"} each (B,)."""
    m = mask.to(pred.dtype)
    se = ((pred - target) / 2).pow(2) * m                                      # [0, 1] scale
    mse = se.flatten(1).sum(1) / (3 * m.flatten(1).sum(1)).clamp_min(1)
    p, t = pred * m, target * m                                                # outside the mask: 0 (mid grey)
    return {"lpips": lpips_fn(p, t), "psnr": -10 * torch.log10(mse.clamp_min(1e-12)), "ssim": ssim(p, t)}


def eval_lpips(spec: str | None, settings: JobSettings, device):
    """The evaluation LPIPS: `net=URI` / `net` (hub cache), else a random AlexNet (quick settings, seed 1234)."""
    if spec:
        net, _, uri = spec.partition("=")
        return load_lpips(LpipsConfig(net=net, backbone_weights_uri=uri or None), device=device)
    if settings.tune.encoders.lpips.random_backbone:
        return load_lpips(LpipsConfig(net="alex", random_backbone=True), device=device, seed=EVAL_LPIPS_SEED)
    return load_lpips(LpipsConfig(net="alex"), device=device)


# ---- the protocol -----------------------------------------------------------------------------------------
def method_configs(tune) -> dict[str, object]:
    s2 = tune.stage2
    return {
        "3DArtmator (LoRA)": tune,
        "3DArtmator (full)": replace(tune, delta=DeltaConfig(mode="full", storage_dtype="float32")),
        "PTI-style": replace(tune, stage2=replace(s2, objective="pti")),
        "w/o localization": replace(tune, use_localization=False),
        "w/o directional": replace(tune, stage2=replace(s2, use_directional=False)),
        "w/o spatial": replace(tune, stage2=replace(s2, use_spatial=False)),
    }


def _repeat(latent: Latent, n: int) -> Latent:
    return {k: v.expand(n, *v.shape[1:]).contiguous() for k, v in latent.items()}


@torch.no_grad()
def score(gen: Backbone, latent: Latent, teacher_imgs, masks, yaws, lpips_fn, resolution
          ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One identity: gen(latent) at every yaw vs the teacher's renders -> (metrics (N_v,) each, renders (N_v, 3, H, W)).
    """
    n = len(yaws)
    image = gen.render_latent(_repeat(latent, n), yaws, torch.zeros(n), resolution).image
    return masked_metrics(image, teacher_imgs, masks, lpips_fn), image


def face_scores(scorer, renders: torch.Tensor, teacher_renders: torch.Tensor, yaws: torch.Tensor,
                frontal: torch.Tensor, painting: torch.Tensor) -> dict:
    """One identity's face metrics: renders / teacher_renders (N_v, 3, H, W) in [-1, 1] at `yaws`; painting (3, H, W).

    -> {"metrics": FaceMetrics of the novel-view turntable, "teacher_identity": [cosine or None per novel view]}.
    """
    novel = (~frontal).nonzero().flatten().tolist()
    ref = int(frontal.nonzero()[0])
    renders, teacher_renders = renders.cpu(), teacher_renders.cpu()
    metrics = scorer.score([renders[v] for v in novel], [float(yaws[v]) for v in novel], renders[ref],
                           painting.cpu(), {})
    pairs = [scorer.score([renders[v]], [float(yaws[v])], teacher_renders[v], None, {}).identity_consistency
             for v in novel]
    return {"metrics": metrics, "teacher_identity": pairs}


def _mean_of(values) -> tuple[float | None, int]:
    """Mean of the values that are not None, and how many there were."""
    kept = [float(v) for v in values if v is not None]
    return (sum(kept) / len(kept) if kept else None), len(kept)


def face_summary(per_identity: list[dict]) -> dict:
    """Per-identity `face_scores` -> the row's face columns (see the module docstring)."""
    from artmator.model.faces.metrics import FACE_FLAGS, face_flags

    ms = [p["metrics"] for p in per_identity]
    out: dict[str, object] = {"detected_fraction": _mean_of(m.detected_fraction for m in ms)[0]}
    for key in ("identity_consistency", "likeness", "pose_error_deg"):
        out[key], out[f"{key}_n"] = _mean_of(getattr(m, key) for m in ms)
    pairs = [c for p in per_identity for c in p["teacher_identity"]]
    out["teacher_identity"], found = _mean_of(pairs)
    out["teacher_identity_pairs"] = f"{found}/{len(pairs)}"
    flags = [face_flags(m) for m in ms]
    out["face_flags"] = {f: sum(f in fl for fl in flags) for f in FACE_FLAGS if any(f in fl for fl in flags)}
    out["faces_per_identity"] = [p["metrics"].as_dict() | {"teacher_identity": [
        None if c is None else round(c, 4) for c in p["teacher_identity"]]} for p in per_identity]
    return out


def _summary(per_view: dict[str, torch.Tensor], frontal: torch.Tensor) -> dict[str, float]:
    """per_view: metric -> (N_q, N_v) -> means over novel views and at the frontal view."""
    out = {}
    for metric, values in per_view.items():
        out[f"{metric}_novel"] = float(values[:, ~frontal].mean())
        out[f"{metric}_frontal"] = float(values[:, frontal].mean())
    return out


def run(settings: JobSettings, identities: int, views: int, resolution: int, methods: list[str], seed: int,
        psi: float, teacher_spec: list[str] | None, teacher_strength: float, teacher_seed: int,
        eval_lpips_spec: str | None, out_dir: Path | None = None, name: str | None = None,
        face_metrics: bool = True) -> list[dict]:
    settings = replace(settings, tune=replace(settings.tune, resolution=resolution))
    models = load_models(settings)
    backbone, device = models.backbone, models.device
    teacher = (weights_teacher(settings, teacher_spec) if teacher_spec
               else colour_lora_teacher(backbone, teacher_strength, teacher_seed)).to(device)
    lpips_fn = eval_lpips(eval_lpips_spec, settings, device)
    scorer = None
    if face_metrics:
        from artmator.model.faces.metrics import FaceScorer

        scorer = FaceScorer(device=device)

    # N_v yaws in [-36, 36] plus the frontal view (the painting) when N_v is even.
    yaws = torch.linspace(-36.0, 36.0, views)
    if not bool((yaws.abs() < 1e-6).any()):
        yaws = torch.sort(torch.cat([yaws, torch.zeros(1)])).values
    frontal = yaws.abs() < 1e-6
    true_latents = teacher.sample_latent(identities, torch.Generator().manual_seed(seed))
    teacher_imgs, masks, paintings = [], [], []
    with torch.no_grad():
        for i in range(identities):
            lat = {k: v[i:i + 1] for k, v in true_latents.items()}
            out = teacher.render_latent(_repeat(lat, len(yaws)), yaws, torch.zeros(len(yaws)), resolution, psi=psi)
            teacher_imgs.append(out.image), masks.append(out.opacity > 0.5)
            paintings.append(PaintingInput(f"identity-{i:03d}", out.image[frontal][:1].contiguous(), 0.0, 0.0))
    coverage = float(torch.cat(masks).float().mean())
    mask_rule = "teacher opacity > 0.5"
    if coverage < MIN_MASK_COVERAGE:   # e.g. the random tiny generator: nothing opaque, an empty mask scores 120 dB
        masks = [torch.ones_like(m) for m in masks]
        mask_rule = f"whole image (teacher opacity > 0.5 on {coverage:.1%} of the pixels only)"
    print(f"teacher: {identities} identities x {len(yaws)} yaws at {resolution}px; "
          f"mask covers {coverage:.0%} of the pixels; metrics over: {mask_rule}")

    def faces(renders_by_identity: list[tuple[int, torch.Tensor]]) -> dict:
        if scorer is None:
            return {}
        return face_summary([face_scores(scorer, r, teacher_imgs[i], yaws, frontal, paintings[i].image[0])
                             for i, r in renders_by_identity])

    def evaluate(gens_latents) -> dict[str, object]:
        per = {"lpips": [], "psnr": [], "ssim": []}
        renders = []
        for i, gen, lat in gens_latents:
            m, image = score(gen, {k: v.to(device) for k, v in lat.items()}, teacher_imgs[i], masks[i], yaws,
                             lpips_fn, resolution)
            renders.append((i, image))
            for k in per:
                per[k].append(m[k].cpu())
        return _summary({k: torch.stack(v) for k, v in per.items()}, frontal) | faces(renders)

    def show(row: dict) -> None:
        print({k: v for k, v in row.items() if k != "faces_per_identity"}, flush=True)

    rows = []
    if scorer is not None:
        rows.append({"method": CEILING, **faces(list(enumerate(teacher_imgs))), "seconds": 0.0})
        show(rows[-1])
    true_split = [{k: v[i:i + 1] for k, v in true_latents.items()} for i in range(identities)]
    rows.append({"method": "reference: G_ori at the true latent",
                 **evaluate([(i, backbone, t) for i, t in enumerate(true_split)]), "seconds": 0.0})
    show(rows[-1])
    configs = method_configs(settings.tune)
    for label in methods:
        start = time.perf_counter()
        tuned = tune_paintings(backbone, paintings, configs[label], models.encoders)
        seconds = time.perf_counter() - start
        failed = [t.painting_id for t in tuned if t.delta is None]
        if failed:
            print(f"{label}: {failed} failed ({tuned[0].error})")
        ok = [(i, t) for i, t in enumerate(tuned) if t.delta is not None]
        if label == METHODS[0]:
            rows.append({"method": "reference: stage 1 only (G_ori at z*)",
                         **evaluate([(i, backbone, t.latent) for i, t in ok]), "seconds": seconds})
            show(rows[-1])
        scored = evaluate([(i, apply_delta(backbone, t.delta), t.latent) for i, t in ok])
        rows.append({"method": label, **scored, "seconds": seconds, "failed": len(failed)})
        show(rows[-1])

    head_prior = settings.backbone.preset == "tiny" and settings.backbone.head_prior and not settings.backbone.weights
    env = environment(device) | {"preset": settings.backbone.preset,
                                 "backbone": "head-prior" if head_prior else
                                 ("weights" if settings.backbone.weights else "random"),
                                 "identities": identities,
                                 "views": len(yaws), "resolution": resolution, "seed": seed, "psi": psi,
                                 "mask": mask_rule,
                                 "stage1_steps": settings.tune.stage1.steps, "stage2_steps": settings.tune.stage2.steps,
                                 "teacher": ",".join(teacher_spec) if teacher_spec
                                 else f"colour-head LoRA rank 3, strength {teacher_strength}, seed {teacher_seed}",
                                 "eval_lpips": eval_lpips_spec or ("alex, random (seed 1234)"
                                                                   if settings.tune.encoders.lpips.random_backbone
                                                                   else "alex (hub cache)"),
                                 "face_metrics": "model.faces FaceScorer (face-api detector/landmarks/descriptor)"
                                 if scorer is not None else "off"}
    if head_prior:
        from artmator.model.anifacegan.demo_prior import CODE_VERSION

        env["head_prior"] = CODE_VERSION
    notes = ("Methods see only the frontal teacher render; *_novel = mean over identities and the non-frontal yaws "
             "in [-36°, 36°], *_frontal = the painting's own view. Mask = teacher opacity > 0.5: PSNR over mask "
             "pixels; LPIPS and SSIM with the background set to mid grey in both images. LPIPS↓ PSNR↑ SSIM↑. "
             "seconds = tuning wall time of all identities (one batch; full mode tunes one at a time). "
             "Face metrics (pretrained face-api nets) on the novel-view renders: detected = share of novel views "
             "with a face; id_consistency = descriptor cosine, each view vs the method's own frontal render; "
             "likeness = cosine, frontal render vs the painting; pose_err = mean |landmark yaw - yaw| (deg, "
             "reliable landmarks only); teacher_identity = cosine, method vs teacher render at the same novel "
             "view (pairs with a face in both). Means over what exists; None = no face to measure. "
             "↑ except pose_err.")
    columns = ["method", "lpips_novel", "psnr_novel", "ssim_novel", "lpips_frontal", "psnr_frontal", "ssim_frontal"]
    if scorer is not None:
        columns += [*FACE_COLUMNS, "teacher_identity_pairs"]
    columns.append("seconds")
    write_results(name or f"quality_{settings.backbone.preset}_{device.type}", rows, env, columns, notes=notes,
                  out_dir=out_dir)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="paper protocol: N_q 50, N_v 7, paper settings (GPU)")
    p.add_argument("--preset", default=None, help="tiny (quick default) or anifacegan (--full default)")
    p.add_argument("--weights", nargs="*", default=[], metavar="PART=URI", help="student backbone weights")
    p.add_argument("--official-root", default=None, help="folder/URI of the official AniFaceGAN files (student)")
    p.add_argument("--teacher-weights", nargs="*", default=None, metavar="PART=URI")
    p.add_argument("--teacher-strength", type=float, default=None,
                   help="default: 0.15 with the head-prior backbone (quick), else 0.6")
    p.add_argument("--teacher-seed", type=int, default=7)
    p.add_argument("--clip", default=None, help="as `artmator run --clip` (e.g. ViT-B-32:openai=URI)")
    p.add_argument("--lpips", default=None, help="training LPIPS, as `artmator run --lpips` (net=URI)")
    p.add_argument("--eval-lpips", default=None, metavar="NET[=URI]", help="evaluation LPIPS backbone weights")
    p.add_argument("--identities", type=int, default=None)
    p.add_argument("--views", type=int, default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--stage1-steps", type=int, default=None)
    p.add_argument("--stage2-steps", type=int, default=None)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--psi", type=float, default=0.7, help="truncation of the teacher's identities")
    p.add_argument("--backbone", choices=BACKBONES, default="head-prior",
                   help="G_ori of the weightless tiny preset: the procedural head prior (renders a face) or random")
    p.add_argument("--no-face-metrics", action="store_true", help="skip the pretrained face-network metrics")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a loaded small machine OpenMP spin-waits slow 2 threads 5-10x)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--name", default=None, help="result file name (default quality_<preset>_<device>)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    preset = a.preset or ("anifacegan" if a.full else "tiny")
    settings = preset_settings("paper" if a.full else "quick", preset)
    weights = dict(settings.backbone.weights)
    if a.official_root:
        from artmator.model import official_weights

        weights.update(official_weights(a.official_root))
    weights.update(dict(w.split("=", 1) for w in a.weights))
    settings = replace(settings, device=a.device,
                       backbone=replace(settings.backbone, weights=tuple(weights.items()),
                                        head_prior=a.backbone == "head-prior"))
    if a.clip or a.lpips:
        from artmator.model.encoders import ClipConfig, LpipsConfig

        enc = settings.tune.encoders
        enc = replace(enc, clip=(ClipConfig.from_spec(a.clip),) if a.clip else enc.clip,
                      lpips=LpipsConfig.from_spec(a.lpips) if a.lpips else enc.lpips)
        settings = replace(settings, tune=replace(settings.tune, encoders=enc))
    quick_res, quick_strength = QUICK_DEFAULTS[a.backbone]
    defaults = {"identities": 50, "views": 7, "resolution": settings.tune.resolution or 128, "s1": None, "s2": None,
                "strength": FULL_TEACHER_STRENGTH} if a.full else \
        {"identities": 3, "views": 5, "resolution": quick_res, "s1": 40, "s2": 20, "strength": quick_strength}
    s1 = a.stage1_steps if a.stage1_steps is not None else defaults["s1"]
    s2 = a.stage2_steps if a.stage2_steps is not None else defaults["s2"]
    tune = settings.tune
    if s1 is not None:
        tune = replace(tune, stage1=replace(tune.stage1, steps=s1))
    if s2 is not None:
        tune = replace(tune, stage2=replace(tune.stage2, steps=s2))
    settings = replace(settings, tune=tune)
    run(settings, a.identities or defaults["identities"], a.views or defaults["views"],
        a.resolution or defaults["resolution"], a.methods, a.seed, a.psi, a.teacher_weights,
        a.teacher_strength if a.teacher_strength is not None else defaults["strength"], a.teacher_seed,
        a.eval_lpips, a.out_dir, a.name, face_metrics=not a.no_face_metrics)


if __name__ == "__main__":
    main()
