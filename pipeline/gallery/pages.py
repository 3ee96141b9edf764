"""HTML pages of the gallery, rendered server-side from packaged templates.

Every untrusted string passes through `html.escape` for its context (text or quoted attribute); only
http(s) URLs ever become links; page data for viewer.js is a `<script type="application/json">` block
escaped for `<`, `>`, `&`, U+2028 and U+2029. A strict Content-Security-Policy allows only same-origin
script/style/images, so even a missed escape could not run inline script.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from string import Template

from artmator.pipeline.provenance import AI_LABEL, AI_NOTE

from .iiif import http_url, painting_label
from .source import PaintingResult, Unavailable

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'")
STATIC_ASSETS = ("viewer.js", "style.css", "mesh-viewer.js", "favicon.svg", "search.js")
"""Files copied verbatim to `<site>/assets/`."""
PAGE_SIZE = 60
"""Cards per static index page: a catalogue of 20,000 works is 334 light pages, never one page of 20,000 cards."""
INDEX_FIELDS = ("id", "title", "artist", "date", "year", "flags", "media")
"""Columns of each row of the search index (`index.json`, `index-data.js`); `media`: the card's media folder."""


@dataclass(frozen=True)
class Card:
    """One painting on the index page."""

    painting_id: str
    title: str
    artist: str | None
    date: str | None
    media: str = ""
    """The painting's media folder, relative to p/<id>/ and ending in "/" (its thumbnail is there)."""
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ViewerInfo:
    """Site-side facts the viewer page needs besides result.json."""

    width: int
    height: int
    frames: int
    columns: int
    rows: int
    start: int
    wrap: bool
    expressions: list[str]
    """Expression names, in the order of the `expr/<i>.png` stills."""
    media: str = ""
    """The folder of the media this page shows, relative to the page and ending in "/" (one folder per
    version of the media, so a page never shows files of two versions)."""
    mesh: bool = False
    """The painting has a published `mesh.glb` (in the media folder)."""
    painting: tuple[int, int] | None = None
    """Size of the published `painting.jpg` (the source painting, in the media folder), if any."""
    model_card: bool = False
    """The painting has a published `model_card.md` (in the media folder)."""


def asset_bytes(name: str) -> bytes:
    """A packaged file from `pipeline/gallery/assets`."""
    return resources.files(__package__).joinpath("assets", name).read_bytes()


def _template(name: str) -> Template:
    return Template(asset_bytes(name).decode("utf-8"))


def esc(text: object) -> str:
    """Escape for HTML text and double- or single-quoted attributes."""
    return html.escape(str(text), quote=True)


def json_script(data: object) -> str:
    """JSON safe to place inside <script type="application/json">: cannot close the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def link_or_text(value: str) -> str:
    """An <a> for http(s) URLs, escaped plain text for anything else (javascript:, data:, prose)."""
    if url := http_url(value):
        return f'<a href="{esc(url)}" rel="noopener noreferrer nofollow">{esc(value)}</a>'
    return esc(value)


def _card(card: Card) -> str:
    base = f"p/{card.painting_id}/"
    lines = [f'<li class="card" data-painting="{esc(card.painting_id)}"><a href="{base}index.html">',
             f'<img src="{base}{card.media}thumb.webp" alt="" loading="lazy" decoding="async">',
             f'<span class="title">{esc(card.title)}</span></a>']
    lines += [f'<span class="{cls}">{esc(value)}</span>' for cls, value in (("artist", card.artist),
                                                                             ("date", card.date)) if value]
    return "".join(lines) + "</li>"


def _unavailable(items: list[Unavailable]) -> str:
    if not items:
        return ""
    rows = "\n".join(f'<li data-painting="{esc(u.painting_id)}">{esc(u.painting_id)} &mdash; '
                     f'not available: {esc(u.reason)}</li>' for u in items)
    return f'<section class="unavailable"><h2>Not available</h2>\n<ul>\n{rows}\n</ul></section>'


def index_page_name(number: int) -> str:
    """File name of static index page `number` (1-based): index.html, index-2.html, ..."""
    return "index.html" if number == 1 else f"index-{number}.html"


def _pager(number: int, pages: int) -> str:
    """Previous / next links and a few page numbers around the current one (plain links: works without JS)."""
    if pages <= 1:
        return ""
    shown = sorted({1, pages, *range(max(1, number - 2), min(pages, number + 2) + 1)})
    parts, last = [], 0
    for n in shown:
        if n - last > 1:
            parts.append('<li aria-hidden="true">&hellip;</li>')
        current = ' aria-current="page"' if n == number else ""
        parts.append(f'<li><a href="{index_page_name(n)}"{current}>{n}</a></li>')
        last = n
    prev = (f'<a rel="prev" href="{index_page_name(number - 1)}">&larr; Previous</a>' if number > 1 else "")
    nxt = (f'<a rel="next" href="{index_page_name(number + 1)}">Next &rarr;</a>' if number < pages else "")
    return (f'<nav class="pager" aria-label="Pages"><span class="pager-step">{prev}</span><ol>{"".join(parts)}</ol>'
            f'<span class="pager-step">{nxt}</span><span class="pager-where">Page {number} of {pages}</span></nav>')


def year_of(date: str | None) -> int | None:
    """The first 3-4 digit year in a catalogue date ("c. 1503", "1503-1506", "ca. 950"), for the date filter."""
    import re

    match = re.search(r"(?<!\d)(\d{3,4})(?!\d)", date or "")
    return int(match.group(1)) if match else None


def index_rows(cards: list[Card]) -> dict:
    """The search index: one compact row per painting (`INDEX_FIELDS`), in index order."""
    return {"version": 1, "fields": list(INDEX_FIELDS), "page_size": PAGE_SIZE,
            "items": [[c.painting_id, c.title, c.artist or "", c.date or "", year_of(c.date), list(c.flags), c.media]
                      for c in cards]}


def index_data_script(rows: dict) -> bytes:
    """The search index as a classic script (`window.artmatorIndex = ...`): pages opened from file:// cannot
    fetch() JSON, but they can load a script from their own folder."""
    return ("window.artmatorIndex = " + json_script(rows) + ";\n").encode("utf-8")


def render_index(title: str, cards: list[Card], unavailable: list[Unavailable]) -> dict[str, bytes]:
    """The gallery's front pages: `PAGE_SIZE` cards each (index.html, index-2.html, ...), paging links, a search
    box and filters (search.js over index-data.js), failed paintings as plain text on the first page."""
    count = f"{len(cards)} painting{'s' if len(cards) != 1 else ''}"
    pages = max(1, -(-len(cards) // PAGE_SIZE))
    flags = sorted({f for c in cards for f in c.flags})
    flag_options = "".join(f'<option value="{esc(f)}">{esc(f)}</option>' for f in flags)
    out = {}
    for number in range(1, pages + 1):
        chunk = cards[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
        pager = _pager(number, pages)
        page = _template("index.template.html").substitute(
            csp=CSP, title=esc(title), count=esc(count), cards="\n".join(map(_card, chunk)),
            ai_label=esc(AI_LABEL), ai_note=esc(AI_NOTE), pager=pager, flag_options=flag_options,
            unavailable=_unavailable(unavailable) if number == 1 else "")
        out[index_page_name(number)] = page.encode("utf-8")
    return out


def _metadata_rows(result: PaintingResult) -> str:
    meta = result.metadata
    rows = [("Artist", meta.artist and esc(meta.artist)), ("Date", meta.date and esc(meta.date)),
            ("Rights", meta.rights and link_or_text(meta.rights)),
            ("Credit", meta.credit_line and esc(meta.credit_line)),
            ("Source", meta.source_url and link_or_text(meta.source_url))]
    pose = result.pose_yaw_deg
    if pose is not None:
        how = {"landmarks": " (estimated from the face's landmarks)", "search": " (estimated by search)"}
        note = how.get(result.pose_source or "", " (estimated)" if result.pose_estimated else "")
        rows.append(("Pose", esc(f"yaw {pose:.0f}\u00b0{note}")))
    lines = [f'<dt>{label}</dt><dd class="{label.lower()}">{value}</dd>' for label, value in rows if value]
    lines += [f'<dt>{esc(key)}</dt><dd class="extra">{esc(value)}</dd>' for key, value in result.extra]
    return "\n".join(lines)


def _quality(result: PaintingResult) -> str:
    scores = [f"LPIPS to reference {result.lpips_ref:.3f}" if result.lpips_ref is not None else "",
              f"PSNR to reference {result.psnr_ref:.1f} dB" if result.psnr_ref is not None else ""]
    text = "; ".join(s for s in scores if s)
    parts = [f'<p class="scores">{esc(text)}</p>'] if text else []
    if result.face:
        parts.append(f'<p class="face-scores">{esc(_face_text(result.face))}</p>')
    if result.flags:
        parts.append('<ul class="flags">' + "".join(f"<li>{esc(f)}</li>" for f in result.flags) + "</ul>")
    else:
        parts.append('<p class="flags-none">No quality flags.</p>')
    return "\n".join(parts)


def _face_text(face: dict[str, float]) -> str:
    """The face-aware metrics in words (pretrained face-api networks; see the README's quality section)."""
    parts = []
    if (v := face.get("detected_fraction")) is not None:
        parts.append(f"face found in {100 * v:.0f} % of turntable frames")
    if (v := face.get("identity_consistency")) is not None:
        parts.append(f"identity consistency {v:.2f}")
    if (v := face.get("likeness")) is not None:
        parts.append(f"likeness to the painting {v:.2f}")
    if (v := face.get("pose_error_deg")) is not None:
        parts.append(f"pose error {v:.0f}\u00b0")
    return "Face metrics: " + "; ".join(parts)


def _painting_figure(label: str, size: tuple[int, int] | None, media: str) -> str:
    if not size:
        return ""
    return (f'<figure class="painting"><img src="{esc(media)}painting.jpg" width="{int(size[0])}" height="{int(size[1])}" '
            f'alt="{esc("The painting: " + label)}" loading="lazy" decoding="async">'
            "<figcaption>The painting (the catalogue's image; its own rights apply)</figcaption></figure>")


def render_viewer(site_title: str, result: PaintingResult, info: ViewerInfo) -> bytes:
    """One painting's interactive page (works without JS as a poster plus metadata)."""
    label = painting_label(result)
    buttons = "\n".join(f'<button type="button" data-expression="{i}" aria-pressed="false" disabled>'
                        f"{esc(name)}</button>" for i, name in enumerate(info.expressions))
    yaws = result.yaw_deg if len(result.yaw_deg) == info.frames else []
    data = {"title": label, "frames": info.frames, "columns": info.columns, "rows": info.rows,
            "fps": result.fps, "start": info.start, "wrap": info.wrap, "yaw_deg": yaws,
            "expressions": [{"name": n, "src": f"{info.media}expr/{i}.png"} for i, n in enumerate(info.expressions)],
            "mesh": f"{info.media}mesh.glb" if info.mesh else None}
    media = esc(info.media)
    page = _template("viewer.template.html").substitute(
        csp=CSP, title=esc(label), site_title=esc(site_title), last_frame=info.frames - 1, start=info.start,
        width=info.width, height=info.height, expression_buttons=buttons, metadata=_metadata_rows(result),
        quality=_quality(result), data=json_script(data), media=media,
        mesh_download=(f'<li><a href="{media}mesh.glb" download>3D mesh (glTF binary, .glb)</a></li>'
                       if info.mesh else ""),
        model_card_download=(f'<li><a href="{media}model_card.md">Model card: how this was made (Markdown)</a></li>'
                             if info.model_card else ""),
        painting_figure=_painting_figure(label, info.painting, info.media), ai_label=esc(AI_LABEL),
        ai_note=esc(AI_NOTE),
        mesh_script='<script src="../../assets/mesh-viewer.js"></script>' if info.mesh else "")
    return page.encode("utf-8")
