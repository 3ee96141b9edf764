"""Does the embedded demo read as a face? The demo's tuning path, in-process, judged by the pretrained face nets.

    python -m bench.demo_faces --label before        # writes the BEFORE column (keeps an existing AFTER)
    python -m bench.demo_faces --label after         # ... the AFTER column
    python -m bench.demo_faces --paintings 1 --frames 2 --stage1-steps 1 --stage2-steps 1 --no-whole \
        --out-dir /tmp/x                             # toy size (smoke)

Path (as `artmator run` on `manifests/demo/manifest.parquet` with `pipeline.settings.quick_settings()`, one
painting per batch): `load_models` (the procedural head prior: fitted into a fresh temporary cache unless
`--cached-prior`, so its fit time is part of the wall time) -> per painting `pipeline.inputs.painting_input`
(with `LazyFaceAnalyzer`) -> `model.tune.tune_paintings` -> the renders `pipeline.painting.painting_files` makes
(`apply_delta`, reference view, turntable over `turntable_angles`, the `happiness` still; `render_latent` is
called directly so the opacity comes back too). `--whole` adds a whole painting that goes through face
detection and alignment (`tests/pipeline/faces_fixtures.whole_painting()`, no crop and no pose in its row).

Measures per painting (FaceAnalyzer's SSD detector, face-api weights):

* det_rate — share of turntable frames with a face at confidence >= 0.5 whose box centre lies on the head
  (inside the bounding box of opacity > 0.5). Frames are upscaled (bicubic) to >= 256 px before detection;
  `det_rate_native` is the same on the native render (the detector resizes every input to 512² itself).
  `FaceAnalyzer.faces` thresholds before its NMS, so running the detector once at 0.05 and cutting at 0.5
  gives the same faces as `FaceAnalyzer(min_confidence=0.5)`.
* conf_mean / conf_min — the best on-head detection score per frame (0 if none above 0.05), mean and min.
* p_happy_smile / p_happy_neutral — P(happy) of face-api's expression net on the detector box of the
  happiness still and of the neutral reference render (the whole render when no face is found at 0.05).
* psnr_tune — the pipeline's reference-view PSNR (`metrics["psnr_ref"]`, at the tuning resolution);
  psnr_render — reference render vs the painting's aligned crop at the render resolution.
* colour_err — |mean RGB| difference (0..255 scale, L2) between the central half of the painting crop and of
  the reference render (layout-sensitive: a head smaller than the painted face raises it).
* palette_w1 — the painting's palette in the render regardless of layout: per RGB channel, the 1-D
  Wasserstein distance between the pixel values of the painting crop and of the reference render (0..255),
  averaged over channels.
* seconds / cpu_s — wall and process CPU time (all threads) of painting_input + tuning + renders per painting;
  `prior_fit_s` / `prior_fit_cpu_s` the head prior fit (once per run); `demo_path_s` / `demo_path_cpu_s` the
  prior fit plus every painting (the detection and expression measurements are not counted). On a shared
  machine the CPU time is the steadier of the two; compare runs side by side.

A contact sheet per label: painting | reference | 6 turntable frames | happiness still, one row per painting.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import RESULTS, _fmt, environment

DEMO_MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "demo" / "manifest.parquet"
THRESHOLD = 0.5
LOW = 0.05
NAME = "demo_faces_cpu"
METRICS = ("det_rate", "det_rate_native", "conf_mean", "conf_min", "p_happy_smile", "p_happy_neutral",
           "psnr_tune", "psnr_render", "colour_err", "palette_w1", "seconds", "cpu_s")


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def upscaled(a: np.ndarray, side: int) -> np.ndarray:
    if a.shape[0] >= side:
        return a
    return np.asarray(Image.fromarray(a).resize((side, side), Image.Resampling.BICUBIC))


def palette_w1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over RGB of the 1-D Wasserstein distance between two images' pixel values: (3, H, W) in [-1, 1]
    (same size) -> 0..255."""
    x = ((a.clamp(-1, 1) + 1) * 127.5).flatten(1).sort(dim=1).values
    y = ((b.clamp(-1, 1) + 1) * 127.5).flatten(1).sort(dim=1).values
    return float((x - y).abs().mean())


def head_box(opacity: torch.Tensor) -> tuple[float, float, float, float] | None:
    """Bounding box (x0, y0, x1, y1) of opacity > 0.5 in relative coordinates, or None."""
    ys, xs = torch.nonzero(opacity.reshape(opacity.shape[-2:]) > 0.5, as_tuple=True)
    if len(xs) == 0:
        return None
    h, w = opacity.shape[-2:]
    return float(xs.min()) / w, float(ys.min()) / h, float(xs.max() + 1) / w, float(ys.max() + 1) / h


def best_face(detector, a: np.ndarray, box_rel) -> tuple[float, tuple | None]:
    """(best score of a face whose centre is on the head, its box in a's pixels) - (0, None) if none >= LOW."""
    for f in detector.detect(a, LOW, 10):
        x, y, w, h = (float(v) for v in f.box)
        cx, cy = (x + w / 2) / a.shape[1], (y + h / 2) / a.shape[0]
        if box_rel is None or (box_rel[0] <= cx <= box_rel[2] and box_rel[1] <= cy <= box_rel[3]):
            return float(f.score), (x, y, w, h)
    return 0.0, None


def p_happy(a: np.ndarray, box) -> float:
    from artmator.model.faces.expression import classify

    crop = a
    if box is not None:
        x, y, w, h = box
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        x1, y1 = min(a.shape[1], int(round(x + w))), min(a.shape[0], int(round(y + h)))
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            crop = a[y0:y1, x0:x1]
    return classify([np.ascontiguousarray(crop)])[0]["happy"]


def whole_painting_task(folder: Path):
    from artmator.pipeline.manifest import PaintingTask
    from tests.pipeline.faces_fixtures import whole_painting

    path = folder / "whole_astronaut.png"
    whole_painting().save(path)
    return PaintingTask(row=99, painting_id="whole-astronaut", image_uri=str(path), expressions=None)


def run(args) -> tuple[dict, list[np.ndarray]]:
    from artmator.model.delta import apply_delta
    from artmator.model.faces.analyzer import FaceAnalyzer
    from artmator.model.metrics import psnr
    from artmator.model.render import turntable_angles
    from artmator.model.tune import tune_paintings
    from artmator.pipeline.inputs import LazyFaceAnalyzer, painting_input
    from artmator.pipeline.manifest import load_manifest
    from artmator.pipeline.settings import load_models, quick_settings, resolve_expressions

    settings = quick_settings()
    tune = settings.tune
    if args.stage1_steps is not None:
        tune = replace(tune, stage1=replace(tune.stage1, steps=args.stage1_steps))
    if args.stage2_steps is not None:
        tune = replace(tune, stage2=replace(tune.stage2, steps=args.stage2_steps))
    if args.resolution is not None:
        tune = replace(tune, resolution=args.resolution)
    render = settings.render if args.frames is None else replace(settings.render, turntable_frames=args.frames)
    settings = replace(settings, tune=tune, render=render)

    tmp = Path(tempfile.mkdtemp(prefix="demo_faces_"))
    old_cache = os.environ.get("ARTMATOR_CACHE")
    if not args.cached_prior:
        os.environ["ARTMATOR_CACHE"] = str(tmp / "cache")
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        models = load_models(settings)
    finally:
        if old_cache is None:
            os.environ.pop("ARTMATOR_CACHE", None)
        else:
            os.environ["ARTMATOR_CACHE"] = old_cache
    prior_s, prior_cpu = time.perf_counter() - t0, time.process_time() - c0
    backbone = models.backbone
    expressions = resolve_expressions(backbone, render.expressions)
    smile = expressions["happiness"]
    tasks, problems = load_manifest(str(DEMO_MANIFEST))
    assert not problems, problems
    tasks = tasks[: args.paintings]
    if args.whole:
        tasks.append(whole_painting_task(tmp))
    faces = LazyFaceAnalyzer()
    detector = FaceAnalyzer().detector
    resolution = tune.resolution or backbone.config.train_resolution
    rows, sheet = {}, []
    for task in tasks:
        t1, c1 = time.perf_counter(), time.process_time()
        tune_input, face_input = painting_input(task, resolution, settings.image, faces, framing=backbone.face_framing)
        [tuned] = tune_paintings(backbone, [tune_input], tune, models.encoders)
        g = apply_delta(backbone, tuned.delta)
        latent = tuned.latent
        yaw, pitch = tuned.yaw_deg, tuned.pitch_deg
        yaws, pitches = turntable_angles(render, yaw, pitch)
        kw = dict(psi=render.psi, chunk_rays=render.chunk_rays)
        with torch.no_grad():
            ref = g.render_latent(latent, yaw, pitch, render.resolution, **kw)
            frames = [g.render_latent(latent, float(y), float(p), render.resolution, **kw)
                      for y, p in zip(yaws, pitches)]
            still = g.render_latent(g.with_expression(latent, smile), yaw, pitch, render.resolution, **kw)
        seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
        big = max(256, render.resolution)
        scores, native = [], []
        for f in frames:
            a = to_uint8(f.image[0])
            scores.append(best_face(detector, upscaled(a, big), head_box(f.opacity))[0])
            if args.native:
                native.append(best_face(detector, a, head_box(f.opacity))[0])
        ref_a, still_a = upscaled(to_uint8(ref.image[0]), big), upscaled(to_uint8(still.image[0]), big)
        _, ref_box = best_face(detector, ref_a, head_box(ref.opacity))
        _, still_box = best_face(detector, still_a, head_box(still.opacity))
        target = painting_input(task, render.resolution, settings.image, faces, framing=backbone.face_framing)[0].image
        r = render.resolution
        c = slice(r // 4, r - r // 4)
        mean_t = ((target[0, :, c, c] + 1) * 127.5).mean((1, 2))
        mean_r = ((ref.image[0, :, c, c].clamp(-1, 1) + 1) * 127.5).mean((1, 2))
        rows[task.painting_id] = {
            "det_rate": float(np.mean([s >= THRESHOLD for s in scores])),
            "det_rate_native": float(np.mean([s >= THRESHOLD for s in native])) if native else None,
            "conf_mean": float(np.mean(scores)), "conf_min": float(np.min(scores)),
            "p_happy_smile": p_happy(still_a, still_box), "p_happy_neutral": p_happy(ref_a, ref_box),
            "psnr_tune": tuned.metrics.get("psnr_ref"),
            "psnr_render": float(psnr(ref.image.clamp(-1, 1), target)[0]),
            "colour_err": float((mean_t - mean_r).norm()),
            "palette_w1": palette_w1(target[0], ref.image[0]),
            "seconds": seconds, "cpu_s": cpu, "yaw_deg": yaw, "face_input": face_input.alignment_source,
            "frame_conf": [round(s, 3) for s in scores],
        }
        print(task.painting_id, {k: rows[task.painting_id][k] for k in METRICS}, flush=True)
        step = max(1, (len(frames) - 1) / 5) if len(frames) > 1 else 1
        picks = sorted({min(len(frames) - 1, round(i * step)) for i in range(6)})
        tiles = [to_uint8(target[0]), to_uint8(ref.image[0])] + [to_uint8(frames[i].image[0]) for i in picks]
        tiles += [to_uint8(still.image[0])]
        sheet.append(np.concatenate(tiles, axis=1))
    summary = {k: float(np.mean([r[k] for r in rows.values() if r[k] is not None]))
               for k in METRICS if any(r[k] is not None for r in rows.values())}
    summary["prior_fit_s"] = prior_s
    summary["prior_fit_cpu_s"] = prior_cpu
    summary["demo_path_s"] = prior_s + sum(r["seconds"] for r in rows.values())
    summary["demo_path_cpu_s"] = prior_cpu + sum(r["cpu_s"] for r in rows.values())
    return {"summary": summary, "paintings": rows, "settings": settings.to_dict(),
            "prior_cached": bool(args.cached_prior)}, sheet


def write(label: str, result: dict, sheet: list[np.ndarray], out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    data = json.loads(json_path.read_text()) if json_path.exists() else {"benchmark": name, "runs": {}}
    from artmator.model.anifacegan.demo_prior import CODE_VERSION

    result["environment"] = environment(torch.device("cpu")) | {"head_prior": CODE_VERSION}
    data["runs"][label] = result
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    if sheet:
        w = max(s.shape[1] for s in sheet)
        rows = [np.pad(s, ((0, 0), (0, w - s.shape[1]), (0, 0))) for s in sheet]
        Image.fromarray(np.concatenate(rows, axis=0)).save(out_dir / f"demo_faces_{label}.png")
    labels = [x for x in ("before", "after") if x in data["runs"]] + \
             [x for x in data["runs"] if x not in ("before", "after")]
    lines = [f"# {name}", "", "The demo path (`quick_settings`, tiny backbone + head prior) judged by face-api's "
             "detector (threshold 0.5, frames upscaled to >= 256 px) and expression net; see "
             "`bench/demo_faces.py` for the protocol.", ""]
    for lb in labels:
        env = data["runs"][lb]["environment"]
        lines.append(f"- **{lb}**: head prior `{env.get('head_prior')}`, commit {env.get('commit')}, "
                     f"{env.get('when')}, {env.get('cpu_threads')} threads")
    lines += ["", "## Mean over paintings", "", "| metric | " + " | ".join(labels) + " |",
              "|---|" + "---|" * len(labels)]
    keys = list(METRICS) + ["prior_fit_s", "prior_fit_cpu_s", "demo_path_s", "demo_path_cpu_s"]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(_fmt(data["runs"][lb]["summary"].get(k, "")) for lb in labels) + " |")
    lines += ["", "## Per painting", "", "| painting | metric | " + " | ".join(labels) + " |",
              "|---|---|" + "---|" * len(labels)]
    ids = list(dict.fromkeys(p for lb in labels for p in data["runs"][lb]["paintings"]))
    for pid in ids:
        for k in ("det_rate", "conf_mean", "p_happy_smile", "p_happy_neutral", "psnr_render", "palette_w1"):
            vals = [data["runs"][lb]["paintings"].get(pid, {}).get(k, "") for lb in labels]
            lines.append(f"| {pid} | {k} | " + " | ".join(_fmt(v) for v in vals) + " |")
    md_path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="after", help="column to write (before / after / any name)")
    ap.add_argument("--paintings", type=int, default=4, help="first N demo paintings")
    ap.add_argument("--whole", action=argparse.BooleanOptionalAction, default=True,
                    help="also a whole painting through face detection and alignment")
    ap.add_argument("--native", action=argparse.BooleanOptionalAction, default=True,
                    help="also detect on the native-resolution frames")
    ap.add_argument("--cached-prior", action="store_true", help="use the normal head prior cache (no fresh fit)")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--stage1-steps", type=int, default=None)
    ap.add_argument("--stage2-steps", type=int, default=None)
    ap.add_argument("--resolution", type=int, default=None, help="tuning resolution (default: quick settings')")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--name", default=NAME)
    args = ap.parse_args(argv)
    result, sheet = run(args)
    print(json.dumps(result["summary"], indent=1))
    write(args.label, result, sheet, args.out_dir, args.name)


if __name__ == "__main__":
    main()
