"""What a published gallery says about itself: `Publication` (base URL, title, language, provider, rights of the
renders), the config of `build_gallery`. Its fields are declared with `model.fields.setting`, so `gallery`, `run`
and `render` (which update the gallery at the end) derive their options from it (`pipeline.options.config_options`).

None of it changes a painting's committed files: a changed base URL or rights text rebuilds the gallery's pages
and manifests (their stamp's page key covers `Publication`), never a painting's tuning or renders."""
from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from artmator.model.fields import setting

_BCP47 = re.compile(r"^(?:none|[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)$")


@dataclass(frozen=True)
class Publication:
    """Site-wide publication facts: where the site is served, who publishes it, under which terms, in which
    language."""

    base_url: str | None = setting(
        None, "Public URL the gallery will be served from; IIIF ids are built on it, so IIIF viewers can fetch them "
              "(http(s)). Default: the site's own file:// (or bucket) URL.", metavar="URL")
    title: str = setting("artmator gallery", "Gallery title.")
    language: str = setting("none", "BCP 47 language of the catalogue's text (titles, artists...) in IIIF language "
                                    "maps; 'none' when the catalogue does not say. artmator's own text is English.")
    provider: str | None = setting(None, "Name of the publishing institution (IIIF provider; default: the gallery "
                                         "title).")
    provider_url: str | None = setting(None, "Homepage of the publishing institution (IIIF provider id; http(s)).",
                                       metavar="URL")
    render_rights: str | None = setting(
        None, "Rights of the AI renders: a Creative Commons or RightsStatements.org URI becomes the manifests' "
              "`rights`, other text is shown as text. The painting keeps its own rights (the catalogue's `rights` "
              "column) on its own canvas. Default: not stated.", metavar="URI|TEXT")

    def __post_init__(self):
        if self.base_url is not None:
            parts = urllib.parse.urlsplit(self.base_url)
            if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
                raise ValueError(f"base URL {self.base_url!r} must be an absolute URL, e.g. "
                                 "https://museum.example/gallery/")
            object.__setattr__(self, "base_url", self.base_url.rstrip("/") + "/")      # ids are joined onto it
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


__all__ = ["Publication", "http_url"]
