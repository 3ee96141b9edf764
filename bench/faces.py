"""Face analysis of `artmator prepare`: pose error on known poses, detection on whole paintings, throughput.

    python -m bench.faces                              # all three parts, CPU (12 min on a loaded 2-core VM)
    python -m bench.faces --parts pose detection       # without the Ray run
    python -m bench.faces --yaws 28 --pitches 0 --filters plain --scales 1 --canvases 800 \
        --painting-filters plain --negatives 480 --n 1 --no-ray --inprocess-threads 1   # toy size (smoke test)

1. pose — a labelled set with KNOWN poses: `model.anifacegan.demo_prior.reference_render` (the procedural stylised head,
   sphere-traced with the backbone's camera, 12° fov) at every yaw × pitch, `--resolution` px, plain and through
   painterly Pillow filters (`FILTERS`), each image also mirrored (true yaw flips sign, pitch stays). Every
   image goes through `FaceAnalyzer.faces` once at threshold 0.3; the result at 0.5 is the same list cut at 0.5
   (the detector thresholds before its greedy NMS, so a face > 0.5 is never suppressed by one <= 0.5). The face
   used is the one `prepare` would take: the most prominent face above the threshold, counted as detected when
   its box centre lies on the head (inside the render mask's bounding box). Pose errors are over faces detected
   at 0.3 whose landmarks are reliable (`Face.landmarks_reliable`); yaw sign agreement over |true yaw| >= 7°;
   mirror antisymmetry |yaw(img) + yaw(mirror)| over pairs where both are usable; slope/intercept/residual of a
   least-squares line est = a + b·true (b = 1, a = 0 for an unbiased estimator; the residual RMS is the part
   of the error a per-head calibration could not remove). Row "template (perfect landmarks)": the five points
   of the symmetric mean-face template projected with the backbone's camera at the same poses and fed to
   `pose_from_landmarks` — the pose fit alone, without detector, landmark network or head geometry.
2. detection — `tests/pipeline/faces_fixtures.whole_painting` (the painted astronaut; its detector box is 85 px
   wide at scale 1) at `--scales` on canvases of `--canvases` px width (4:5 portrait up to 2000, 5:4 landscape above), face
   centre at 1/2 width and 1/3 height, plain / mirrored × `--painting-filters` (applied to the whole canvas);
   negatives: `no_face_painting` and the empty textured canvas at several sizes × the same filters. Each image
   goes the `prepare` way: JPEG (q 90) -> `decode_bounded(max_side=1536)` -> `faces`. A painting is detected at
   a threshold when a face above it has IoU >= 0.3 with the expected face box (the detector's box on the
   unfiltered 512 px sitter, moved and scaled with it); a negative is a false positive when any face is above
   it. `face_px_detector` = face width × 512 / longer canvas side: the detector's input is always 512².
3. throughput — N generated whole paintings (JPEG, canvases 1100-2200 px, CSV catalog in a temporary folder)
   through the real `pipeline.prepare.prepare` (local Ray, default actor count): `ray.init` timed on its own,
   then prepare with n_small = max(2, N // 4), N, n_small paintings (same Ray). Per painting =
   (T(N) - T(n_small, 3rd run)) / (N - n_small), fixed = T(N) - N · per painting (actor process start,
   imports, network load, Ray Data scheduling, report and review page); the first run's extra over the third is
   the first use of a fresh Ray's workers (`artmator prepare` pays it every time). In-process comparison in the
   same process, before and after the Ray runs (their mean is the reference), at the thread count `prepare`
   gives its actor and at 1 thread: `FaceAnalyzer` load, then per painting `analyze_painting` (read, bounded
   decode, faces, thumbnail + crop previews written to disk) and `FaceAnalyzer.faces` alone.

The pose and detection parts run with `--threads` torch threads (default 1): results do not depend on it, and on
a loaded machine two OpenMP threads that spin-wait for each other can be ~10x slower than one.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from bench.common import environment, markdown_table, write_tables

THRESHOLDS = (0.3, 0.5, 0.7)
POSE_THRESHOLDS = (0.3, 0.5)
ANALYSIS_SIDE = 1536          # PrepareConfig().analysis_side
DETECTOR_INPUT = 512          # model.faces.detector.INPUT_SIZE


# ------------------------------------------------------------------------------------------------- filters

def poster(img: Image.Image) -> Image.Image:
    """Screen print: smoothing + 3 bits per channel."""
    return ImageOps.posterize(img.filter(ImageFilter.SMOOTH_MORE), 3)


def oil(img: Image.Image) -> Image.Image:
    """Impasto: a mode filter merges brush-sized patches, edge enhancement outlines them."""
    return img.filter(ImageFilter.SMOOTH_MORE).filter(ImageFilter.ModeFilter(7)).filter(ImageFilter.EDGE_ENHANCE)


def drawing(img: Image.Image) -> Image.Image:
    """Sepia drawing: grey, median + mode filter, autocontrast, brown ink on cream paper, edges enhanced."""
    grey = ImageOps.autocontrast(img.convert("L").filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.ModeFilter(5)))
    return ImageOps.colorize(grey, black="#2b1a0e", white="#f3e6c8").filter(ImageFilter.EDGE_ENHANCE_MORE)


def canvas_drawing(img: Image.Image) -> Image.Image:
    """`drawing` without the mode filter (too slow on 3000 px canvases); the sitter already has one."""
    grey = ImageOps.autocontrast(img.convert("L").filter(ImageFilter.MedianFilter(3)))
    return ImageOps.colorize(grey, black="#2b1a0e", white="#f3e6c8").filter(ImageFilter.EDGE_ENHANCE_MORE)


FILTERS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "plain": lambda img: img, "poster": poster, "oil": oil, "drawing": drawing}
PAINTING_FILTERS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "plain": lambda img: img, "poster": poster, "drawing": canvas_drawing}


# ------------------------------------------------------------------------------------------------- helpers

def _stats(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [abs(v) for v in values]
    return (float(np.mean(vals)), float(np.median(vals))) if vals else (None, None)


def _rate(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def _line(true: Sequence[float], est: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """Least-squares est = a + b·true -> (b, a, residual RMS)."""
    if len(true) < 3 or len(set(true)) < 2:
        return None, None, None
    b, a = np.polyfit(np.asarray(true, float), np.asarray(est, float), 1)
    resid = np.asarray(est) - (a + b * np.asarray(true))
    return float(b), float(a), float(np.sqrt(np.mean(resid ** 2)))


def _main_face(faces, threshold: float):
    """The face `prepare` would use at this threshold: the most prominent one above it (faces are sorted)."""
    return next((f for f in faces if f.confidence > threshold), None)


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter) if inter > 0 else 0.0


def analyzer(min_confidence: float = min(THRESHOLDS)):
    from artmator.model.faces.analyzer import FaceAnalysisConfig, FaceAnalyzer

    return FaceAnalyzer(FaceAnalysisConfig(min_confidence=min_confidence))


# ----------------------------------------------------------------------------------------------- 1. pose

def render_head(yaw: float, pitch: float, resolution: int) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The procedural head at a known pose -> (RGB image, bounding box x0, y0, x1, y1 of its mask)."""
    from artmator.model.anifacegan.demo_prior import reference_render

    img, mask = reference_render(yaw, resolution, pitch_deg=pitch)
    pixels = (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    ys, xs = np.nonzero(mask[0].numpy() > 0.5)
    return Image.fromarray(pixels), (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def template_pose(yaw: float, pitch: float, resolution: int) -> tuple[float, float]:
    """Pose fitted to the symmetric template's five points projected exactly at (yaw, pitch): the fit alone."""
    from artmator.model.faces import align

    per_unit = 2.0 * math.tan(math.radians(12.0) / 2.0) / align.CROP_SIDE_PER_SCALE
    points = align._project(align._tilted(align.SYMMETRIC_TEMPLATE_5 * per_unit), yaw, pitch, 12.0) * resolution
    pose = align.pose_from_landmarks(points, 12.0)
    return pose.yaw_deg, pose.pitch_deg


def pose_samples(face_analyzer, yaws: Sequence[float], pitches: Sequence[float], filters: Sequence[str],
                 resolution: int, log: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """One record per (pose, filter, mirrored) image; plus facts about the renders (mirror symmetry, timing)."""
    samples, asym, render_s = [], [], 0.0
    renders = {}
    for pitch in pitches:
        for yaw in yaws:
            t0 = time.perf_counter()
            renders[(yaw, pitch)] = render_head(yaw, pitch, resolution)
            render_s += time.perf_counter() - t0
    # The renderer and head are left-right symmetric when mirror(render(y)) == render(-y): then any mirror
    # asymmetry below comes from the detector / landmark networks, not from the test images.
    for (yaw, pitch), (img, _) in renders.items():
        if (-yaw, pitch) in renders and yaw > 0:
            a = np.asarray(ImageOps.mirror(img), np.float64)
            b = np.asarray(renders[(-yaw, pitch)][0], np.float64)
            asym.append(float(np.abs(a - b).mean()))
    analyse_s, count = 0.0, 0
    for (yaw, pitch), (img, (x0, y0, x1, y1)) in renders.items():
        for name in filters:
            painted = FILTERS[name](img)
            for mirrored in (False, True):
                image = ImageOps.mirror(painted) if mirrored else painted
                box = (resolution - x1, y0, resolution - x0, y1) if mirrored else (x0, y0, x1, y1)
                t0 = time.perf_counter()
                faces = face_analyzer.faces(image)
                analyse_s += time.perf_counter() - t0
                count += 1
                rec = {"filter": name, "yaw_true": -yaw if mirrored else yaw, "pitch_true": pitch,
                       "base_yaw": yaw, "mirrored": mirrored,
                       "max_confidence": max((f.confidence for f in faces), default=0.0)}
                for thr in POSE_THRESHOLDS:
                    face = _main_face(faces, thr)
                    on_head = face is not None and (box[0] <= face.box[0] + face.box[2] / 2 <= box[2]
                                                    and box[1] <= face.box[1] + face.box[3] / 2 <= box[3])
                    rec[f"detected_{thr}"] = bool(on_head)
                    if thr == POSE_THRESHOLDS[0] and on_head:
                        rec.update(confidence=face.confidence, yaw_est=face.pose.yaw_deg,
                                   pitch_est=face.pose.pitch_deg, fit_error=face.pose.fit_error,
                                   reliable=face.landmarks_reliable)
                samples.append(rec)
        log(f"  pose yaw {yaw:+.0f} pitch {pitch:+.0f}: "
            + " ".join(f"{s['filter']}{'/m' if s['mirrored'] else ''}="
                       + (f"{s['yaw_est']:+.0f}" if 'yaw_est' in s else "-")
                       for s in samples[-2 * len(filters):]))
    facts = {"render_seconds_per_image": render_s / max(1, len(renders)),
             "analyse_seconds_per_image": analyse_s / max(1, count),
             "render_mirror_asymmetry_mean_abs_0_255": float(np.mean(asym)) if asym else None}
    return samples, facts


def pose_row(name: str, samples: Sequence[dict]) -> dict:
    usable = [s for s in samples if s.get("detected_0.3") and s.get("reliable")]
    yaw_err = [s["yaw_est"] - s["yaw_true"] for s in usable]
    pitch_err = [s["pitch_est"] - s["pitch_true"] for s in usable]
    signed = [s for s in usable if abs(s["yaw_true"]) >= 7]
    by_key = {(s["filter"], s["base_yaw"], s["pitch_true"], s["mirrored"]): s for s in usable}
    antisym = [abs(s["yaw_est"] + by_key[(f, y, p, True)]["yaw_est"])
               for (f, y, p, m), s in by_key.items() if not m and (f, y, p, True) in by_key]
    yaw_mae, yaw_med = _stats(yaw_err)
    pitch_mae, pitch_med = _stats(pitch_err)
    slope, intercept, resid = _line([s["yaw_true"] for s in usable], [s["yaw_est"] for s in usable])
    p_slope, p_intercept, _ = _line([s["pitch_true"] for s in usable], [s["pitch_est"] for s in usable])
    anti_mean, anti_med = _stats(antisym)
    return {"filter": name, "images": len(samples),
            "det_0.5": _rate([s["detected_0.5"] for s in samples]),
            "det_0.3": _rate([s["detected_0.3"] for s in samples]),
            "reliable": len(usable), "yaw_mae": yaw_mae, "yaw_median": yaw_med,
            "pitch_mae": pitch_mae, "pitch_median": pitch_med,
            "yaw_sign_agree": _rate([math.copysign(1, s["yaw_est"]) == math.copysign(1, s["yaw_true"])
                                     for s in signed]),
            "mirror_antisym_mean": anti_mean, "mirror_antisym_median": anti_med, "mirror_pairs": len(antisym),
            "yaw_slope": slope, "yaw_intercept": intercept, "yaw_resid_rms": resid,
            "pitch_slope": p_slope, "pitch_intercept": p_intercept}


def template_row(yaws: Sequence[float], pitches: Sequence[float], resolution: int) -> dict:
    samples = []
    for pitch in pitches:
        for yaw in yaws:
            for mirrored in (False, True):
                y_est, p_est = template_pose(-yaw if mirrored else yaw, pitch, resolution)
                samples.append({"filter": "template", "yaw_true": -yaw if mirrored else yaw, "pitch_true": pitch,
                                "base_yaw": yaw, "mirrored": mirrored, "detected_0.3": True,
                                "detected_0.5": True, "reliable": True, "yaw_est": y_est, "pitch_est": p_est})
    row = pose_row("template (perfect landmarks)", samples)
    row["det_0.5"] = row["det_0.3"] = None   # no detector involved
    return row


def run_pose(face_analyzer, yaws, pitches, filters, resolution, log=print) -> tuple[list[dict], list[dict], dict]:
    samples, facts = pose_samples(face_analyzer, yaws, pitches, filters, resolution, log)
    rows = [pose_row(name, [s for s in samples if s["filter"] == name]) for name in filters]
    if len(filters) > 1:
        rows.append(pose_row("all filters", samples))
    rows.append(template_row(yaws, pitches, resolution))
    return rows, samples, facts


# ------------------------------------------------------------------------------------------ 2. detection

def canvas_size(width: int) -> tuple[int, int]:
    """4:5 portrait up to 2000 px wide, 5:4 landscape above (large scans of group portraits, interiors)."""
    return (width, round(width * 1.25)) if width <= 2000 else (width, round(width * 0.8))


def reference_face_box(face_analyzer) -> tuple[float, float, float, float]:
    """The detector's box of the astronaut on the unfiltered 512² painted sitter (x, y, w, h)."""
    from tests.pipeline.faces_fixtures import painted_astronaut

    faces = face_analyzer.faces(painted_astronaut())
    return faces[0].box


def placed_painting(width: int, scale: float, mirror: bool, ref_box) -> tuple[Image.Image, tuple]:
    """whole_painting with the face centre at (W/2, H/3) -> (image, expected face box x, y, w, h)."""
    from tests.pipeline.faces_fixtures import whole_painting

    w, h = canvas_size(width)
    fx, fy = ref_box[0] + ref_box[2] / 2, ref_box[1] + ref_box[3] / 2
    at = (round(w / 2 - fx * scale), round(h / 3 - fy * scale))
    img = whole_painting(w, h, scale=scale, at=at, mirror=mirror)
    bx, by = at[0] + ref_box[0] * scale, at[1] + ref_box[1] * scale
    bw, bh = ref_box[2] * scale, ref_box[3] * scale
    if mirror:
        bx = w - bx - bw
    return img, (bx, by, bw, bh)


def analyse_like_prepare(face_analyzer, image: Image.Image):
    """JPEG q90 -> decode_bounded(max_side=1536) -> faces, in full-image pixels (what `prepare` does per row)."""
    from artmator.model.images import decode_bounded
    from tests.pipeline.faces_fixtures import jpeg_bytes

    reduced, full = decode_bounded(jpeg_bytes(image), "bench", max_side=ANALYSIS_SIDE)
    scale = full[0] / reduced.size[0]
    return [f.scaled(scale) for f in face_analyzer.faces(reduced)]


def detection_images(face_analyzer, scales, canvases, filters, negatives=(480, 640, 1200, 2400), log=print
                     ) -> tuple[list[dict], dict]:
    ref = reference_face_box(face_analyzer)
    records = []
    t_analyse, count = 0.0, 0
    for width in canvases:
        for scale in scales:
            if ref[2] * scale > 0.6 * width:       # the face would not fit the canvas
                continue
            for mirror in (False, True):
                base, box = placed_painting(width, scale, mirror, ref)
                for name in filters:
                    t0 = time.perf_counter()
                    faces = analyse_like_prepare(face_analyzer, PAINTING_FILTERS[name](base))
                    t_analyse += time.perf_counter() - t0
                    count += 1
                    w, h = base.size
                    hits = [f for f in faces if _iou(f.box, box) >= 0.3]
                    hit_ids = {id(f) for f in hits}
                    rec = {"kind": "painting", "canvas": f"{w}x{h}", "canvas_w": w, "scale": scale,
                           "face_px": round(box[2]), "face_px_detector": round(box[2] * DETECTOR_INPUT / max(w, h), 1),
                           "mirrored": mirror, "filter": name,
                           "confidence": max((f.confidence for f in hits), default=0.0)}
                    for thr in THRESHOLDS:
                        rec[f"det_{thr}"] = any(f.confidence > thr for f in hits)
                        rec[f"extra_{thr}"] = sum(1 for f in faces if f.confidence > thr and id(f) not in hit_ids)
                    main = _main_face(faces, 0.5)
                    if main is not None and id(main) in hit_ids:
                        rec.update(yaw_est=main.pose.yaw_deg, reliable=main.landmarks_reliable)
                    records.append(rec)
            done = [r for r in records if r["canvas_w"] == width and r["scale"] == scale]
            log(f"  painting {width} px, face {done[0]['face_px']} px ({done[0]['face_px_detector']} px in the "
                f"detector): conf " + " ".join(f"{r['confidence']:.2f}" for r in done))
    records += negative_images(face_analyzer, negatives, canvases, filters, log)
    return records, {"reference_face_box": [round(v, 1) for v in ref],
                     "analyse_seconds_per_image": t_analyse / max(1, count)}


def negative_images(face_analyzer, sizes, canvases, filters, log=print) -> list[dict]:
    from tests.pipeline.faces_fixtures import no_face_painting, whole_painting

    images = [(f"no_face_painting {s}", no_face_painting(s)) for s in sizes]
    for width in canvases:
        w, h = canvas_size(width)
        # the textured canvas alone: the sitter pasted entirely outside it
        images.append((f"empty canvas {w}x{h}", whole_painting(w, h, at=(w + 10, h + 10))))
    out = []
    for label, img in images:
        for name in filters:
            faces = analyse_like_prepare(face_analyzer, PAINTING_FILTERS[name](img))
            rec = {"kind": "negative", "image": label, "filter": name,
                   "confidence": max((f.confidence for f in faces), default=0.0)}
            for thr in THRESHOLDS:
                rec[f"fp_{thr}"] = any(f.confidence > thr for f in faces)
            out.append(rec)
    log("  negatives: max conf " + " ".join(f"{r['confidence']:.2f}" for r in out))
    return out


def detection_rows(records: Sequence[dict]) -> list[dict]:
    paintings = [r for r in records if r["kind"] == "painting"]
    negatives = [r for r in records if r["kind"] == "negative"]
    rows = []

    def row(group: str, sel: Sequence[dict], **extra) -> dict:
        out = {"group": group, **extra, "images": len(sel)}
        for thr in THRESHOLDS:
            out[f"det_{thr}"] = _rate([r[f"det_{thr}"] for r in sel])
        out["extra_faces_0.5"] = float(np.mean([r["extra_0.5"] for r in sel])) if sel else None
        out["mean_conf"] = float(np.mean([r["confidence"] for r in sel])) if sel else None
        return out

    keys = sorted({(r["canvas_w"], r["scale"]) for r in paintings})
    for width, scale in keys:
        sel = [r for r in paintings if r["canvas_w"] == width and r["scale"] == scale]
        rows.append(row("size", sel, canvas=sel[0]["canvas"], face_px=sel[0]["face_px"],
                        face_px_detector=sel[0]["face_px_detector"]))
    for name in dict.fromkeys(r["filter"] for r in paintings):
        rows.append(row(f"filter {name}", [r for r in paintings if r["filter"] == name]))
    for mirrored in (False, True):
        rows.append(row("mirrored" if mirrored else "not mirrored",
                        [r for r in paintings if r["mirrored"] == mirrored]))
    rows.append(row("all paintings", paintings))
    if negatives:
        neg = {"group": "no-face images (false positive rate)", "images": len(negatives)}
        for thr in THRESHOLDS:
            neg[f"det_{thr}"] = _rate([r[f"fp_{thr}"] for r in negatives])
        neg["mean_conf"] = float(np.mean([r["confidence"] for r in negatives]))
        rows.append(neg)
    return rows


def mirror_consistency(records: Sequence[dict]) -> dict:
    """|yaw(painting) + yaw(mirrored painting)| over pairs whose main face is the astronaut with good landmarks."""
    usable = {(r["canvas_w"], r["scale"], r["filter"], r["mirrored"]): r["yaw_est"] for r in records
              if r["kind"] == "painting" and r.get("reliable")}
    diffs = [abs(v + usable[(w, s, f, True)]) for (w, s, f, m), v in usable.items()
             if not m and (w, s, f, True) in usable]
    yaws = [v for (w, s, f, m), v in usable.items() if not m]
    return {"astronaut_mirror_pairs": len(diffs),
            "astronaut_mirror_antisym_mean": float(np.mean(diffs)) if diffs else None,
            "astronaut_yaw_median": float(np.median(yaws)) if yaws else None}


# ----------------------------------------------------------------------------------------- 3. throughput

def make_catalog(n: int, folder: Path) -> Path:
    """n whole paintings as JPEG files (canvases 1100-2200 px, faces 80-200 px, every other one mirrored)."""
    from tests.pipeline.faces_fixtures import jpeg_bytes, whole_painting

    lines = ["painting_id,image_uri,title"]
    for i in range(n):
        width = (1100, 1600, 2200)[i % 3]
        scale = (0.8, 1.2, 1.6, 2.0)[i % 4]
        w, h = canvas_size(width)
        img = whole_painting(w, h, scale=scale, at=(w // 2 - round(256 * scale), h // 6), mirror=bool(i % 2))
        name = f"painting_{i:03d}.jpg"
        (folder / name).write_bytes(jpeg_bytes(img))
        lines.append(f"bench-{i:03d},{name},Generated painting {i}")
    path = folder / "catalog.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_prepare(catalog: Path, n: int, out: Path) -> tuple[float, dict, list[float]]:
    """prepare() on the first n rows of the catalog -> (seconds, statuses, arrival times of results)."""
    from artmator.pipeline.prepare import PrepareConfig, prepare

    lines = catalog.read_text().splitlines()
    sub = catalog.with_name(f"catalog_{n}_{out.name}.csv")
    sub.write_text("\n".join(lines[:n + 1]) + "\n")
    arrivals: list[float] = []
    t0 = time.perf_counter()
    summary = prepare(str(sub), str(out / "faces.parquet"), PrepareConfig(),
                      progress=lambda done, total: arrivals.append(time.perf_counter() - t0))
    return time.perf_counter() - t0, summary.by_status, arrivals


def inprocess(catalog: Path, n: int, folder: Path, threads: int) -> dict:
    """FaceAnalyzer load, then per painting analyze_painting (as the actor does) and faces() alone."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _inprocess(catalog, n, folder) | {"threads": threads}
    finally:
        torch.set_num_threads(previous)


def _inprocess(catalog: Path, n: int, folder: Path) -> dict:
    from artmator.model.images import decode_bounded
    from artmator.pipeline.prepare import PrepareConfig, analyze_painting

    t0 = time.perf_counter()
    face_analyzer = analyzer(PrepareConfig().min_confidence)
    load = time.perf_counter() - t0
    config = PrepareConfig()
    assets = folder / "inproc_assets"
    assets.mkdir(exist_ok=True)

    def write_asset(name: str, data: bytes) -> str:
        (assets / name).write_bytes(data)
        return name

    rows = [dict(zip(("painting_id", "image_uri"), line.split(",")[:2]))
            for line in catalog.read_text().splitlines()[1:n + 1]]
    per_row, per_faces, per_decode, ok = [], [], [], 0
    for row in rows:
        row["image_uri"] = str(catalog.parent / row["image_uri"])
        t0 = time.perf_counter()
        results = analyze_painting(row, face_analyzer, config, {}, write_asset)
        per_row.append(time.perf_counter() - t0)
        ok += results[0]["status"] == "ok"
        data = Path(row["image_uri"]).read_bytes()
        t0 = time.perf_counter()
        image, _ = decode_bounded(data, row["image_uri"], max_side=config.analysis_side)
        per_decode.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        face_analyzer.faces(image)
        per_faces.append(time.perf_counter() - t0)
    return {"model_load": load, "analyze_painting": statistics.mean(per_row),
            "analyze_painting_median": statistics.median(per_row), "decode": statistics.mean(per_decode),
            "faces": statistics.mean(per_faces), "faces_median": statistics.median(per_faces), "ok": ok}


def actor_threads(n: int) -> int:
    """The torch threads `prepare` gives each actor on a local Ray of this machine (pool_size, _local_cpus)."""
    cpus = os.cpu_count() or 1
    actors = min(max(1, cpus - 1) if cpus > 1 else 1, n)
    return max(1, cpus // actors)


def run_throughput(n: int, use_ray: bool, threads: Sequence[int] | None = None, log=print
                   ) -> tuple[list[dict], dict]:
    """In-process loops (the actor's thread count and 1 thread), prepare() at n_small, n, n_small (with Ray),
    then the in-process loops again; means of the before/after loops are the reference."""
    rows, facts = [], {}
    thread_counts = list(dict.fromkeys(threads or (actor_threads(n), 1)))
    with tempfile.TemporaryDirectory(prefix="bench_faces_") as tmp:
        folder = Path(tmp)
        catalog = make_catalog(n, folder)
        loops: dict[int, list[dict]] = {t: [] for t in thread_counts}

        def run_loops(label: str) -> None:
            for t in thread_counts:
                loops[t].append(inprocess(catalog, n, folder, t))
                r = loops[t][-1]
                log(f"  in-process {label}, {t} thread(s): load {r['model_load']:.2f} s, analyze_painting "
                    f"{r['analyze_painting']:.3f} s, faces {r['faces']:.3f} s per painting")

        run_loops("before")
        runs, ray_init, cpus, small = {}, None, None, max(2, n // 4)
        if use_ray:
            import ray

            from artmator.pipeline.job import init_ray

            t0 = time.perf_counter()
            init_ray()
            ray_init = time.perf_counter() - t0
            try:
                cpus = ray.cluster_resources().get("CPU")
                for k, size in enumerate((small, n, small)):
                    out = folder / f"out{k}"
                    out.mkdir()
                    seconds, statuses, arrivals = run_prepare(catalog, size, out)
                    runs[k] = {"paintings": size, "seconds": seconds, "statuses": statuses,
                               "first_result": arrivals[0] if arrivals else None,
                               "last_result": arrivals[-1] if arrivals else None}
                    log(f"  prepare {size} paintings: {seconds:.1f} s {statuses} (first result after "
                        f"{runs[k]['first_result']:.1f} s)")
            finally:
                ray.shutdown()
            run_loops("after")
        means = {}
        for t in thread_counts:
            ls = loops[t]
            mean = {k: statistics.mean(loop[k] for loop in ls) for k in ("model_load", "analyze_painting", "faces",
                                                                         "decode")}
            spread = {k: (max(loop[k] for loop in ls) - min(loop[k] for loop in ls)) / mean[k]
                      for k in ("analyze_painting", "faces")}
            means[t] = mean
            rows.append({"what": f"in-process analyze_painting, {t} thread(s)", "paintings": n,
                         "seconds": mean["model_load"] + mean["analyze_painting"] * n, "fixed": mean["model_load"],
                         "per_painting": mean["analyze_painting"], "paintings_per_min": 60 / mean["analyze_painting"],
                         "detail": f"{ls[0]['ok']}/{n} ok; read + decode {mean['decode']:.3f} s; mean of {len(ls)} "
                                   f"loops, spread {100 * spread['analyze_painting']:.0f} %"})
            rows.append({"what": f"in-process FaceAnalyzer.faces alone, {t} thread(s)", "paintings": n,
                         "seconds": mean["model_load"] + mean["faces"] * n, "fixed": mean["model_load"],
                         "per_painting": mean["faces"], "paintings_per_min": 60 / mean["faces"],
                         "detail": f"mean of {len(ls)} loops, spread {100 * spread['faces']:.0f} %"})
        facts["inprocess"] = loops
        if runs:
            # per painting and fixed from the two warm runs (2: n paintings, 3: n_small); run 1 pays the first
            # use of the fresh Ray's worker processes (imports from a cold start) on top.
            per = (runs[1]["seconds"] - runs[2]["seconds"]) / (n - small) if n > small else float("nan")
            fixed = runs[1]["seconds"] - n * per
            cold = runs[0]["seconds"] - runs[2]["seconds"]
            rows.append({"what": "ray.init (local, once per driver)", "paintings": 0, "seconds": ray_init,
                         "fixed": ray_init, "detail": f"{cpus:g} CPUs, actor threads {actor_threads(n)}"})
            for k in (0, 1, 2):
                r = runs[k]
                rows.append({"what": f"prepare() run {k + 1}" + (" (first in this Ray)" if k == 0 else ""),
                             "paintings": r["paintings"], "seconds": r["seconds"],
                             "paintings_per_min": 60 * r["paintings"] / r["seconds"],
                             "detail": f"{r['statuses']}; first result after {r['first_result']:.1f} s"})
            ratios = "; ".join(f"{per / means[t]['analyze_painting']:.2f}x in-process at {t} thread(s)"
                               for t in thread_counts)
            rows.append({"what": "prepare(): fixed + per painting (runs 2, 3)", "paintings": n,
                         "seconds": runs[1]["seconds"], "fixed": fixed, "per_painting": per,
                         "paintings_per_min": 60 / per if per > 0 else None,
                         "detail": f"per painting = {ratios}; first run in a fresh Ray +{cold:.1f} s"})
            facts.update(ray_init=ray_init, runs=runs, per_painting=per, fixed=fixed, first_run_extra=cold,
                         actor_threads=actor_threads(n),
                         ratio_to_inprocess={t: per / means[t]["analyze_painting"] for t in thread_counts})
    return rows, facts


# ------------------------------------------------------------------------------------------------ output

POSE_COLUMNS = ["filter", "images", "det_0.5", "det_0.3", "reliable", "yaw_mae", "yaw_median", "pitch_mae",
                "pitch_median", "yaw_sign_agree", "mirror_antisym_mean", "mirror_antisym_median", "mirror_pairs",
                "yaw_slope", "yaw_intercept", "yaw_resid_rms", "pitch_slope", "pitch_intercept"]
DETECTION_COLUMNS = ["group", "canvas", "face_px", "face_px_detector", "images", "det_0.3", "det_0.5", "det_0.7",
                     "extra_faces_0.5", "mean_conf"]
THROUGHPUT_COLUMNS = ["what", "paintings", "seconds", "fixed", "per_painting", "paintings_per_min", "detail"]


def write(name: str, env: dict, settings: dict, tables: dict[str, list[dict]], facts: dict, samples: dict,
          out_dir: Path | None = None) -> tuple[Path, Path]:
    columns = {"pose": POSE_COLUMNS, "detection": DETECTION_COLUMNS, "throughput": THROUGHPUT_COLUMNS}
    return write_tables(name, env, settings, tables, columns, facts, {"samples": samples}, out_dir)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["pose", "detection", "throughput"],
                   choices=["pose", "detection", "throughput"])
    p.add_argument("--yaws", type=float, nargs="+", default=[float(y) for y in range(-35, 36, 7)])
    p.add_argument("--pitches", type=float, nargs="+", default=[-15.0, 0.0, 15.0])
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--filters", nargs="+", default=list(FILTERS), choices=list(FILTERS))
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.8, 1.2, 1.8, 2.5, 3.5],
                   help="sitter scales (the astronaut's face box is 85 px wide at 1)")
    p.add_argument("--canvases", type=int, nargs="+", default=[800, 1600, 3000], help="canvas widths")
    p.add_argument("--painting-filters", nargs="+", default=list(PAINTING_FILTERS), choices=list(PAINTING_FILTERS))
    p.add_argument("--negatives", type=int, nargs="+", default=[480, 640, 1200, 2400],
                   help="sizes of the no-face paintings (plus an empty textured canvas per --canvases width)")
    p.add_argument("--n", type=int, default=24, help="paintings for the throughput part")
    p.add_argument("--no-ray", action="store_true", help="throughput: in-process only, no prepare() run")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the pose and detection parts (their results do not depend on it; one "
                        "thread is fastest on a loaded machine). The throughput part sets its own.")
    p.add_argument("--inprocess-threads", type=int, nargs="+", default=None,
                   help="torch threads of the in-process throughput loops (default: prepare's actor threads, and 1)")
    p.add_argument("--name", default="faces_cpu")
    p.add_argument("--out-dir", type=Path, default=None)
    a = p.parse_args(argv)

    tables, facts, samples = {}, {}, {}
    torch.set_num_threads(a.threads)
    facts["load_average_at_start"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    t0 = time.perf_counter()
    face_analyzer = analyzer()
    facts["analyzer_load_seconds"] = time.perf_counter() - t0
    if "pose" in a.parts:
        print(f"pose: {len(a.yaws)} yaws x {len(a.pitches)} pitches x {len(a.filters)} filters x 2 (mirror)")
        tables["pose"], samples["pose"], facts["pose"] = run_pose(face_analyzer, a.yaws, a.pitches, a.filters,
                                                                  a.resolution)
    if "detection" in a.parts:
        print("detection: whole paintings and no-face images")
        records, facts["detection"] = detection_images(face_analyzer, a.scales, a.canvases, a.painting_filters,
                                                       a.negatives)
        facts["detection"].update(mirror_consistency(records))
        tables["detection"], samples["detection"] = detection_rows(records), records
    if "throughput" in a.parts:
        print(f"throughput: {a.n} paintings" + (" (in-process only)" if a.no_ray else ""))
        tables["throughput"], facts["throughput"] = run_throughput(a.n, not a.no_ray, a.inprocess_threads)
    settings = {"yaws": a.yaws, "pitches": a.pitches, "resolution": a.resolution, "filters": a.filters,
                "scales": a.scales, "canvases": a.canvases, "negatives": a.negatives,
                "painting_filters": a.painting_filters, "n": a.n,
                "ray": not a.no_ray, "thresholds": list(THRESHOLDS),
                "threads": a.threads}
    env = environment(torch.device("cpu"))
    env["load_average_1_5_15"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    if os.environ.get("OMP_WAIT_POLICY"):
        env["omp_wait_policy"] = os.environ["OMP_WAIT_POLICY"]
    json_path, md_path = write(a.name, env, settings, tables, facts, samples, a.out_dir)
    for t, rs in tables.items():
        print(f"\n{t}\n" + "\n".join(markdown_table(rs, {"pose": POSE_COLUMNS, "detection": DETECTION_COLUMNS,
                                                  "throughput": THROUGHPUT_COLUMNS}[t])))
    print(f"\nwrote {json_path} and {md_path}")
    return {"tables": tables, "facts": facts, "samples": samples}


if __name__ == "__main__":
    main()
