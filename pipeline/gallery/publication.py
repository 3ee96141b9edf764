"""What a published gallery says about itself (base URL, language, provider, rights of the renders) and the
command-line options that set it; shared by `gallery`, `run` and `render` (which update the gallery at the end).
Light on imports: the CLI reads it at start-up."""
from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

import click

_BCP47 = re.compile(r"^(?:none|[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)$")


@dataclass(frozen=True)
class Publication:
    """Site-wide publication facts (gallery options): who publishes, under which terms, in which language."""

    base_url: str                            # absolute, ends with "/"
    title: str = "artmator gallery"
    language: str = "none"                   # BCP 47 tag of the catalogue's text ("none": not stated)
    provider: str | None = None              # the publishing institution's name (default: the site title)
    provider_url: str | None = None          # its homepage (http(s))
    render_rights: str | None = None         # rights of the renders (CC / RightsStatements URI, or text)

    def __post_init__(self):
        if not _BCP47.fullmatch(self.language or ""):
            raise ValueError(f"language {self.language!r} is not a BCP 47 tag (e.g. en, fr, nl-BE) or 'none'")
        if self.provider_url is not None and not http_url(self.provider_url):
            raise ValueError(f"provider URL {self.provider_url!r} must be an absolute http(s) URL")


def http_url(value: str | None) -> str | None:
    """`value` if it is an absolute http(s) URL without whitespace or control characters, else None."""
    if not value or any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in value):
        return None
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.hostname else None


PUBLICATION_OPTIONS = ("base_url", "title", "language", "provider", "provider_url", "render_rights")


def _check_base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
        raise click.BadParameter("must be an absolute URL, e.g. https://museum.example/gallery/")
    return value


def _check_language(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _BCP47.fullmatch(value or ""):
        raise click.BadParameter(f"{value!r} is not a BCP 47 tag (e.g. en, fr, nl-BE) or 'none'")
    return value


def _check_http(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not http_url(value):
        raise click.BadParameter("must be an absolute http(s) URL")
    return value


def publication_options(fn):
    """The gallery's publication options (`build_gallery` keywords of the same names)."""
    options = [
        click.option("--base-url", callback=_check_base_url,
                     help="Public URL the gallery will be served from; IIIF ids are built on it, so IIIF viewers "
                          "can fetch them (http(s)). Default: the site's own file:// (or bucket) URL."),
        click.option("--title", default="artmator gallery", show_default=True, help="Gallery title."),
        click.option("--language", default="none", show_default=True, callback=_check_language,
                     help="BCP 47 language of the catalogue's text (titles, artists...) in IIIF language maps; "
                          "'none' when the catalogue does not say. artmator's own text is English."),
        click.option("--provider", default=None,
                     help="Name of the publishing institution (IIIF provider; default: the gallery title)."),
        click.option("--provider-url", default=None, callback=_check_http,
                     help="Homepage of the publishing institution (IIIF provider id)."),
        click.option("--render-rights", default=None, metavar="URI|TEXT",
                     help="Rights of the AI renders: a Creative Commons or RightsStatements.org URI becomes the "
                          "manifests' `rights`, other text is shown as text. The painting keeps its own rights (the "
                          "catalogue's `rights` column) on its own canvas. Default: not stated."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def publication_kwargs(options: dict) -> dict:
    """Pop the publication options from a command's keyword arguments, as `build_gallery` keywords."""
    return {name: options.pop(name) for name in PUBLICATION_OPTIONS}
