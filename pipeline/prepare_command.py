"""`artmator prepare CATALOG -o OUT.parquet`: find, align and pose the faces of a catalog of whole paintings."""
from __future__ import annotations

import sys

import click

from artmator.pipeline.options import build_config, config_options, parse_storage_options, storage_options_option
from artmator.pipeline.prepare import PrepareConfig


@click.command("prepare")
@click.argument("catalog")
@click.option("-o", "--out", "out_uri", required=True, help="The manifest to write (OUT.parquet); the report "
              "(<stem>.report.parquet) and review page (<stem>.review.html) go beside it.")
@click.option("--actors", type=click.IntRange(min=1), default=None, help="Analysis actors (default: fits the cluster).")
@storage_options_option
@config_options(PrepareConfig)
def prepare(catalog: str, out_uri: str, actors, storage_option, endpoint_url, config: dict) -> None:
    """Analyse every painting of CATALOG (CSV, Parquet, or a IIIF Presentation 2.1/3 Manifest or Collection; a
    path or any fsspec/http(s) URI): find the face, its 68 landmarks, the backbone's training crop and the head
    pose, and write a manifest that `artmator run` accepts.

    Exit code 0 when every row was analysed (even if some have no face); non-zero for an unusable catalog.
    """
    from tqdm import tqdm

    from artmator.pipeline.catalog import CatalogError
    from artmator.pipeline.prepare import prepare as run_prepare

    if not out_uri.endswith(".parquet"):
        raise click.BadParameter("the output must end in .parquet", param_hint="--out")
    settings = build_config(PrepareConfig, config)
    bar = tqdm(unit="painting", file=sys.stderr, disable=not sys.stderr.isatty())

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        summary = run_prepare(catalog, out_uri, settings, parse_storage_options(storage_option, endpoint_url),
                              progress, actors)
    except (CatalogError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    by = ", ".join(f"{n} {s}" for s, n in summary.by_status.items())
    click.echo(f"{summary.total} rows analysed in {summary.seconds:.0f} s: {by}")
    click.echo(f"manifest: {summary.manifest_uri} ({summary.ok} paintings with a usable face)")
    click.echo(f"report: {summary.report_uri}")
    click.echo(f"review: {summary.review_uri}")
    failed = sum(n for s, n in summary.by_status.items() if s in ("storage", "internal"))
    sys.exit(1 if failed else 0)
