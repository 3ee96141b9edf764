"""The distributions behind the four face-metric thresholds (`model.faces.metrics.FaceMetricThresholds`).

    python -m bench.face_thresholds                  # CPU, one torch thread, ~3-5 min on a loaded 2-core VM
    python -m bench.face_thresholds --sizes 64 --resolutions 64 --identities 1 --sweep-frames 3 \\
        --no-backbone-turntables                     # toy size (the smoke test)

Everything is read the way `FaceScorer.score` reads renders: each image resized to 256 px, tiled 3x3 at 160 px on
a 512-px detector canvas, best box per tile, face-api's dlib-aligned crop for the descriptor, `alignedRect` for
the expression net (`FaceScorer` internals, so the numbers are the metric's own). Images:

* faces, two people: scikit-image's astronaut photo (Eileen Collins) and its painted demo versions
  (`manifests/demo/astronaut_{gouache,oil,poster}.png`); the cameraman (`skimage.data.camera()`) and his sepia demo
  version. Each as a face-framed square (the framing renders have) at `--framings` x the aligned side, resized to
  `--sizes` px, and mirrored.
* non-faces: flat grey, uniform noise, smooth noise, the coffee cup, the rocket, brick, grass, the Hubble deep
  field, a cat's face (an animal face), the back of the procedural head (`reference_render(180°)`), and renders
  of the randomly initialised tiny generator (no face).
* renders of known pose: the analytic procedural head `model.anifacegan.demo_prior.reference_render(yaw, res)` over a yaw
  sweep at `--resolutions`; "not turning" = its frontal render at every commanded yaw.
* the head-prior backbone G_ori (`load_backbone("tiny", weights=tiny_head_weights())`) at `--identities` latents
  (ψ 0.7): turntables, and neutral vs `happiness` stills (the smile edit `artmator` renders).

Parts (each a table in `bench/results/face_thresholds_cpu.{json,md}`):

1. identity (min_identity_consistency 0.9): descriptor cosines by pair group — the same image re-read (other size /
   framing), its mirror, photo vs painted, painted vs painted, astronaut vs cameraman, face vs non-face, and the
   analytic head's frames vs its frontal render (what identity_consistency reads on a perfectly 3D-consistent
   head). Non-faces without a detection get the descriptor of their whole image (what the net would say if
   detection were bypassed). Also the raw descriptor norms (the 0.6-distance <-> cosine conversion).
2. pose (max_pose_error_deg 8): `FaceScorer.score(...).pose_error_deg` of turning vs non-turning analytic heads per
   resolution and sweep, the per-frame |landmark yaw - yaw| distribution, and the same for G_ori turntables.
3. detection (min_detected_fraction 0.8, RENDER_MIN_CONFIDENCE 0.3): the best detector score per image by group
   (read at threshold 0.05, so scores under 0.3 are seen), and the detected fraction of whole turntables (face
   heads vs random-generator heads).
4. smile (min_smile_gain 0.05): P(happy) of the `happiness` still minus the neutral render's, per identity; null
   edits: the same render 3° to the side, the render itself (read at another position of the detector canvas),
   and the `neutral` expression code where it differs from the sampled one. Also
   P(happy) of the photos and paintings (the astronaut smiles, the cameraman does not): what a real smile reads.
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from bench.common import environment, markdown_table, write_tables

DEMO = Path(__file__).resolve().parents[1] / "manifests" / "demo"
LOW_CONFIDENCE = 0.05            # detector threshold used to *see* sub-threshold scores
# Face squares (centre x, centre y, side) in the source images: FaceAnalyzer's alignment, rounded (as in
# tests/model/faces/test_metrics.py); the demo paintings are 256-px face crops, framed alike.
ASTRONAUT_SQUARE = (223, 105, 157)
CAMERA_SQUARE = (232, 150, 220)
DEMO_SQUARE = (128, 116, 192)
SMILE, NEUTRAL = "happiness", "neutral"
SMALL_CROP = 128                 # identity pairs are also split by whether a crop is smaller than this


# ---- images -----------------------------------------------------------------------------------------------
def _square(image: Image.Image, cx: float, cy: float, side: float, size: int) -> Image.Image:
    half = side / 2
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return image.crop(box).resize((size, size), Image.Resampling.LANCZOS)


def face_images(sizes: Sequence[int], framings: Sequence[float]) -> list[dict]:
    """Face crops: {"name", "person", "style", "image"} for every source x framing x size x (plain, mirrored)."""
    import skimage.data

    sources = [
        ("astronaut photo", "astronaut", "photo", Image.fromarray(skimage.data.astronaut()), ASTRONAUT_SQUARE),
        ("cameraman photo", "cameraman", "photo", Image.fromarray(skimage.data.camera()).convert("RGB"),
         CAMERA_SQUARE),
    ]
    for path in sorted(DEMO.glob("*.png")):
        person = "cameraman" if path.stem.startswith("cameraman") else "astronaut"
        sources.append((path.stem, person, "painted", Image.open(path).convert("RGB"), DEMO_SQUARE))
    out = []
    for name, person, style, img, (cx, cy, side) in sources:
        for framing in framings:
            for size in sizes:
                crop = _square(img, cx, cy, side * framing, size)
                for mirror in (False, True):
                    out.append({"name": f"{name} x{framing:g} {size}px" + (" mirrored" if mirror else ""),
                                "source": name, "person": person, "style": style, "mirror": mirror,
                                "framing": framing, "size": size,
                                "image": crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else crop})
    return out


def nonface_images(size: int, random_renders: Sequence[torch.Tensor] = ()) -> list[dict]:
    """Images without a human face: {"name", "group", "image"}."""
    import skimage.data

    from artmator.model.anifacegan.demo_prior import reference_render
    from artmator.model.images import to_pil

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    smooth = Image.fromarray(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC)

    def fit(a: np.ndarray) -> Image.Image:
        img = Image.fromarray(a).convert("RGB")
        s = min(img.size)
        return img.crop(((img.width - s) // 2, (img.height - s) // 2, (img.width + s) // 2,
                         (img.height + s) // 2)).resize((size, size), Image.Resampling.LANCZOS)

    images = {
        "flat grey": Image.new("RGB", (size, size), (128, 128, 128)),
        "uniform noise": Image.fromarray(noise),
        "smooth noise": smooth.filter(ImageFilter.GaussianBlur(size / 64)),
        "coffee": fit(skimage.data.coffee()),
        "rocket": fit(skimage.data.rocket()),
        "brick": fit(skimage.data.brick()),
        "grass": fit(skimage.data.grass()),
        "hubble deep field": fit(skimage.data.hubble_deep_field()),
        "cat's face": fit(skimage.data.chelsea()[:, 75:375]),
        "back of the procedural head": to_pil(reference_render(180.0, size)[0] * 2 - 1),
    }
    out = [{"name": k, "group": "non-face image" if k != "back of the procedural head" else "non-face render",
            "image": v} for k, v in images.items()]
    out += [{"name": f"random tiny generator #{i}", "group": "non-face render", "image": r}
            for i, r in enumerate(random_renders)]
    return out


class Renders:
    """The analytic head's renders, cached by (yaw, resolution): (3, H, W) in [-1, 1]."""

    def __init__(self):
        self._cache: dict[tuple[float, int], torch.Tensor] = {}

    def __call__(self, yaw: float, res: int) -> torch.Tensor:
        from artmator.model.anifacegan.demo_prior import reference_render

        key = (round(float(yaw), 4), res)
        if key not in self._cache:
            self._cache[key] = reference_render(float(yaw), res)[0] * 2 - 1
        return self._cache[key]


# ---- reading faces the way FaceScorer does ----------------------------------------------------------------
def read_faces(scorer, images: Sequence) -> list[dict]:
    """Per image: best detector score (>= the scorer's threshold, else 0), landmark yaw, reliability, unit
    descriptor (of the face crop, or of the whole image without a detection) and its raw norm."""
    from artmator.model.faces.descriptor import describe
    from artmator.model.faces.metrics import _crop, _descriptor_box, working_image

    works = [working_image(im) for im in images]
    faces = scorer._find_faces(works)
    crops = [_crop(w, f, _descriptor_box(f)) if f is not None else w for w, f in zip(works, faces)]
    desc = describe(crops, scorer.descriptor_net)
    norms = np.linalg.norm(desc, axis=1)
    return [{"score": 0.0 if f is None else f.score, "yaw": None if f is None else f.pose.yaw_deg,
             "reliable": f is not None and f.reliable, "descriptor": d / max(n, 1e-12), "norm": float(n)}
            for f, d, n in zip(faces, desc, norms)]


def stats(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "min": float(v.min()), "p05": float(np.percentile(v, 5)),
            "median": float(np.median(v)), "p95": float(np.percentile(v, 95)), "max": float(v.max()),
            "mean": float(v.mean())}


# ---- 1. identity ------------------------------------------------------------------------------------------
def identity_part(low_scorer, faces: list[dict], nonfaces: list[dict], renders: Renders, sweep: Sequence[float],
                  resolutions: Sequence[int], threshold: float) -> tuple[list[dict], dict]:
    read = read_faces(low_scorer, [f["image"] for f in faces] + [n["image"] for n in nonfaces])
    fr, nr = read[:len(faces)], read[len(faces):]
    ok = [r["score"] >= threshold for r in fr]
    groups: dict[str, list[float]] = {k: [] for k in (
        "same image, other size / framing", "same image, mirrored", "astronaut photo vs painted",
        "astronaut painted vs painted (other style)", "cameraman photo vs sepia drawing", "astronaut vs cameraman",
        "face vs non-face", "non-face vs non-face")}
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            if not (ok[i] and ok[j]):
                continue
            a, b = faces[i], faces[j]
            c = float(np.dot(fr[i]["descriptor"], fr[j]["descriptor"]))
            if a["person"] != b["person"]:
                key = "astronaut vs cameraman"
            elif a["source"] == b["source"]:
                key = "same image, mirrored" if a["mirror"] != b["mirror"] else "same image, other size / framing"
            elif a["person"] == "cameraman":
                key = "cameraman photo vs sepia drawing"
            elif "photo" in (a["style"], b["style"]):
                key = "astronaut photo vs painted"
            else:
                key = "astronaut painted vs painted (other style)"
            groups[key].append(c)
            small = min(a["size"], b["size"]) < SMALL_CROP
            groups.setdefault(f"{key}: {'a crop under' if small else 'both crops >='} {SMALL_CROP}px", []).append(c)
    for i in range(len(faces)):
        if ok[i]:
            groups["face vs non-face"] += [float(np.dot(fr[i]["descriptor"], n["descriptor"])) for n in nr]
    for i in range(len(nr)):
        groups["non-face vs non-face"] += [float(np.dot(nr[i]["descriptor"], nr[j]["descriptor"]))
                                           for j in range(i + 1, len(nr))]
    # The analytic head: every sweep frame vs its frontal render (a perfectly 3D-consistent identity).
    for res in resolutions:
        imgs = [renders(0.0, res)] + [renders(y, res) for y in sweep if abs(y) > 1e-6]
        hr = read_faces(low_scorer, imgs)
        if hr[0]["score"] >= threshold:
            groups[f"procedural head: frame vs frontal, {res}px"] = [
                float(np.dot(hr[0]["descriptor"], r["descriptor"])) for r in hr[1:] if r["score"] >= threshold]
    rows = [{"pairs": k, **stats(v), "share >= 0.9": (float(np.mean(np.asarray(v) >= 0.9)) if v else None)}
            for k, v in groups.items()]
    from artmator.model.faces.metrics import cosine_threshold_for_distance

    norms = [r["norm"] for r, o in zip(fr, ok) if o]
    facts = {"faces": len(faces), "faces_detected_at_threshold": int(sum(ok)),
             "undetected_faces": [f["name"] for f, o in zip(faces, ok) if not o],
             "descriptor_norm": stats(norms),
             "cosine_of_distance_0.6_at_norms": {f"{n:.2f}": cosine_threshold_for_distance(0.6, n)
                                                 for n in (min(norms, default=1.44), 1.44, max(norms, default=1.44))}}
    return rows, facts


# ---- 2. pose ----------------------------------------------------------------------------------------------
def pose_part(scorer, low_scorer, renders: Renders, sweeps: dict[str, list[float]], resolutions: Sequence[int],
              backbone_turntables: dict[str, tuple[torch.Tensor, list[float]]], threshold: float
              ) -> tuple[list[dict], dict]:
    rows = []
    for sweep_name, yaws in sweeps.items():
        for res in resolutions:
            turning = [renders(y, res) for y in yaws]
            still = [renders(0.0, res)] * len(yaws)
            for label, frames in (("turning", turning), ("not turning (frontal at every yaw)", still)):
                m = scorer.score(frames, yaws, renders(0.0, res), None, {})
                per = read_faces(low_scorer, frames)
                err = [abs(r["yaw"] - y) for r, y in zip(per, yaws) if r["score"] >= threshold and r["reliable"]]
                rows.append({"head": f"analytic, {label}", "sweep": sweep_name, "resolution": res,
                             "pose_error_deg": m.pose_error_deg, "detected_fraction": m.detected_fraction,
                             "frames_used": len(err), "frame_err_median": stats(err).get("median"),
                             "frame_err_max": stats(err).get("max")})
    for name, (frames, yaws) in backbone_turntables.items():
        m = scorer.score(list(frames), yaws, frames[len(frames) // 2], None, {})
        per = read_faces(low_scorer, list(frames))
        err = [abs(r["yaw"] - y) for r, y in zip(per, yaws) if r["score"] >= threshold and r["reliable"]]
        rows.append({"head": name, "sweep": f"±{max(abs(y) for y in yaws):g}° x {len(yaws)}",
                     "resolution": frames.shape[-1], "pose_error_deg": m.pose_error_deg,
                     "detected_fraction": m.detected_fraction, "frames_used": len(err),
                     "frame_err_median": stats(err).get("median"), "frame_err_max": stats(err).get("max")})
    turning = [r["pose_error_deg"] for r in rows if r["head"] == "analytic, turning"]
    still = [r["pose_error_deg"] for r in rows if r["head"].startswith("analytic, not")]
    facts = {"analytic_turning_pose_error": stats(turning), "analytic_not_turning_pose_error": stats(still)}
    return rows, facts


# ---- 3. detection -----------------------------------------------------------------------------------------
def detection_part(low_scorer, scorer, faces: list[dict], nonfaces: list[dict], renders: Renders,
                   sweep: Sequence[float], resolutions: Sequence[int], backbone_frames: dict[str, list],
                   turntables: dict[str, tuple[list, list[float]]]) -> tuple[list[dict], list[dict], dict]:
    groups: dict[str, list] = {}
    for f in faces:
        groups.setdefault(f"{f['style']} face", []).append(f["image"])
    for res in resolutions:
        groups.setdefault("procedural head (analytic) renders", []).extend(renders(y, res) for y in sweep)
    for name, frames in backbone_frames.items():
        groups.setdefault(name, []).extend(frames)
    for n in nonfaces:
        groups.setdefault(n["group"], []).append(n["image"])
    rows = []
    for g, imgs in groups.items():
        s = [r["score"] for r in read_faces(low_scorer, imgs)]
        arr = np.asarray(s)
        rows.append({"images": g, **{k: v for k, v in stats(s).items() if k != "mean"},
                     "share >= 0.3": float(np.mean(arr >= 0.3)), "share >= 0.5": float(np.mean(arr >= 0.5))})
    tt_rows = []
    for name, (frames, yaws) in turntables.items():
        m = scorer.score(frames, yaws, frames[len(frames) // 2], None, {})
        tt_rows.append({"turntable": name, "frames": len(frames), "detected_fraction": m.detected_fraction})
    best_nonface = max((r["max"] for r in rows if r["images"].startswith("non-face") and r.get("n")), default=None)
    facts = {"best_nonface_score": best_nonface}
    return rows, tt_rows, facts


# ---- 4. smile ---------------------------------------------------------------------------------------------
def smile_part(scorer, backbone, identities: int, resolutions: Sequence[int], psi: float, seed: int
               ) -> tuple[list[dict], dict]:
    from artmator.model.anifacegan.expressions import load_expression

    lat = backbone.sample_latent(identities, torch.Generator().manual_seed(seed))
    smile, neutral = load_expression(SMILE), load_expression(NEUTRAL)
    rows = []
    with torch.no_grad():
        for res in resolutions:
            for i in range(identities):
                li = {k: v[i:i + 1] for k, v in lat.items()}

                def still(latent, yaw=0.0):
                    return backbone.render_latent(latent, torch.full((1,), yaw), torch.zeros(1), res, psi=psi).image[0]

                base = still(li)
                stills = {"smile": still(backbone.with_expression(li, smile)), "no edit, yaw +3°": still(li, 3.0),
                          "itself (read at another canvas position)": base}
                if not torch.equal(backbone.with_expression(li, neutral)["z_exp"], li["z_exp"]):
                    stills["neutral code"] = still(backbone.with_expression(li, neutral))
                for edit, img in stills.items():
                    m = scorer.score([base], [0.0], base, None, {SMILE: img})
                    happy_ref = m.expressions.get(NEUTRAL, {}).get("happy")
                    happy_still = m.expressions.get(SMILE, {}).get("happy")
                    rows.append({"identity": i, "resolution": res, "still": edit, "p_happy_reference": happy_ref,
                                 "p_happy_still": happy_still,
                                 "gain": None if happy_ref is None or happy_still is None else happy_still - happy_ref})
    by_edit = {e: stats([r["gain"] for r in rows if r["still"] == e]) for e in dict.fromkeys(r["still"] for r in rows)}
    return rows, {"gain_by_still": by_edit}


def photo_smiles(scorer, faces: list[dict]) -> tuple[list[dict], dict]:
    """Photos and paintings (framing 1, not mirrored): P(happy) (the astronaut smiles, the cameraman does not), the
    gain of each image read against itself (the null on real faces), and astronaut minus cameraman P(happy) at the
    same size (a real smile, though of another sitter)."""
    per = {}
    for f in faces:
        if f["mirror"] or f["framing"] != 1.0:
            continue
        m = scorer.score([f["image"]], [0.0], f["image"], None, {SMILE: f["image"]})
        ref, still = m.expressions.get(NEUTRAL, {}).get("happy"), m.expressions.get(SMILE, {}).get("happy")
        per[f["name"]] = {"person": f["person"], "size": f["size"], "p_happy": ref,
                          "self_gain": None if ref is None or still is None else still - ref}
    rows = [{"still": "photos/paintings: itself (read at another canvas position)",
             **stats([v["self_gain"] for v in per.values()])},
            {"still": "photos/paintings: smiling astronaut minus neutral cameraman, same size",
             **stats([a["p_happy"] - c["p_happy"] for a in per.values() for c in per.values()
                      if a["person"] == "astronaut" and c["person"] == "cameraman" and a["size"] == c["size"]
                      and a["p_happy"] is not None and c["p_happy"] is not None])}]
    return rows, per


# ---- output -----------------------------------------------------------------------------------------------
COLUMNS = {
    "identity": ["pairs", "n", "min", "p05", "median", "p95", "max", "share >= 0.9"],
    "pose": ["head", "sweep", "resolution", "pose_error_deg", "detected_fraction", "frames_used",
             "frame_err_median", "frame_err_max"],
    "detection": ["images", "n", "min", "p05", "median", "p95", "max", "share >= 0.3", "share >= 0.5"],
    "turntable detection": ["turntable", "frames", "detected_fraction"],
    "smile": ["still", "n", "min", "p05", "median", "p95", "max", "mean"],
}


def write(name: str, env: dict, settings: dict, tables: dict[str, list[dict]], facts: dict,
          out_dir: Path | None = None) -> tuple[Path, Path]:
    return write_tables(name, env, settings, tables, COLUMNS, facts, None, out_dir)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="face crop sizes (px)")
    p.add_argument("--framings", type=float, nargs="+", default=[1.0, 1.3],
                   help="crop side as a multiple of the aligned face square")
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256], help="analytic head renders (px)")
    p.add_argument("--sweep-frames", type=int, default=9, help="frames of the ±20° sweep (the turntable's range)")
    p.add_argument("--identities", type=int, default=8, help="head-prior G_ori identities (turntables, smiles)")
    p.add_argument("--backbone-resolution", type=int, default=64, help="G_ori renders (bench.quality's size)")
    p.add_argument("--no-backbone-turntables", action="store_true",
                   help="skip the G_ori / random-generator turntables (smiles still use G_ori)")
    p.add_argument("--psi", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a loaded small machine OpenMP spin-waits slow 2 threads 5-10x)")
    p.add_argument("--name", default="face_thresholds_cpu")
    p.add_argument("--out-dir", type=Path, default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    from artmator.model import load_backbone
    from artmator.model.faces.analyzer import FaceAnalysisConfig
    from artmator.model.faces.metrics import RENDER_MIN_CONFIDENCE, FaceMetricThresholds, FaceScorer
    from artmator.model.anifacegan.demo_prior import CODE_VERSION, tiny_head_weights

    t0 = time.perf_counter()
    load_avg = " ".join(f"{v:.1f}" for v in os.getloadavg())
    scorer = FaceScorer()
    low_scorer = FaceScorer(FaceAnalysisConfig(min_confidence=LOW_CONFIDENCE))
    threshold = RENDER_MIN_CONFIDENCE
    renders = Renders()
    sweep = [float(y) for y in torch.linspace(-20.0, 20.0, a.sweep_frames)]
    bench_sweep = [float(y) for y in torch.linspace(-36.0, 36.0, 5)]
    sweeps = {f"±20° x {len(sweep)}": sweep, "±36° x 5 (bench.quality)": bench_sweep}

    g_ori = load_backbone("tiny", weights=tiny_head_weights())
    g_rand = load_backbone("tiny")
    res_b = a.backbone_resolution
    lat = g_ori.sample_latent(a.identities, torch.Generator().manual_seed(a.seed))
    backbone_frames: dict[str, list] = {}
    backbone_turntables: dict[str, tuple[torch.Tensor, list[float]]] = {}
    random_tts: dict[str, tuple[torch.Tensor, list[float]]] = {}
    random_stills: list[torch.Tensor] = []
    with torch.no_grad():
        for i in range(a.identities):
            li = {k: v[i:i + 1].expand(len(bench_sweep), *v.shape[1:]) for k, v in lat.items()}
            yt = torch.tensor(bench_sweep)
            frames = g_ori.render_latent(li, yt, torch.zeros_like(yt), res_b, psi=a.psi).image
            rand = g_rand.render_latent(li, yt, torch.zeros_like(yt), res_b, psi=a.psi).image
            backbone_frames.setdefault(f"head-prior G_ori renders ({res_b}px)", []).extend(frames)
            random_stills.append(rand[len(bench_sweep) // 2])
            if not a.no_backbone_turntables:
                backbone_turntables[f"head-prior G_ori #{i}"] = (frames, bench_sweep)
                random_tts[f"random tiny generator #{i}"] = (list(rand), bench_sweep)
    faces = face_images(a.sizes, a.framings)
    nonfaces = nonface_images(max(a.sizes), random_stills)
    print(f"{len(faces)} face crops, {len(nonfaces)} non-face images; loads {time.perf_counter() - t0:.1f}s",
          flush=True)

    tables, facts = {}, {}
    tables["identity"], facts["identity"] = identity_part(low_scorer, faces, nonfaces, renders, sweep,
                                                          a.resolutions, threshold)
    print("identity done", f"{time.perf_counter() - t0:.0f}s", flush=True)
    tables["pose"], facts["pose"] = pose_part(scorer, low_scorer, renders, sweeps, a.resolutions,
                                              backbone_turntables, threshold)
    print("pose done", f"{time.perf_counter() - t0:.0f}s", flush=True)
    turntables = {f"analytic head {res}px, ±20° x {len(sweep)}": ([renders(y, res) for y in sweep], sweep)
                  for res in a.resolutions}
    turntables |= {k: (list(v[0]), v[1]) for k, v in backbone_turntables.items()} | random_tts
    tables["detection"], tables["turntable detection"], facts["detection"] = detection_part(
        low_scorer, scorer, faces, nonfaces, renders, sweep, a.resolutions, backbone_frames, turntables)
    print("detection done", f"{time.perf_counter() - t0:.0f}s", flush=True)
    smile_rows, facts["smile"] = smile_part(scorer, g_ori, a.identities, [res_b], a.psi, a.seed)
    photo_rows, facts["smile"]["photos_and_paintings"] = photo_smiles(scorer, faces)
    tables["smile"] = [{"still": f"head-prior G_ori: {k}", **v} for k, v in facts["smile"]["gain_by_still"].items()]
    tables["smile"] += photo_rows
    facts["smile"]["per_identity"] = smile_rows
    facts["thresholds"] = asdict(FaceMetricThresholds()) | {"render_min_confidence": threshold}
    facts["seconds"] = time.perf_counter() - t0
    print("smile done", f"{facts['seconds']:.0f}s", flush=True)

    env = environment(torch.device("cpu")) | {"load_average_1_5_15_at_start": load_avg, "head_prior": CODE_VERSION}
    settings = {"sizes": a.sizes, "framings": a.framings, "resolutions": a.resolutions,
                "sweep": f"±20° x {len(sweep)}", "identities": a.identities, "backbone_resolution": res_b,
                "psi": a.psi, "seed": a.seed, "threads": a.threads}
    json_path, md_path = write(a.name, env, settings, tables, facts, a.out_dir)
    for t, rs in tables.items():
        print(f"\n{t}\n" + "\n".join(markdown_table(rs, COLUMNS[t])))
    print(f"\nwrote {json_path} and {md_path}")
    return {"tables": tables, "facts": facts}


if __name__ == "__main__":
    main()
