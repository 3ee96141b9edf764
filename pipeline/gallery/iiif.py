"""IIIF Presentation 3.0 documents (through iiif-prezi3): one Manifest per painting, one Collection for the site.

Ids are absolute URIs under `base_url`. IIIF viewers (Mirador, Universal Viewer, Clover) fetch manifests
over HTTP(S) only, so publish with `--base-url https://…/`; the default file:// base keeps documents
valid and inspectable but no viewer will open them.

Rights policy: `rights` must be a Creative Commons or RightsStatements.org URI (IIIF 3.0 §3.3.1); those
are emitted in their canonical http:// form. Any other http(s) rights URI, or a non-URI rights string,
is kept only as a "Rights" metadata entry (text). Metadata values holding `<`, `>` or `&` are emitted
as one <span> of escaped text, so IIIF clients (which parse `<…>` values as HTML) display them literally.
"""
from __future__ import annotations

import html
import json
import urllib.parse
from dataclasses import dataclass

from iiif_prezi3 import (Annotation, AnnotationBody, AnnotationPage, Canvas, Collection, KeyValueString,
                         Manifest, ManifestRef)

from .source import PaintingResult

PRESENTATION_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
RIGHTS_HOSTS = {"creativecommons.org", "rightsstatements.org"}


@dataclass(frozen=True)
class Media:
    """One published file of a painting: its site-relative path, MIME type and size."""

    path: str
    format: str
    width: int
    height: int
    duration: float | None = None


@dataclass(frozen=True)
class PaintingMedia:
    """What the site published for one painting, as the manifest describes it."""

    painting_id: str
    video: Media
    poster: Media
    renderings: list[Media]
    expressions: list[tuple[str, Media]]


def http_url(value: str | None) -> str | None:
    """`value` if it is an absolute http(s) URL without whitespace or control characters, else None."""
    if not value or any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in value):
        return None
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def iiif_rights(value: str | None) -> str | None:
    """The `rights` value for a CC / RightsStatements URI (canonical http form), else None."""
    url = http_url(value)
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    if host not in RIGHTS_HOSTS:
        return None
    return urllib.parse.urlunsplit(("http", host, parts.path, "", ""))


def plain_value(text: str) -> str:
    """A IIIF value that every client shows as literal text.

    IIIF clients parse a value as (sanitised) HTML when it starts with `<` and ends with `>`, and some
    render any value as HTML; so a value holding markup characters becomes one escaped <span>."""
    if any(ch in text for ch in "<>&"):
        return f"<span>{html.escape(text, quote=False)}</span>"
    return text


def _lang(text: str) -> dict[str, list[str]]:
    return {"none": [text]}


def _en(text: str) -> dict[str, list[str]]:
    return {"en": [text]}


def _pair(label: str, value: str) -> KeyValueString:
    return KeyValueString(label=_en(label), value=_lang(plain_value(value)))


def _resource(base: str, media: Media, kind: str) -> dict:
    resource = {"id": base + media.path, "type": kind, "format": media.format,
                "width": media.width, "height": media.height}
    if media.duration is not None:
        resource["duration"] = media.duration
    return resource


def painting_label(result: PaintingResult) -> str:
    """Human label: the title, else the painting id."""
    return result.metadata.title or result.painting_id


def _metadata(result: PaintingResult) -> list[KeyValueString]:
    meta = result.metadata
    pairs = [("Title", meta.title), ("Artist", meta.artist), ("Date", meta.date)]
    if meta.rights and not iiif_rights(meta.rights):
        pairs.append(("Rights", meta.rights))
    pairs.append(("Source", meta.source_url))
    pairs += list(result.extra)                        # pass-through manifest columns (e.g. accession_number)
    if result.flags:
        pairs.append(("Quality flags", ", ".join(result.flags)))
    return [_pair(label, value) for label, value in pairs if value]


def _canvas(base: str, manifest_base: str, slug: str, label: str, media: Media, kind: str) -> Canvas:
    canvas_id = f"{manifest_base}canvas/{slug}"
    body = AnnotationBody(**_resource(base, media, kind))
    annotation = Annotation(id=f"{canvas_id}/annotation/painting", motivation="painting", body=body,
                            target=canvas_id)
    canvas = Canvas(id=canvas_id, width=media.width, height=media.height,
                    label=_lang(label), **({"duration": media.duration} if media.duration else {}))
    # Painting annotations belong in `items` (canvas.make_annotation would put them under `annotations`).
    canvas.items = [AnnotationPage(id=f"{canvas_id}/page", items=[annotation])]
    return canvas


def build_manifest(base_url: str, result: PaintingResult, media: PaintingMedia) -> Manifest:
    """The painting's Manifest: a turntable video canvas, then one image canvas per expression still."""
    manifest_base = f"{base_url}p/{media.painting_id}/"
    manifest = Manifest(id=manifest_base + "manifest.json", label=_lang(painting_label(result)))
    canvases = [_canvas(base_url, manifest_base, "turntable", "turntable", media.video, "Video")]
    canvases += [_canvas(base_url, manifest_base, f"expression-{i}", name, still, "Image")
                 for i, (name, still) in enumerate(media.expressions)]
    manifest.items = canvases
    manifest.thumbnail = [_resource(base_url, media.poster, "Image")]
    manifest.rendering = [{**_resource(base_url, r, "Video" if r.duration else "Image"),
                           "label": _en(f"Turntable ({r.format})")} for r in media.renderings]
    meta = result.metadata
    manifest.metadata = _metadata(result) or None
    if meta.credit_line:
        manifest.requiredStatement = _pair("Attribution", meta.credit_line)
    if rights := iiif_rights(meta.rights):
        manifest.rights = rights
    if source := http_url(meta.source_url):
        manifest.homepage = [{"id": source, "type": "Text", "format": "text/html", "label": _en("Source")}]
        manifest.seeAlso = [{"id": source, "type": "Text", "format": "text/html", "label": _en("Source record")}]
    return manifest


def build_collection(base_url: str, title: str, manifests: list[Manifest]) -> Collection:
    """The gallery Collection referencing every painting Manifest (label + thumbnail, no full embed)."""
    collection = Collection(id=base_url + "collection.json", label=_lang(title))
    collection.items = [ManifestRef(id=m.id, type="Manifest", label=m.label, thumbnail=m.thumbnail)
                        for m in manifests]
    return collection


def to_json(resource: Manifest | Collection) -> bytes:
    """Indented JSON-LD with the Presentation 3 context (prezi3's own json() ignores `indent`)."""
    doc = json.loads(resource.json())
    doc["@context"] = PRESENTATION_CONTEXT
    ordered = {"@context": doc.pop("@context"), **doc}
    return json.dumps(ordered, indent=2, ensure_ascii=False).encode("utf-8")
