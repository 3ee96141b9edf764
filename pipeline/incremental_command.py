"""`artmator plan` (what a run would do, and how long it would take) and `artmator render` (re-render committed
paintings from their stored deltas)."""
from __future__ import annotations

import json
import sys
from collections import Counter

import click

from artmator.pipeline.gallery.publication import publication_options
from artmator.pipeline.options import parse_storage_options, storage_options_option
from artmator.pipeline.progress import configure_logging, duration, logging_options
from artmator.pipeline.run_command import run_config, run_options

ACTION_WORDS = {"tune": "tune", "render": "re-render from the stored delta", "refresh": "refresh metadata only",
                "skip": "skip (unchanged)"}


@click.command("plan")
@run_options
@click.option("--json", "as_json", is_flag=True,
              help='Print only {"tune", "render", "refresh", "skip", "invalid", "failed_before"} counts as JSON.')
def plan(as_json: bool, **options) -> None:
    """What `artmator run` with the same arguments would do to each painting of MANIFEST, and an estimate of
    its time from this output's own history. Loads no model and starts no Ray."""
    from artmator.pipeline.job import history_estimates, make_plan
    from artmator.pipeline.storage import OutputStore

    config = run_config(**options)
    store = OutputStore(config.out_uri, config.storage_options)
    try:
        result = make_plan(config, store)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    counts = result.counts()
    if as_json:
        click.echo(json.dumps(counts))
        return
    click.echo(f"plan for {store.uri}: {sum(counts.values())} rows")
    for action in ("tune", "render", "refresh", "skip"):
        reasons = Counter(r.reason for r in result.of(action))
        detail = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
        click.echo(f"  {ACTION_WORDS[action]}: {counts[action]}" + (f" ({detail})" if detail else ""))
    click.echo(f"  invalid manifest rows: {counts['invalid']}")
    click.echo(f"  failed before, not retried (--retry-failed retries): {counts['failed_before']}")
    if result.rehashed:
        click.echo(f"  images re-read because their size or date moved: {len(result.rehashed)}")
    estimates = history_estimates(store)
    parts, total, unknown = [], 0.0, []
    for action in ("tune", "render", "refresh"):
        n = counts[action]
        if not n:
            continue
        if action in estimates:
            total += n * estimates[action]
            parts.append(f"{action} {n} x {duration(estimates[action])}")
        else:
            unknown.append(action)
    if not parts and not unknown:
        click.echo("estimated time: nothing to do")
        return
    line = f"estimated time: {duration(total)} of actor time" + (f" ({', '.join(parts)})" if parts else "")
    if config.actors:
        line += f", about {duration(total / config.actors)} on {config.actors} actors"
    if unknown:
        line += f"; no history yet for {', '.join(unknown)}"
    click.echo(line)


@click.command("render")
@click.argument("out_uri")
@click.option("--only", "only", multiple=True, metavar="ID[,ID...]",
              help="Re-render only these paintings (repeatable, or comma-separated). Default: every committed one.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Turntable frames (default: as committed).")
@click.option("--render-resolution", type=click.IntRange(min=16), default=None,
              help="Output render size (default: as committed).")
@click.option("--expressions", default=None, metavar="NAMES",
              help="Comma-separated expression stills: built-in names or .mat URIs (default: as committed).")
@click.option("--face-metrics/--no-face-metrics", default=None,
              help="Score the new renders with the face networks (default: as committed).")
@click.option("--mesh-resolution", type=click.IntRange(min=0, max=512), default=None,
              help="Grid points per side of the mesh.glb iso-surface; 0: no mesh (default: as committed).")
@click.option("--actors", type=click.IntRange(min=1), default=None, help="Actor pool size (default: fits the cluster).")
@click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--cpus-per-actor", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option("--threads-per-actor", type=click.IntRange(min=0), default=0, help="torch threads per actor (0: default).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda ... (actors given GPUs use them).")
@click.option("--gallery/--no-gallery", default=True, show_default=True, help="Update the static gallery at OUT/gallery.")
@publication_options
@click.option("--progress-every", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="Seconds between progress log lines and partial report writes (0: none).")
@storage_options_option
@logging_options
def render(out_uri: str, only, frames, render_resolution, expressions, face_metrics, mesh_resolution, actors,
           gpus_per_actor,
           cpus_per_actor, threads_per_actor, device, gallery, progress_every, storage_option, endpoint_url,
           log_level, log_format, **publication) -> None:
    """Re-render committed paintings of OUT from their deltas alone: new frames, sizes or expressions, no tuning.

    Each painting keeps its backbone (as its commit records it), delta and metadata; the new renders replace the
    old ones in one commit, so the old ones stay readable until then."""
    from artmator.pipeline.job import rerender

    configure_logging(log_level, log_format)
    options = parse_storage_options(storage_option, endpoint_url)
    ids = tuple(i.strip() for value in only for i in value.split(",") if i.strip())
    names = None if expressions is None else tuple(e.strip() for e in expressions.split(",") if e.strip())
    try:
        summary = rerender(out_uri, options, only=ids, frames=frames, resolution=render_resolution,
                           expressions=names, face_metrics=face_metrics, mesh_resolution=mesh_resolution,
                           device=device, actors=actors,
                           gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor,
                           threads_per_actor=threads_per_actor, progress_every_s=progress_every)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"render {summary.run_id}: {summary.rendered} re-rendered, {summary.failed} failed, "
               f"{summary.seconds:.0f} s")
    for kind, n in sorted(summary.failures.items()):
        click.echo(f"  failed ({kind}): {n}")
    click.echo(f"report: {summary.report_path}")
    if gallery:
        from artmator.pipeline.gallery.site import build_gallery

        result = build_gallery(out_uri, out_uri.rstrip("/") + "/gallery", storage_options=options or None,
                               **publication)
        click.echo(f"gallery: {result.index_url}")
    sys.exit(0 if summary.ok else 1)
