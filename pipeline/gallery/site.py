"""`build_gallery`: turn committed paintings in OUT into a static, self-contained, IIIF-described website.

Site layout (`DEST`):
    index.html                  written last: the gallery is never a half-written page (page 1 of the index)
    index-<n>.html              further index pages, `pages.PAGE_SIZE` cards each (no page holds the whole catalogue)
    index.json, index-data.js   the search index (one compact row per painting); the .js copy is what search.js
                                loads, as pages opened from file:// cannot fetch JSON
    collection.json             IIIF Collection of every painting Manifest
    assets/viewer.js, style.css, mesh-viewer.js, search.js
    p/<id>/index.html           viewer page          p/<id>/manifest.json   IIIF Manifest
    p/<id>/m-<key>/             the media of one version: poster.png thumb.webp sprite.webp turntable.webm
                                turntable.mp4 turntable.webp expr/<i>.png (<key>: the media key below),
                                mesh.glb (the head as a glTF 2.0 mesh, when the painting has one: turned in
                                WebGL), painting.jpg (the source painting's web copy, when the commit holds one),
                                model_card.md (provenance; rewritten in place by a metadata refresh)
    p/<id>/_gallery.json        stamp, written last for the painting: keys that decide what to redo
    _claims/gallery/            the claim of the build that writes the site now (`pipeline.claims`)

Incremental: a painting's media are re-encoded only when the sha256s of its committed frames/stills, mesh and
painting copy (plus fps, expression list and this module's FORMAT) change; its pages and model card only when
result.json or model_card.md (e.g. a metadata refresh) or the publication settings (`Publication`: base URL,
title, language, provider, rights of the renders) change as well. Paintings no longer committed are removed from the site.

Readers never see a mix of two versions: new media go to a new `m-<key>/` folder, then the pages that point at
it, then the stamp; the index and collection are written after every painting, and only then are the media
folders and paintings they no longer show removed. A build killed at any point leaves each page showing one
complete version (the next build finishes the job). One build writes a site at a time: it holds the site's claim
(another build waits for it, or fails with the holder's run id).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import os
import posixpath
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import fsspec
from PIL import Image

from artmator.pipeline.layout import MESH, MODEL_CARD, PAINTING
from artmator.pipeline.provenance import mp4_xmp_box, video_tags, xmp_packet

from . import iiif, pages, video
from .publication import Publication
from .source import (CommittedPainting, IntegrityError, PaintingResult, Unavailable, latest_failures,
                     list_committed, parse_result, read_verified)

FORMAT = 4
"""Bump when encoded media or page structure change, so existing sites get rebuilt."""
STAMP = "_gallery.json"
PAGE_FILES = ("index.html", "manifest.json", STAMP)
"""What p/<id>/ holds besides its current media folder."""


@dataclass
class GallerySummary:
    """What one `build_gallery` call did."""

    site_uri: str
    index_path: str
    """Path of index.html in the site filesystem."""
    index_url: str
    """Where to open it: a file:// URL for local sites, else the base URL's index."""
    base_url: str
    paintings: list[str] = field(default_factory=list)
    """Ids shown, in index order."""
    encoded: list[str] = field(default_factory=list)
    """Ids whose media were (re-)encoded this time."""
    reused: list[str] = field(default_factory=list)
    """Ids whose media were already up to date."""
    unavailable: list[Unavailable] = field(default_factory=list)
    """Failed in the latest run (listed as text on the index)."""
    skipped: list[Unavailable] = field(default_factory=list)
    """Committed but not publishable (bad marker, files changed after commit); not shown."""
    removed: list[str] = field(default_factory=list)
    """Ids dropped from the site because they are no longer committed."""


@dataclass(frozen=True)
class MediaFacts:
    """Facts about encoded media, kept in the stamp so unchanged paintings need no decoding."""

    width: int
    height: int
    frames: int
    columns: int
    rows: int
    duration: float
    expressions: list[tuple[str, int, int]]
    mesh: bool = False
    painting: tuple[int, int] | None = None   # size of the published painting.jpg


@dataclass(frozen=True)
class Published:
    """A painting on the site: its index card and Manifest."""

    card: pages.Card
    manifest: object
    encoded: bool
    media_dir: str


class _Site:
    """Writes into the site filesystem; local writes go through a temp file + rename."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str):
        self.fs, self.root = fs, root.rstrip("/")
        self.local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def put(self, rel: str, data: bytes) -> None:
        path = self.path(rel)
        if not self.local:
            self.fs.pipe_file(path, data)  # object stores replace whole objects atomically
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def put_if_changed(self, rel: str, data: bytes) -> None:
        try:
            if self.fs.cat_file(self.path(rel)) == data:
                return
        except FileNotFoundError:
            pass
        self.put(rel, data)

    def remove(self, rel: str) -> None:
        try:
            self.fs.rm_file(self.path(rel))
        except FileNotFoundError:
            pass

    def read_json(self, rel: str) -> dict | None:
        try:
            doc = json.loads(self.fs.cat_file(self.path(rel)))
        except (FileNotFoundError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None


def _digest(doc: object) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _media_key(painting: CommittedPainting, result: PaintingResult) -> str:
    used = {rel: e.sha256 for rel, e in painting.files.items()
            if rel in ("reference.png", MESH, PAINTING) or rel.startswith(("renders/turntable",
                                                                            "renders/expressions/"))}
    return _digest({"format": FORMAT, "files": used, "fps": result.fps, "expressions": result.expressions})


def _start_frame(result: PaintingResult, frames: int) -> int:
    """The frame nearest the painting's own pose, so the viewer opens where the poster is."""
    if result.pose_yaw_deg is None or len(result.yaw_deg) != frames:
        return frames // 2
    return min(range(frames), key=lambda i: abs(result.yaw_deg[i] - result.pose_yaw_deg))


def _wraps(result: PaintingResult, frames: int) -> bool:
    """True when the turntable covers a full turn, so scrubbing may wrap from last to first frame."""
    yaws = result.yaw_deg
    if len(yaws) != frames or frames < 3:
        return False
    step = abs(yaws[1] - yaws[0])
    return abs(yaws[-1] - yaws[0]) + step >= 359.0


def _media_dir(media_key: str) -> str:
    """The folder of one version of a painting's media, inside p/<id>/."""
    return f"m-{media_key[:16]}"


def _encode_media(site: _Site, fs: fsspec.AbstractFileSystem, painting: CommittedPainting,
                  result: PaintingResult, media_dir: str) -> MediaFacts:
    """Read verified frames and stills, encode every published format, write them under p/<id>/<media_dir>/."""
    rel = f"p/{painting.painting_id}/{media_dir}/"
    frame_paths = painting.frame_paths()
    if not frame_paths:
        raise IntegrityError("no turntable frames in the commit marker")
    frames = [_image(read_verified(fs, painting, p)) for p in frame_paths]
    if len({f.size for f in frames}) != 1:
        raise IntegrityError("turntable frames differ in size")
    width, height = frames[0].size
    if "reference.png" in painting.files:
        poster = _image(read_verified(fs, painting, "reference.png")).convert("RGB").resize((width, height))
    else:
        poster = frames[len(frames) // 2]
    xmp, tags = xmp_packet(painting.painting_id), video_tags()        # every file here is AI-generated media
    site.put(rel + "poster.png", video.encode_png(poster, xmp=xmp))
    site.put(rel + "thumb.webp", video.encode_thumbnail(poster, xmp=xmp))
    site.put(rel + "sprite.webp", video.encode_sprite(frames, xmp=xmp))
    site.put(rel + "turntable.webm", video.encode_webm(frames, result.fps, tags=tags))
    site.put(rel + "turntable.mp4", video.encode_mp4(frames, result.fps, tags=tags, xmp_box=mp4_xmp_box(xmp)))
    if "renders/turntable.webp" in painting.files:  # the pipeline already encoded it with encode_webp (and XMP)
        site.put(rel + "turntable.webp", read_verified(fs, painting, "renders/turntable.webp"))
    else:
        site.put(rel + "turntable.webp", video.encode_webp(frames, result.fps, xmp=xmp))
    stills = []
    for name in result.expressions:
        source = f"renders/expressions/{name}.png"
        if source in painting.files:
            data = read_verified(fs, painting, source)
            size = _image(data).size
            site.put(f"{rel}expr/{len(stills)}.png", data)
            stills.append((name, *size))
    if MESH in painting.files:
        site.put(rel + "mesh.glb", read_verified(fs, painting, MESH))
    painting_size = None
    if PAINTING in painting.files:
        data = read_verified(fs, painting, PAINTING)
        painting_size = _image(data).size
        site.put(rel + "painting.jpg", data)
    columns, rows = video.sprite_grid(len(frames))
    return MediaFacts(width, height, len(frames), columns, rows,
                      round(len(video.ping_pong(frames)) / result.fps, 3), stills, MESH in painting.files,
                      painting_size)


def _painting_media(painting_id: str, facts: MediaFacts, media_dir: str, model_card: bool) -> iiif.PaintingMedia:
    """Published media with paths relative to the site root (Manifests resolve them against the base URL)."""
    pre = f"p/{painting_id}/{media_dir}/"
    w, h = facts.width + facts.width % 2, facts.height + facts.height % 2  # videos are padded to even sizes
    webm = iiif.Media(pre + "turntable.webm", "video/webm", w, h, facts.duration)
    mp4 = iiif.Media(pre + "turntable.mp4", "video/mp4", w, h, facts.duration)
    return iiif.PaintingMedia(
        painting_id=painting_id,
        videos=[webm, mp4],
        poster=iiif.Media(pre + "poster.png", "image/png", facts.width, facts.height),
        renderings=[mp4, iiif.Media(pre + "turntable.webp", "image/webp", facts.width, facts.height)],
        expressions=[(name, iiif.Media(f"{pre}expr/{i}.png", "image/png", ew, eh))
                     for i, (name, ew, eh) in enumerate(facts.expressions)],
        painting=(iiif.Media(pre + "painting.jpg", "image/jpeg", *facts.painting) if facts.painting else None),
        mesh=iiif.Media(pre + "mesh.glb", "model/gltf-binary") if facts.mesh else None,
        model_card=iiif.Media(pre + "model_card.md", "text/markdown") if model_card else None)


def _publish(site: _Site, fs: fsspec.AbstractFileSystem, painting: CommittedPainting,
             publication: Publication) -> Published:
    """Bring one painting's folder on the site up to date; returns its card and Manifest."""
    pid = painting.painting_id
    result_bytes = read_verified(fs, painting, "result.json")
    result = parse_result(result_bytes, pid)
    media_key = _media_key(painting, result)
    media_dir = _media_dir(media_key)
    card_entry = painting.files.get(MODEL_CARD)
    page_key = _digest({"media": media_key, "result": hashlib.sha256(result_bytes).hexdigest(),
                        "model_card": card_entry.sha256 if card_entry else None,
                        "publication": asdict(publication), "format": FORMAT})
    stamp = site.read_json(f"p/{pid}/{STAMP}") or {}
    encoded = stamp.get("media_key") != media_key
    if encoded:
        facts = _encode_media(site, fs, painting, result, media_dir)
    else:
        raw = stamp["media"]
        facts = MediaFacts(**{**raw, "expressions": [tuple(e) for e in raw["expressions"]],
                              "painting": tuple(raw["painting"]) if raw.get("painting") else None})
    has_card = card_entry is not None
    manifest = iiif.build_manifest(publication, result, _painting_media(pid, facts, media_dir, has_card))
    if encoded or stamp.get("page_key") != page_key:
        if has_card:     # rewritten by refreshes, like result.json: replaced in place, before the page naming it
            site.put(f"p/{pid}/{media_dir}/model_card.md", read_verified(fs, painting, MODEL_CARD))
        else:
            site.remove(f"p/{pid}/{media_dir}/model_card.md")
        site.put(f"p/{pid}/manifest.json", iiif.to_json(manifest))
        info = pages.ViewerInfo(facts.width, facts.height, facts.frames, facts.columns, facts.rows,
                                _start_frame(result, facts.frames), _wraps(result, facts.frames),
                                [name for name, _, _ in facts.expressions], f"{media_dir}/", facts.mesh,
                                facts.painting, has_card)
        site.put(f"p/{pid}/index.html", pages.render_viewer(publication.title, result, info))
        site.put(f"p/{pid}/{STAMP}", json.dumps({"format": FORMAT, "media_key": media_key, "page_key": page_key,
                                                 "run_id": painting.run_id, "media": asdict(facts)}).encode())
    meta = result.metadata
    card = pages.Card(pid, iiif.painting_label(result), meta.artist, meta.date, f"{media_dir}/",
                      tuple(result.flags))
    return Published(card, manifest, encoded, media_dir)


def _collect_media(site: _Site, published: list[Published]) -> None:
    """After the index is written: remove what no page shows any more (older media folders, files of older
    site formats) from each published painting's folder."""
    for p in published:
        folder = site.path(f"p/{p.card.painting_id}")
        site.fs.invalidate_cache(folder)
        try:
            entries = site.fs.ls(folder, detail=False)
        except FileNotFoundError:
            continue
        for entry in entries:
            name = posixpath.basename(entry.rstrip("/"))
            if name not in PAGE_FILES and name != p.media_dir:
                site.fs.rm(entry.rstrip("/"), recursive=True)


def default_base_url(fs: fsspec.AbstractFileSystem, root: str) -> str:
    """file:// URL of a local site, else `<protocol>://<root>/` (valid ids, but not fetchable by IIIF viewers)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return Path(root).resolve().as_uri().rstrip("/") + "/"
    return f"{protocol}://{root.strip('/')}/"


def _prune(site: _Site, keep: set[str]) -> list[str]:
    """Remove site folders of paintings no longer committed (only folders this module stamped)."""
    removed = []
    for stamp in site.fs.glob(site.path(f"p/*/{STAMP}")):
        folder = posixpath.dirname(stamp)
        if posixpath.basename(folder) not in keep:
            site.fs.rm(folder, recursive=True)
            removed.append(posixpath.basename(folder))
    return sorted(removed)


def build_gallery(out_uri: str, site_uri: str, storage_options: dict | None = None,
                  publication: Publication | None = None, site_storage_options: dict | None = None,
                  workers: int = 2, wait_s: float = 0.0, **fields) -> GallerySummary:
    """Build or update the static gallery for OUT at `site_uri`.

    `storage_options` open OUT; the site uses `site_storage_options`, or the same options when both URIs
    share a protocol. `publication`: what the site says about itself (`Publication`: title, base URL, language,
    provider, rights of the renders), or its fields as keywords (`title=...`, `base_url=...`). `base_url`
    prefixes IIIF ids; default: see `default_base_url`. Paintings are published by `workers` threads (encoders release the GIL). The build
    holds the site's claim; another build's live claim is waited for up to `wait_s` seconds, then GalleryBusy."""
    storage_options = storage_options or {}
    out_fs, out_path = fsspec.core.url_to_fs(out_uri, **storage_options)
    same_protocol = fsspec.core.split_protocol(out_uri)[0] == fsspec.core.split_protocol(site_uri)[0]
    site_opts = site_storage_options if site_storage_options is not None else (
        storage_options if same_protocol else {})
    site_fs, site_path = fsspec.core.url_to_fs(site_uri, **site_opts)
    site = _Site(site_fs, site_path)
    for fs in {id(out_fs): out_fs, id(site_fs): site_fs}.values():
        fs.invalidate_cache()  # fsspec caches instances and listings: a long-lived caller must see new commits
    publication = replace(publication or Publication(), **fields)
    publication = replace(publication, base_url=publication.base_url or default_base_url(site_fs, site.root))

    with _site_claim(site, wait_s):
        return _build(site, out_fs, out_path, site_uri, publication, workers)


class GalleryBusy(RuntimeError):
    """Another gallery build holds the site's claim (the message names its run and lease)."""


@contextlib.contextmanager
def _site_claim(site: _Site, wait_s: float):
    """Hold the site's claim for the build, waiting up to `wait_s` for another build to finish."""
    from artmator.pipeline.claims import Claimed, Claims
    from artmator.pipeline.layout import GALLERY_SUBJECT, site_claims_root

    claims = Claims(site.fs, site_claims_root(site.root), _gallery_run_id())
    if not claims.supported:
        yield None
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            claim = claims.take(GALLERY_SUBJECT, "gallery")
            break
        except Claimed as exc:
            if time.monotonic() >= deadline:
                raise GalleryBusy(f"the site {site.root} is being written by another gallery build: {exc}; "
                                  "try again when it has finished") from None
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    with claim:
        yield claim


def _gallery_run_id() -> str:
    from datetime import datetime, timezone

    return "gallery-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _build(site: _Site, out_fs, out_path: str, site_uri: str, publication: Publication, workers: int
           ) -> GallerySummary:
    base, title = publication.base_url, publication.title
    for name in pages.STATIC_ASSETS:              # unchanged assets are left alone: a rebuild writes what changed
        site.put_if_changed(f"assets/{name}", pages.asset_bytes(name))
    listing = list_committed(out_fs, out_path)
    summary = GallerySummary(site_uri, site.path("index.html"), "", base, skipped=list(listing.rejected))

    def publish(painting: CommittedPainting) -> Published | Unavailable:
        try:
            return _publish(site, out_fs, painting, publication)
        except (IntegrityError, ValueError, KeyError, OSError) as err:
            return Unavailable(painting.painting_id, f"{type(err).__name__}: {err}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = list(pool.map(publish, listing.committed))
    published = [o for o in outcomes if isinstance(o, Published)]
    summary.skipped += [o for o in outcomes if isinstance(o, Unavailable)]
    summary.paintings = [p.card.painting_id for p in published]
    summary.encoded = [p.card.painting_id for p in published if p.encoded]
    summary.reused = [p.card.painting_id for p in published if not p.encoded]
    shown = set(summary.paintings)
    summary.unavailable = [u for u in latest_failures(out_fs, out_path) if u.painting_id not in shown]

    site.put("collection.json", iiif.to_json(iiif.build_collection(publication, [p.manifest for p in published])))
    cards = [p.card for p in published]
    rows = pages.index_rows(cards)
    site.put("index.json", json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    site.put("index-data.js", pages.index_data_script(rows))
    index_pages = pages.render_index(title, cards, summary.unavailable)
    for name, data in index_pages.items():
        if name != "index.html":
            site.put(name, data)
    site.put("index.html", index_pages["index.html"])
    for stale in site.fs.glob(site.path("index-*.html")):   # the catalogue shrank: fewer pages (after index.html,
        if posixpath.basename(stale) not in index_pages:       # which no longer links them)
            site.fs.rm_file(stale)
    summary.removed = _prune(site, shown)         # only now: the index written before named them
    _collect_media(site, published)
    summary.index_url = (Path(site.path("index.html")).resolve().as_uri() if site.local else base + "index.html")
    return summary
