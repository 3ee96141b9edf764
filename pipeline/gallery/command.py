"""`artmator gallery OUT [--site DEST]`: publish committed paintings as a static site with IIIF manifests."""
from __future__ import annotations

import posixpath

import click

from artmator.pipeline.options import build_config, config_options, parse_storage_options

from .publication import Publication
from .site import GalleryBusy, build_gallery


@click.command("gallery")
@click.argument("out")
@click.option("--site", "site", metavar="DEST", help="Where to write the site (default: OUT/gallery).")
@config_options(Publication, into="publication")
@click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="fsspec storage option for OUT (and DEST on the same protocol); repeatable.")
@click.option("--endpoint-url", help="S3-compatible endpoint (sets client_kwargs.endpoint_url).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Paintings encoded in parallel.")
@click.option("--wait", "wait_s", default=300.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long to wait for another gallery build that is writing the same site.")
def gallery(out: str, site: str | None, publication: dict, storage_option: tuple[str, ...],
            endpoint_url: str | None, workers: int, wait_s: float) -> None:
    """Build or update a static gallery (viewer pages, videos, IIIF manifests) from OUT's committed paintings."""
    dest = site or posixpath.join(out.rstrip("/"), "gallery")
    try:
        summary = build_gallery(out, dest, storage_options=parse_storage_options(storage_option, endpoint_url),
                                publication=build_config(Publication, publication), workers=workers, wait_s=wait_s)
    except GalleryBusy as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(summary.paintings)} paintings ({len(summary.encoded)} encoded, {len(summary.reused)} "
               f"unchanged), {len(summary.unavailable)} not available, {len(summary.removed)} removed")
    for item in summary.skipped:
        click.echo(f"skipped {item.painting_id}: {item.reason}", err=True)
    click.echo(summary.index_url)
