"""Fixtures for the gallery tests: a synthetic OUT tree written by hand, and one headless Chromium."""
from __future__ import annotations

import contextlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from artmator.pipeline.gallery import encode_webp
from artmator.pipeline.provenance import model_card

SCREENSHOTS = Path(__file__).parent / "_screenshots"
XSS_TITLE = '</script><img src=x onerror="window.__pwned=1">'
XSS_METADATA = {
    "title": XSS_TITLE,
    "artist": "</script><script>window.__pwned=2;alert(1)</script>",
    "date": '"><svg onload="window.__pwned=3">',
    "rights": "javascript:alert(1)",
    "credit_line": "Gift of Zoë & Łukasz \u2028 <b>bold</b> \u2029 'quoted' \"double\" <!-- -->",
    "source_url": "javascript:window.__pwned=4",
}


def draw_frames(count: int, size: int, hue: int) -> list[Image.Image]:
    """A coloured ellipse that turns with the frame index, with the index printed: every frame differs."""
    frames = []
    for i in range(count):
        image = Image.new("RGB", (size, size), (24, 24, 40))
        draw = ImageDraw.Draw(image)
        squeeze = abs(math.cos(math.pi * i / count)) * size * 0.3
        colour = ((hue + 9 * i) % 256, (90 + 5 * i) % 256, (200 - 4 * i) % 256)
        draw.ellipse((size * 0.15 + squeeze, size * 0.1, size * 0.85 - squeeze * 0.2, size * 0.9), fill=colour)
        draw.rectangle((size * 0.1 + i * size * 0.02, size * 0.45, size * 0.2 + i * size * 0.02, size * 0.55),
                       fill=(255, 255, 255))
        draw.text((4, 4), f"{i:03d}", fill=(255, 255, 0))
        frames.append(image)
    return frames


def _png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class PaintingSpec:
    """What to write for one synthetic painting."""

    painting_id: str
    metadata: dict = field(default_factory=dict)
    frames: int = 24
    size: int = 96
    hue: int = 0
    expressions: tuple[str, ...] = ("happiness", "surprise")
    commit: bool = True
    with_webp: bool = False
    run_id: str = "run-1"
    config_hash: str = "cfg-a"
    extra: dict = field(default_factory=dict)
    mesh: bool = False
    painting: bool = False              # a web copy of the whole painting (painting.jpg), as a tune commits it


def sphere_glb(hue: int = 0) -> bytes:
    """A real GLB through the pipeline's encoder: marching cubes of a ball, coloured by height and side (so a
    turn changes the view), with one expression morph target."""
    import numpy as np
    from skimage.measure import marching_cubes

    from artmator.model.mesh import HeadMesh, encode_glb
    from artmator.pipeline.provenance import glb_extras

    axis = np.linspace(-0.1, 0.1, 24)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    vertices, faces, _, _ = marching_cubes(0.08 - np.sqrt(x * x + y * y + z * z), 0.0,
                                           spacing=(axis[1] - axis[0],) * 3)
    vertices = (vertices - 0.1).astype(np.float32)
    t, side = (vertices[:, 1:2] + 0.1) / 0.2, (vertices[:, 0:1] + 0.1) / 0.2
    colours = np.concatenate([(side + hue / 255) % 1.0, t, 1 - t], axis=1)
    # A "happiness" morph target: the lower front of the ball widens sideways (a visible change from the front).
    lower_front = ((vertices[:, 1] < 0) & (vertices[:, 2] > 0))[:, None]
    widened = vertices + lower_front * vertices * np.array([[0.6, 0.0, 0.0]], dtype=np.float32)
    return encode_glb(HeadMesh(vertices, faces[:, ::-1].astype(np.int64), (colours * 255).astype(np.uint8),
                               morphs={"happiness": widened.astype(np.float32)}), glb_extras())


def write_painting(out: Path, spec: PaintingSpec) -> Path:
    """Write a painting through the output store (the layout's one home): files in a new version folder, then
    the commit marker (if `commit`; else the files only, as a crashed attempt leaves them). Returns the folder
    of the painting's versions."""
    from artmator.pipeline.storage import OutputStore

    files: dict[str, bytes] = {}
    frames = draw_frames(spec.frames, spec.size, spec.hue)
    for i, frame in enumerate(frames):
        files[f"renders/turntable/{i:03d}.png"] = _png(frame)
    files["reference.png"] = _png(frames[spec.frames // 3])
    if spec.with_webp:
        files["renders/turntable.webp"] = encode_webp(frames, 12.0)
    if spec.mesh:
        files["mesh.glb"] = sphere_glb(spec.hue)
    if spec.painting:
        canvas = Image.new("RGB", (spec.size * 3 // 4, spec.size), (120, 90, 40))
        ImageDraw.Draw(canvas).ellipse((10, 10, spec.size * 3 // 4 - 10, spec.size // 2), fill=(230, 190, 160))
        buffer = io.BytesIO()
        canvas.save(buffer, format="JPEG")
        files["painting.jpg"] = buffer.getvalue()
    for j, name in enumerate(spec.expressions):
        still = Image.new("RGB", (spec.size, spec.size), (40 + 60 * j, 160, 80))
        ImageDraw.Draw(still).text((4, spec.size // 2), name, fill=(0, 0, 0))
        files[f"renders/expressions/{name}.png"] = _png(still)
    span = 30.0
    yaws = [-span + 2 * span * i / (spec.frames - 1) for i in range(spec.frames)]
    result = {"painting_id": spec.painting_id,
              "metadata": {k: spec.metadata.get(k) for k in
                           ("title", "artist", "date", "rights", "credit_line", "source_url")},
              "extra": dict(spec.extra),
              "pose": {"yaw_deg": yaws[spec.frames // 3], "pitch_deg": 0.0, "estimated": True},
              "resolution": spec.size,
              "turntable": {"frames": spec.frames, "yaw_deg": yaws, "fps": 12.0},
              "expressions": list(spec.expressions),
              "quality": {"lpips_ref": 0.21, "psnr_ref": 24.5, "flags": ["low_psnr"] if spec.hue else []},
              "timings": {"total_s": 1.0}, "losses": {"final": 0.1}}
    files["result.json"] = json.dumps(result).encode()
    files["model_card.md"] = model_card(result)
    store = OutputStore(str(out))
    if spec.commit:
        store.write_painting(spec.painting_id, files, {"run_id": spec.run_id, "config_hash": spec.config_hash,
                                                       "committed_at": "2025-01-01T00:00:00Z"})
    else:
        root = out / "paintings" / spec.painting_id / "v000001-abcdef"
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
    return out / "paintings" / spec.painting_id


def marker_file(out: Path, painting_id: str) -> Path:
    """The current commit marker of a painting written by `write_painting`."""
    [path] = sorted((out / "commits" / painting_id).glob("*.json"))
    return path


def write_report(out: Path, run_id: str, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = out / "runs" / run_id / "report.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


MONA = PaintingSpec("mona.lisa", {"title": "Portrait of a Lady", "artist": "A. Painter", "date": "c. 1503",
                                  "rights": "https://creativecommons.org/publicdomain/zero/1.0/",
                                  "credit_line": "Gift of the Friends of the Museum, 1901",
                                  "source_url": "https://collection.example.org/objects/42"},
                    hue=30, with_webp=True, mesh=True, painting=True)
XSS = PaintingSpec("xss-1", XSS_METADATA, hue=140, expressions=("happiness",))
HIDDEN = PaintingSpec("no_marker", {"title": "Hidden: not committed"}, commit=False)
FAILED_ROWS = [{"painting_id": "broken_1", "status": "failed", "error_kind": "no_face",
                "message": "<img src=x onerror=\"window.__pwned=5\"> no face found"},
               {"painting_id": "mona.lisa", "status": "done", "error_kind": None, "message": None},
               {"painting_id": "skipped_1", "status": "skipped", "error_kind": None, "message": None}]


@dataclass
class BuiltSite:
    """A synthetic OUT tree and the gallery built from it once for the session."""

    out: Path
    site: Path
    summary: object


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> BuiltSite:
    from artmator.pipeline.gallery import build_gallery

    out = tmp_path_factory.mktemp("out")
    for spec in (MONA, XSS, HIDDEN):
        write_painting(out, spec)
    write_report(out, "run-0", [{"painting_id": "old_failure", "status": "failed", "error_kind": "oom",
                                 "message": "stale"}])
    write_report(out, "run-1", FAILED_ROWS)
    old = out / "runs" / "run-0" / "report.parquet"
    import os

    os.utime(old, (1_000_000_000, 1_000_000_000))  # run-0 is the older report
    site = out / "gallery"
    return BuiltSite(out, site, build_gallery(str(out), str(site), title="Test <Gallery>"))


@contextlib.contextmanager
def serve_folder(folder: Path):
    """A real HTTP server on 127.0.0.1 (random port) serving `folder`; yields its base URL."""
    import functools
    import http.server
    import threading

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".glb": "model/gltf-binary",
                          ".webp": "image/webp", ".webm": "video/webm"}

        def log_message(self, *args):  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def served_site(built_site):
    """The session's site served over HTTP (IIIF viewers and the WebGL mesh viewer need http(s))."""
    with serve_folder(built_site.site) as url:
        yield url


# Chromium's software GL (SwiftShader) notes a "GPU stall" whenever the test reads the canvas back for a
# screenshot: caused by the test, not the page.
_TEST_INDUCED = re.compile(r"^\[\.WebGL-[0-9a-fx]+\]GL Driver Message \(OpenGL, Performance, .*\): GPU stall due to "
                           r"ReadPixels")


@dataclass
class PageLog:
    """Everything a page did that a clean static site should never do."""

    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def open_page(browser, url: str, **context_options):
    """A fresh page that records console errors, page errors, failed requests and dialogs."""
    context = browser.new_context(**{"viewport": {"width": 1100, "height": 800}, **context_options})
    page = context.new_page()
    log = PageLog()
    page.on("console", lambda m: log.errors.append(m.text)
            if m.type in ("error", "warning") and not _TEST_INDUCED.search(m.text) else None)
    page.on("pageerror", lambda e: log.errors.append(str(e)))
    # A load the page itself cancelled (an image removed from the DOM, a navigation away) is no failure.
    page.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED" else log.failed.append(r.url))
    page.on("request", lambda r: log.requests.append(r.url))

    def on_dialog(dialog):
        log.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(url)
    page.wait_for_load_state("load")
    return context, page, log


def assert_clean(log: PageLog, origin: str = "file://") -> None:
    """No errors, failures or dialogs, and every request went to `origin` (the site itself)."""
    assert log.errors == [], log.errors
    assert log.failed == []
    assert log.dialogs == []
    assert all(url.startswith(origin) for url in log.requests), log.requests
