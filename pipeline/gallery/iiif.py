"""IIIF Presentation 3.0 documents (through iiif-prezi3): one Manifest per painting, one Collection for the site.

Ids are absolute URIs under `base_url`. IIIF viewers (Mirador, Universal Viewer, Clover) fetch manifests over
HTTP(S) only, so publish with `--base-url https://…/` (on `run`, `render` or `gallery`); the default file:// base
keeps documents valid and inspectable but no viewer will open them.

A painting's Manifest:
    items      the painting itself (a web-sized copy, when the commit holds one), with the PAINTING's rights;
               the turntable: a Video canvas whose body is a Choice of WebM and MP4, with a placeholderCanvas
               (the reference render) that viewers show before playing; one Image canvas per expression still
    rights     the RENDERS' rights (`Publication.render_rights`), never the painting's: they are different works
    summary    the AI-generated disclosure in words; metadata repeats it with the method and the IPTC
               digital-source type
    provider, partOf (the site's Collection), homepage (the gallery page, then the source record), rendering
               (MP4, animated WebP, mesh.glb as a Model, model_card.md)

Language maps: text artmator writes is English (`en`); catalogue text is in `Publication.language` (a BCP 47
tag, default `none`: the catalogue did not say).

Rights policy: `rights` must be a Creative Commons licence or a RightsStatements.org statement (IIIF 3.0
§3.3.1), emitted in its canonical vocabulary form (`http://rightsstatements.org/vocab/InC/1.0/`,
`http://creativecommons.org/licenses/by/4.0/`); page URLs (`/page/…/?language=en`, `deed.fr`, `legalcode`) are
mapped to it. Any other value is kept only as a metadata entry (text). Metadata values holding `<`, `>` or `&` are
emitted as one <span> of escaped text, so IIIF clients (which parse `<…>` values as HTML) display them literally.
"""
from __future__ import annotations

import html
import json
import re
import urllib.parse
from dataclasses import dataclass

from iiif_prezi3 import (Annotation, AnnotationBody, AnnotationPage, Canvas, Choice, Collection, KeyValueString,
                         Manifest, ManifestRef, PlaceholderCanvas)

from artmator.pipeline.provenance import AI_LABEL, AI_NOTE, DIGITAL_SOURCE_TYPE, METHOD

from .publication import Publication, http_url
from .source import PaintingResult

PRESENTATION_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
RIGHTS_STATEMENTS = ("InC", "InC-OW-EU", "InC-EDU", "InC-NC", "InC-RUU", "NoC-CR", "NoC-NC", "NoC-OKLR", "NoC-US",
                     "CNE", "UND", "NKC")
"""The twelve RightsStatements.org statements (version 1.0)."""
_RS_PATH = re.compile(r"^/(?:vocab|page|data)/([A-Za-z-]+)/1\.0/?")
_CC_LICENCE = re.compile(r"^/licenses/([a-z-]+)/(\d\.\d)(?:/([a-z]{2}(?:-[a-z]{2})?)(?=/|$))?/?")
_CC_PUBLIC_DOMAIN = re.compile(r"^/publicdomain/(zero|mark)/(1\.0)/?")


@dataclass(frozen=True)
class Media:
    """One published file of a painting: its site-relative path, MIME type and size."""

    path: str
    format: str
    width: int | None = None
    height: int | None = None
    duration: float | None = None


@dataclass(frozen=True)
class PaintingMedia:
    """What the site published for one painting, as the manifest describes it."""

    painting_id: str
    videos: list[Media]                      # the same turntable in each format (WebM first)
    poster: Media
    renderings: list[Media]
    expressions: list[tuple[str, Media]]
    painting: Media | None = None            # the source painting's web copy (p/<id>/painting.jpg)
    mesh: Media | None = None                # mesh.glb
    model_card: Media | None = None          # model_card.md


def iiif_rights(value: str | None) -> str | None:
    """The canonical `rights` URI of a Creative Commons licence or a RightsStatements.org statement, else None."""
    url = http_url(value)
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = parts.path
    if host == "rightsstatements.org":
        m = _RS_PATH.match(path)
        statement = next((s for s in RIGHTS_STATEMENTS if m and s.lower() == m.group(1).lower()), None)
        return f"http://rightsstatements.org/vocab/{statement}/1.0/" if statement else None
    if host == "creativecommons.org":
        if m := _CC_LICENCE.match(path.lower()):
            code, version, port = m.groups()
            return f"http://creativecommons.org/licenses/{code}/{version}/" + (f"{port}/" if port else "")
        if m := _CC_PUBLIC_DOMAIN.match(path.lower()):
            return f"http://creativecommons.org/publicdomain/{m.group(1)}/{m.group(2)}/"
    return None


def plain_value(text: str) -> str:
    """A IIIF value that every client shows as literal text.

    IIIF clients parse a value as (sanitised) HTML when it starts with `<` and ends with `>`, and some
    render any value as HTML; so a value holding markup characters becomes one escaped <span>."""
    if any(ch in text for ch in "<>&"):
        return f"<span>{html.escape(text, quote=False)}</span>"
    return text


def _en(text: str) -> dict[str, list[str]]:
    """Text artmator writes (English), which may quote catalogue or site text (a summary naming the title, the
    gallery title as provider): literal text in every client (`plain_value`)."""
    return {"en": [plain_value(text)]}


def _catalogue(text: str, publication: Publication) -> dict[str, list[str]]:
    """Text from the catalogue, in its declared language."""
    return {publication.language: [plain_value(text)]}


def _pair(label: str, value: str, language: str = "en") -> KeyValueString:
    return KeyValueString(label=_en(label), value={language: [plain_value(value)]})


def _resource(base: str, media: Media, kind: str) -> dict:
    resource = {"id": base + media.path, "type": kind, "format": media.format}
    if media.width and media.height:
        resource.update(width=media.width, height=media.height)
    if media.duration is not None:
        resource["duration"] = media.duration
    return resource


def painting_label(result: PaintingResult) -> str:
    """Human label: the title, else the painting id."""
    return result.metadata.title or result.painting_id


def summary_text(result: PaintingResult) -> str:
    """One sentence saying what the Manifest shows and that a machine made it."""
    meta = result.metadata
    what = f"\u201c{painting_label(result)}\u201d" + (f" by {meta.artist}" if meta.artist else "") + (
        f" ({meta.date})" if meta.date else "")
    return (f"{AI_LABEL} of the painting {what}: a 3D head tuned to the painting with {METHOD}, shown as a "
            "turntable video, expression stills and a 3D mesh.")


def _metadata(result: PaintingResult, publication: Publication) -> list[KeyValueString]:
    meta = result.metadata
    lang = publication.language
    pairs = [("Title", meta.title, lang), ("Artist", meta.artist, lang), ("Date", meta.date, lang)]
    if meta.rights and not iiif_rights(meta.rights):
        pairs.append(("Rights of the painting", meta.rights, lang))
    if publication.render_rights and not iiif_rights(publication.render_rights):
        pairs.append(("Rights of the renders", publication.render_rights, "en"))
    pairs.append(("Source", meta.source_url, "none"))
    pairs += [(key, value, lang) for key, value in result.extra]   # pass-through manifest columns
    pairs += [("AI-generated", f"{AI_LABEL}. {AI_NOTE}", "en"), ("Method", METHOD, "en"),
              ("Digital source type", DIGITAL_SOURCE_TYPE, "none")]
    if result.flags:
        pairs.append(("Quality flags", ", ".join(result.flags), "none"))
    return [_pair(label, value, language) for label, value, language in pairs if value]


def _painting_annotation(canvas_id: str, body) -> AnnotationPage:
    annotation = Annotation(id=f"{canvas_id}/annotation/painting", motivation="painting", body=body, target=canvas_id)
    # Painting annotations belong in `items` (canvas.make_annotation would put them under `annotations`).
    return AnnotationPage(id=f"{canvas_id}/page", items=[annotation])


def _image_canvas(base: str, canvas_id: str, label: dict, media: Media, cls=Canvas, **extra):
    canvas = cls(id=canvas_id, width=media.width, height=media.height, label=label, **extra)
    canvas.items = [_painting_annotation(canvas_id, AnnotationBody(**_resource(base, media, "Image")))]
    return canvas


def _turntable_canvas(base: str, manifest_base: str, media: PaintingMedia) -> Canvas:
    canvas_id = f"{manifest_base}canvas/turntable"
    first = media.videos[0]
    bodies = [AnnotationBody(**_resource(base, video, "Video")) for video in media.videos]
    body = bodies[0] if len(bodies) == 1 else Choice(items=bodies)
    placeholder = _image_canvas(base, f"{canvas_id}/placeholder", _en("Reference render"), media.poster,
                                PlaceholderCanvas)
    canvas = Canvas(id=canvas_id, width=first.width, height=first.height, duration=first.duration,
                    label=_en("Turntable (AI-generated)"), placeholderCanvas=placeholder,
                    thumbnail=[_resource(base, media.poster, "Image")])     # viewers' canvas strips show it
    canvas.items = [_painting_annotation(canvas_id, body)]
    return canvas


def build_manifest(publication: Publication, result: PaintingResult, media: PaintingMedia) -> Manifest:
    """The painting's Manifest (see the module docstring for what goes where)."""
    base = publication.base_url
    manifest_base = f"{base}p/{media.painting_id}/"
    meta = result.metadata
    label = _catalogue(painting_label(result), publication) if meta.title else _en(result.painting_id)
    manifest = Manifest(id=manifest_base + "manifest.json", label=label, summary=_en(summary_text(result)))
    canvases = []
    if media.painting is not None:
        extra = {}
        if rights := iiif_rights(meta.rights):
            extra["rights"] = rights
        if meta.credit_line:
            extra["requiredStatement"] = _pair("Attribution", meta.credit_line, publication.language)
        canvases.append(_image_canvas(base, f"{manifest_base}canvas/painting", _en("The painting"), media.painting,
                                      **extra))
    canvases.append(_turntable_canvas(base, manifest_base, media))
    canvases += [_image_canvas(base, f"{manifest_base}canvas/expression-{i}", _en(f"Expression: {name} "
                                                                                    "(AI-generated)"), still)
                 for i, (name, still) in enumerate(media.expressions)]
    manifest.items = canvases
    manifest.thumbnail = [_resource(base, media.poster, "Image")]
    renderings = [{**_resource(base, r, "Video" if r.duration else "Image"), "label": _en(f"Turntable ({r.format})")}
                  for r in media.renderings]
    if media.mesh is not None:
        renderings.append({**_resource(base, media.mesh, "Model"), "label": _en("3D mesh (glTF binary)")})
    if media.model_card is not None:
        renderings.append({**_resource(base, media.model_card, "Text"), "label": _en("Model card (provenance)")})
    manifest.rendering = renderings
    manifest.metadata = _metadata(result, publication)
    if meta.credit_line:
        manifest.requiredStatement = _pair("Attribution", meta.credit_line, publication.language)
    if rights := iiif_rights(publication.render_rights):
        manifest.rights = rights
    provider_id = http_url(publication.provider_url) or f"{base}#provider"
    provider = {"id": provider_id, "type": "Agent", "label": _en(publication.provider or publication.title)}
    if http_url(publication.provider_url):
        provider["homepage"] = [{"id": publication.provider_url, "type": "Text", "format": "text/html",
                                 "label": _en(publication.provider or publication.title)}]
    manifest.provider = [provider]
    manifest.partOf = [{"id": f"{base}collection.json", "type": "Collection"}]
    homepage = [{"id": f"{manifest_base}index.html", "type": "Text", "format": "text/html",
                 "label": _en("Gallery page")}]
    if source := http_url(meta.source_url):
        homepage.append({"id": source, "type": "Text", "format": "text/html", "label": _en("Source record")})
        manifest.seeAlso = [{"id": source, "type": "Text", "format": "text/html", "label": _en("Source record")}]
    manifest.homepage = homepage
    return manifest


def build_collection(publication: Publication, manifests: list[Manifest]) -> Collection:
    """The gallery Collection referencing every painting Manifest (label + thumbnail, no full embed)."""
    base = publication.base_url
    collection = Collection(id=base + "collection.json", label=_en(publication.title),
                            summary=_en(f"{AI_LABEL}s of painted portraits, one Manifest per painting."))
    collection.items = [ManifestRef(id=m.id, type="Manifest", label=m.label, thumbnail=m.thumbnail)
                        for m in manifests]
    return collection


def to_json(resource: Manifest | Collection) -> bytes:
    """Indented JSON-LD with the Presentation 3 context (prezi3's own json() ignores `indent`)."""
    doc = json.loads(resource.json())
    doc["@context"] = PRESENTATION_CONTEXT
    ordered = {"@context": doc.pop("@context"), **doc}
    return json.dumps(ordered, indent=2, ensure_ascii=False).encode("utf-8")
