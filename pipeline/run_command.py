"""`artmator run`, `artmator validate` and `artmator status`."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from artmator.pipeline.gallery.publication import Publication
from artmator.pipeline.job import RunConfig
from artmator.pipeline.options import (build_config, config_options, parse_storage_options, settings_options,
                                       storage_options_option)
from artmator.pipeline.progress import logging_options
from artmator.pipeline.settings import JobSettings

GALLERY_WAIT_S = 900.0
"""How long `run` and `render` wait for another driver's gallery build on the same output."""
DEMO_MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "demo" / "manifest.parquet"
RUN_ARGUMENTS = ("manifest_uri", "out_uri", "settings", "storage_options", "run_id")   # not options of `run`


def run_options(fn):
    """The options of `artmator run`, shared with `artmator plan` (a plan is the run it describes): MANIFEST,
    --out, one option per RunConfig field (`config_options`) and every setting (`settings_options`)."""
    fn = settings_options(fn)
    fn = storage_options_option(fn)
    fn = config_options(RunConfig, exclude=RUN_ARGUMENTS, into="resources",
                        aliases={"progress_every_s": "progress-every", "claim_ttl_s": "claim-ttl"})(fn)
    fn = click.option("--out", "out_uri", default="./artmator-out", show_default=True,
                      help="Output folder or URI.")(fn)
    return click.argument("manifest", required=False, default=None)(fn)


def run_config(manifest, out_uri, resources: dict, storage_option, endpoint_url, settings: JobSettings) -> RunConfig:
    """The RunConfig the run options describe."""
    return build_config(RunConfig, resources, manifest_uri=manifest or str(DEMO_MANIFEST), out_uri=out_uri,
                        settings=settings, storage_options=parse_storage_options(storage_option, endpoint_url))


@click.command("run")
@run_options
@click.option("--gallery/--no-gallery", default=True, show_default=True, help="Build the static gallery at OUT/gallery.")
@config_options(Publication, into="publication")
@logging_options
def run(gallery, log_level, log_format, **options) -> None:
    """Tune every painting of MANIFEST (Parquet; default: the bundled demo) on Ray and commit outputs to --out.

    Rerunning does per painting the least that is correct: nothing when nothing changed, a metadata refresh,
    a re-render from the stored delta, or a new tuning. Exit code 0 only when no painting failed. Settings start
    from a preset (--settings) or a config.json (--config); every option below overrides them.
    """
    from tqdm import tqdm

    from artmator.pipeline.job import run as run_job
    from artmator.pipeline.progress import configure_logging

    configure_logging(log_level, log_format)
    publication = build_config(Publication, options.pop("publication"))
    config = run_config(**options)
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
    claimed = f", {summary.claimed} claimed by other runs" if summary.claimed else ""
    click.echo(f"run {summary.run_id}: {summary.done} committed, {summary.rendered} re-rendered, "
               f"{summary.refreshed} refreshed, {summary.skipped} skipped (unchanged){claimed}, {summary.failed} "
               f"failed, {summary.seconds:.0f} s")
    for kind, n in sorted(summary.failures.items()):
        click.echo(f"  failed ({kind}): {n}")
    click.echo(f"report: {summary.report_path}")
    if gallery:
        from artmator.pipeline.gallery.site import build_gallery

        from artmator.pipeline.gallery.site import GalleryBusy

        site = config.out_uri.rstrip("/") + "/gallery"
        try:
            result = build_gallery(config.out_uri, site, storage_options=config.storage_options or None,
                                   publication=publication, wait_s=GALLERY_WAIT_S)
            click.echo(f"gallery: {result.index_url}")
        except GalleryBusy as exc:     # another driver is still publishing: its build or the next one shows ours
            click.echo(f"gallery: not updated: {exc}", err=True)
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
