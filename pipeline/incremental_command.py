"""`artmator plan` (what a run would do, and how long it would take) and `artmator render` (re-render committed
paintings from their stored deltas)."""
from __future__ import annotations

import json
import sys
from collections import Counter

import click

from artmator.pipeline.config_schema import SettingsError
from artmator.pipeline.gallery.publication import Publication
from artmator.pipeline.job import RunConfig
from artmator.pipeline.options import (SETTINGS_LEAVES, build_config, config_options, flag_label,
                                       parse_storage_options, setting_overrides, storage_options_option)
from artmator.pipeline.progress import configure_logging, duration, logging_options
from artmator.pipeline.run_command import run_config, run_options

# What `artmator render` takes of a run's resources (the rest of its options change recorded render settings).
RENDER_RESOURCES = ("only", "actors", "gpus_per_actor", "cpus_per_actor", "threads_per_actor", "progress_every_s",
                    "claim_ttl_s")
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
@config_options(RunConfig, include=RENDER_RESOURCES, into="resources",
                aliases={"progress_every_s": "progress-every", "claim_ttl_s": "claim-ttl"})
@setting_overrides(("render", "face_metrics", "device"), into="changes")
@click.option("--gallery/--no-gallery", default=True, show_default=True, help="Update the static gallery at OUT/gallery.")
@config_options(Publication, into="publication")
@storage_options_option
@logging_options
def render(out_uri: str, resources: dict, changes: dict, gallery: bool, publication: dict, storage_option,
           endpoint_url, log_level, log_format) -> None:
    """Re-render committed paintings of OUT from their deltas alone: new frames, sizes or expressions, no tuning.

    Each painting keeps its backbone (as its commit records it), delta and metadata; the new renders replace the
    old ones in one commit, so the old ones stay readable until then."""
    from artmator.pipeline.job import rerender

    configure_logging(log_level, log_format)
    options = parse_storage_options(storage_option, endpoint_url)
    site = build_config(Publication, publication)          # refused before any work
    try:
        summary = rerender(out_uri, options, changes=changes, **resources)
    except SettingsError as exc:
        raise click.BadParameter(exc.message, param_hint=[flag_label(SETTINGS_LEAVES)(p) for p in changes]) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    claimed = f", {summary.claimed} claimed by other runs" if summary.claimed else ""
    click.echo(f"render {summary.run_id}: {summary.rendered} re-rendered{claimed}, {summary.failed} failed, "
               f"{summary.seconds:.0f} s")
    for kind, n in sorted(summary.failures.items()):
        click.echo(f"  failed ({kind}): {n}")
    click.echo(f"report: {summary.report_path}")
    if gallery:
        from artmator.pipeline.gallery.site import build_gallery

        from artmator.pipeline.gallery.site import GalleryBusy
        from artmator.pipeline.run_command import GALLERY_WAIT_S

        try:
            result = build_gallery(out_uri, out_uri.rstrip("/") + "/gallery", storage_options=options or None,
                                   publication=site, wait_s=GALLERY_WAIT_S)
            click.echo(f"gallery: {result.index_url}")
        except GalleryBusy as exc:
            click.echo(f"gallery: not updated: {exc}", err=True)
    sys.exit(0 if summary.ok else 1)
