"""`artmator gallery OUT [--site DEST]`: publish committed paintings as a static site with IIIF manifests."""
from __future__ import annotations

import posixpath
import urllib.parse

import click

from artmator.pipeline.options import parse_storage_options

from .site import GalleryBusy, build_gallery


def _check_base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
        raise click.BadParameter("must be an absolute URL, e.g. https://museum.example/gallery/")
    return value


@click.command("gallery")
@click.argument("out")
@click.option("--site", "site", metavar="DEST", help="Where to write the site (default: OUT/gallery).")
@click.option("--base-url", callback=_check_base_url,
              help="Public URL the site will be served from; IIIF ids are built on it. IIIF viewers need "
                   "http(s). Default: the site's own file:// (or bucket) URL.")
@click.option("--title", default="artmator gallery", show_default=True, help="Gallery title.")
@click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="fsspec storage option for OUT (and DEST on the same protocol); repeatable.")
@click.option("--endpoint-url", help="S3-compatible endpoint (sets client_kwargs.endpoint_url).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Paintings encoded in parallel.")
@click.option("--wait", "wait_s", default=300.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long to wait for another gallery build that is writing the same site.")
def gallery(out: str, site: str | None, base_url: str | None, title: str, storage_option: tuple[str, ...],
            endpoint_url: str | None, workers: int, wait_s: float) -> None:
    """Build or update a static gallery (viewer pages, videos, IIIF manifests) from OUT's committed paintings."""
    dest = site or posixpath.join(out.rstrip("/"), "gallery")
    try:
        summary = build_gallery(out, dest, storage_options=parse_storage_options(storage_option, endpoint_url),
                                title=title, base_url=base_url, workers=workers, wait_s=wait_s)
    except GalleryBusy as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(summary.paintings)} paintings ({len(summary.encoded)} encoded, {len(summary.reused)} "
               f"unchanged), {len(summary.unavailable)} not available, {len(summary.removed)} removed")
    for item in summary.skipped:
        click.echo(f"skipped {item.painting_id}: {item.reason}", err=True)
    click.echo(summary.index_url)
