"""`artmator run`, `artmator validate` and `artmator status`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from artmator.pipeline.gallery.publication import publication_kwargs, publication_options
from artmator.pipeline.options import model_options, parse_storage_options, storage_options_option
from artmator.pipeline.progress import logging_options
from artmator.pipeline.settings import JobSettings

DEMO_MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "demo" / "manifest.parquet"


def run_options(fn):
    """The options of `artmator run`, shared with `artmator plan` (a plan is the run it describes)."""
    for option in reversed([
        click.argument("manifest", required=False, default=None),
        click.option("--out", "out_uri", default="./artmator-out", show_default=True, help="Output folder or URI."),
        click.option("--actors", type=click.IntRange(min=1), default=None,
                     help="Actor pool size (default: fits the cluster)."),
        click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="GPUs per tuning actor; fractions pack several actors on one GPU."),
        click.option("--cpus-per-actor", type=click.FloatRange(min=0.1), default=1.0, show_default=True),
        click.option("--threads-per-actor", type=click.IntRange(min=0), default=0,
                     help="torch threads per actor (0: default)."),
        click.option("--paintings-per-batch", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Paintings tuned together in one optimisation by an actor."),
        click.option("--retry-failed", is_flag=True, help="Also retry paintings that failed for good in earlier runs."),
        click.option("--only", "only", multiple=True, metavar="ID[,ID...]",
                     help="Process only these painting ids (repeatable, or comma-separated)."),
        click.option("--force", is_flag=True,
                     help="Tune every selected painting again, whatever is committed or failed before."),
        storage_options_option,
        model_options,
    ]):
        fn = option(fn)
    return fn


def run_config(manifest, out_uri, actors, gpus_per_actor, cpus_per_actor, threads_per_actor, paintings_per_batch,
               retry_failed, only, force, storage_option, endpoint_url, settings: JobSettings, **extra):
    """The RunConfig the run options describe (`extra`: RunConfig fields of the command itself)."""
    from dataclasses import replace

    from artmator.pipeline.job import RunConfig

    return RunConfig(manifest_uri=manifest or str(DEMO_MANIFEST), out_uri=out_uri,
                     settings=replace(settings, paintings_per_batch=paintings_per_batch),
                     storage_options=parse_storage_options(storage_option, endpoint_url), actors=actors,
                     gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor,
                     threads_per_actor=threads_per_actor, retry_failed=retry_failed,
                     only=tuple(i.strip() for value in only for i in value.split(",") if i.strip()), force=force,
                     **extra)


@click.command("run")
@run_options
@click.option("--gallery/--no-gallery", default=True, show_default=True, help="Build the static gallery at OUT/gallery.")
@publication_options
@click.option("--progress-every", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="Seconds between progress log lines and partial report writes (0: none).")
@logging_options
def run(gallery, progress_every, log_level, log_format, **options) -> None:
    """Tune every painting of MANIFEST (Parquet; default: the bundled demo) on Ray and commit outputs to --out.

    Rerunning does per painting the least that is correct: nothing when nothing changed, a metadata refresh,
    a re-render from the stored delta, or a new tuning. Exit code 0 only when no painting failed.
    """
    from tqdm import tqdm

    from artmator.pipeline.job import run as run_job
    from artmator.pipeline.progress import configure_logging

    configure_logging(log_level, log_format)
    publication = publication_kwargs(options)
    config = run_config(**options, progress_every_s=progress_every)
    bar = tqdm(unit="painting", file=sys.stderr, disable=not sys.stderr.isatty())

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        summary = run_job(config, progress)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # an unwritable --out or an object store that is down: a clear line, not a traceback
        from artmator.pipeline.errors import classify

        kind, message = classify(exc)
        if kind != "storage":
            raise
        raise click.ClickException(f"storage error: {message} (committed paintings are kept; rerun to resume)") from None
    finally:
        bar.close()
    click.echo(f"run {summary.run_id}: {summary.done} committed, {summary.rendered} re-rendered, "
               f"{summary.refreshed} refreshed, {summary.skipped} skipped (unchanged), {summary.failed} failed, "
               f"{summary.seconds:.0f} s")
    for kind, n in sorted(summary.failures.items()):
        click.echo(f"  failed ({kind}): {n}")
    click.echo(f"report: {summary.report_path}")
    if gallery:
        from artmator.pipeline.gallery.site import build_gallery

        site = config.out_uri.rstrip("/") + "/gallery"
        result = build_gallery(config.out_uri, site, storage_options=config.storage_options or None, **publication)
        click.echo(f"gallery: {result.index_url}")
    sys.exit(0 if summary.ok else 1)


@click.command("validate")
@click.argument("manifest")
@storage_options_option
def validate(manifest: str, storage_option, endpoint_url) -> None:
    """Check a manifest and print every problem (row, column, reason); exit 1 if there is any."""
    from artmator.pipeline.manifest import ManifestError, load_manifest

    try:
        tasks, problems = load_manifest(manifest, parse_storage_options(storage_option, endpoint_url) or None)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    for p in problems:
        click.echo(str(p))
    click.echo(f"{len(tasks)} valid rows, {len(problems)} problems")
    sys.exit(1 if problems else 0)


@click.command("status")
@click.argument("out_uri")
@storage_options_option
def status(out_uri: str, storage_option, endpoint_url) -> None:
    """Done / failed / pending counts of an output folder, failure reasons grouped, throughput."""
    from artmator.pipeline.report import status_summary

    click.echo(status_summary(out_uri, parse_storage_options(storage_option, endpoint_url) or None))
