"""`artmator tune IMAGE --yaw DEG --pitch DEG --out DIR`: one painting, no Ray, files in a local folder."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from artmator.pipeline.errors import classify
from artmator.pipeline.flow import load_context, paint
from artmator.pipeline.manifest import Crop, PaintingTask
from artmator.pipeline.options import settings_options
from artmator.pipeline.settings import JobSettings, settings_json
from artmator.pipeline.storage import redact_config


class StepBar:
    """A tqdm progress bar over both stages when stderr is a terminal; silent otherwise."""

    def __init__(self, settings: JobSettings, enabled: bool):
        from tqdm import tqdm

        total = settings.tune.stage1.steps + settings.tune.stage2.steps
        self.bar = tqdm(total=total, unit="step", disable=not enabled, file=sys.stderr)

    def __call__(self, stage: str, step: int) -> None:
        self.bar.set_description(stage)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


@click.command("tune")
@click.argument("image")
@click.option("--yaw", type=click.FloatRange(-90, 90), default=None, help="Painting's head yaw in degrees (0 = frontal).")
@click.option("--pitch", type=click.FloatRange(-60, 60), default=None, help="Painting's head pitch in degrees.")
@click.option("--crop", default=None, metavar="X,Y,W,H", help="Crop box in pixels of the upright image.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--id", "painting_id", default="painting", show_default=True, help="Painting id written into results.")
@settings_options
def tune(image: str, yaw: float | None, pitch: float | None, crop: str | None, out_dir: str, painting_id: str,
         settings: JobSettings) -> None:
    """Tune the backbone to one painting (3DArtmator stages 1 and 2) and write delta, renders, result.json and
    config.json (which --config reads back).

    IMAGE may be a whole painting: without --crop the face is detected and cut out as the backbone's training
    crop; without --yaw/--pitch the pose comes from the face's landmarks (or, when they do not fit a face, a
    coarse render search), flagged as estimated.
    """
    if (yaw is None) != (pitch is None):
        raise click.UsageError("give both --yaw and --pitch, or neither (pose search)")
    box = _parse_crop(crop)
    task = PaintingTask(row=0, painting_id=painting_id, image_uri=image, yaw_deg=yaw, pitch_deg=pitch,
                        crop=None if box is None else Crop(*box), title=painting_id)
    start = time.perf_counter()
    try:
        context = load_context(settings)
    except Exception as exc:  # noqa: BLE001 - missing weights, unreadable files: one clear line
        kind, message = classify(exc)
        if kind == "internal":
            raise
        raise click.ClickException(f"{painting_id} ({kind}): {message}") from None
    bar = StepBar(settings, enabled=sys.stderr.isatty())
    try:
        [outcome] = paint([task], context, progress=bar)
    finally:
        bar.close()
    if not outcome.ok:
        raise click.ClickException(f"{painting_id} ({outcome.error_kind}): {outcome.message}")
    files = {**outcome.files, "config.json": settings_json(settings, redact_config).encode()}
    out = Path(out_dir)
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    tuned, face, m = outcome.tuned, outcome.face, outcome.tuned.metrics
    click.echo(f"{painting_id}: pose yaw {tuned.yaw_deg:.1f}° pitch {tuned.pitch_deg:.1f}° ({face.pose_source}); "
               f"face {face.alignment_source}; reference LPIPS {m['lpips_stage1']:.3f} after "
               f"stage 1 -> {m['lpips_ref']:.3f} after stage 2; PSNR {m['psnr_ref']:.2f} dB; delta "
               f"{len(files['delta.safetensors']):,} bytes; {time.perf_counter() - start:.1f} s"
               f"{_face_summary(files)}")
    click.echo(str(out.resolve()))


def _face_summary(files: dict[str, bytes]) -> str:
    """The face-aware metrics for the final line (empty with --no-face-metrics)."""
    import json

    doc = json.loads(files["result.json"])
    face = doc.get("face")
    if not face:
        return ""
    words = {"detected_fraction": "face in {:.0%} of frames", "identity_consistency": "identity {:.2f}",
             "likeness": "likeness {:.2f}", "pose_error_deg": "pose error {:.0f}°"}
    parts = [fmt.format(face[k]) for k, fmt in words.items() if face.get(k) is not None]
    happy = {name: p.get("happy") for name, p in (face.get("expressions") or {}).items() if p}
    if happy:
        parts.append("P(happy) " + ", ".join(f"{n} {v:.2f}" for n, v in happy.items() if v is not None))
    flags = [f for f in doc["quality"]["flags"] if f in ("no_face_in_renders", "identity_drift", "pose_mismatch",
                                                          "expression_not_read")]
    return "; face metrics: " + "; ".join(parts) + (f" (flags: {', '.join(flags)})" if flags else "")


def _parse_crop(crop: str | None) -> tuple[int, int, int, int] | None:
    if crop is None:
        return None
    try:
        x, y, w, h = (int(v) for v in crop.split(","))
    except ValueError:
        raise click.BadParameter("crop must be four integers X,Y,W,H", param_hint="--crop") from None
    return x, y, w, h

