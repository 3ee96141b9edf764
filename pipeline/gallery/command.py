"""`artmator gallery OUT [--site DEST]`: publish committed paintings as a static site with IIIF manifests."""
from __future__ import annotations

import posixpath

import click

from artmator.pipeline.options import parse_storage_options

from .publication import publication_kwargs, publication_options
from .site import build_gallery


@click.command("gallery")
@click.argument("out")
@click.option("--site", "site", metavar="DEST", help="Where to write the site (default: OUT/gallery).")
@publication_options
@click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="fsspec storage option for OUT (and DEST on the same protocol); repeatable.")
@click.option("--endpoint-url", help="S3-compatible endpoint (sets client_kwargs.endpoint_url).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Paintings encoded in parallel.")
def gallery(out: str, site: str | None, storage_option: tuple[str, ...], endpoint_url: str | None, workers: int,
            **options) -> None:
    """Build or update a static gallery (viewer pages, videos, IIIF manifests) from OUT's committed paintings."""
    dest = site or posixpath.join(out.rstrip("/"), "gallery")
    summary = build_gallery(out, dest, storage_options=parse_storage_options(storage_option, endpoint_url),
                            workers=workers, **publication_kwargs(options))
    click.echo(f"{len(summary.paintings)} paintings ({len(summary.encoded)} encoded, {len(summary.reused)} "
               f"unchanged), {len(summary.unavailable)} not available, {len(summary.removed)} removed")
    for item in summary.skipped:
        click.echo(f"skipped {item.painting_id}: {item.reason}", err=True)
    click.echo(summary.index_url)
