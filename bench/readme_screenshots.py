"""The README's gallery screenshots, from a demo output: the index, a viewer page with the WebGL mesh on, and the
painting's IIIF Manifest opened in Clover IIIF (the test-only copy under tests/pipeline/gallery/vendor).

    artmator run --out /tmp/demo-out            # the bundled demo catalogue
    python -m bench.readme_screenshots /tmp/demo-out --dest docs/images

The gallery is rebuilt into a temporary folder served on 127.0.0.1 (its --base-url is that server, so the IIIF
viewer can fetch every id); nothing is written into OUT. Headless Chromium is Debian's (/usr/bin/chromium).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path

from artmator.pipeline.gallery import build_gallery

ROOT = Path(__file__).resolve().parent.parent
CLOVER = ROOT / "tests" / "pipeline" / "gallery" / "vendor" / "clover-iiif"


@contextlib.contextmanager
def serve(folder: Path):
    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".glb": "model/gltf-binary",
                          ".webp": "image/webp", ".webm": "video/webm"}

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="a demo output folder (artmator run --out ...)")
    p.add_argument("--dest", default=str(ROOT / "docs" / "images"))
    p.add_argument("--painting", default=None, help="painting id for the viewer pages (default: the first)")
    p.add_argument("--morph", type=int, default=None, help="set the viewer's first expression slider to this %%")
    a = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    dest = Path(a.dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="artmator-shots-") as tmp, serve(Path(tmp)) as url:
        summary = build_gallery(a.out, str(Path(tmp) / "site"), base_url=url + "site/", title="artmator demo gallery")
        shutil.copytree(CLOVER, Path(tmp) / "viewer")
        pid = a.painting or summary.paintings[0]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url + "site/index.html")
            page.wait_for_load_state("load")
            page.screenshot(path=str(dest / "gallery-index.png"), full_page=True)
            page.goto(url + f"site/p/{pid}/index.html")
            page.wait_for_selector("body.mesh-ready", timeout=60_000)
            page.click("#mode-3d")
            morph = page.locator("#model3d input[data-morph]").first
            if a.morph is not None and morph.count():
                morph.fill(str(a.morph))                  # the expression's morph target blended in
            page.wait_for_timeout(1500)
            page.screenshot(path=str(dest / "gallery-viewer-mesh.png"), full_page=True)
            page.goto(url + f"viewer/viewer.html?manifest={url}site/p/{pid}/manifest.json")
            page.locator("button[data-testid='media-thumbnail']", has_text="Turntable").click(timeout=30_000)
            page.wait_for_function("() => document.querySelector('video') && "
                                   "document.querySelector('video').readyState >= 2", timeout=30_000)
            page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
            page.wait_for_function("() => document.querySelector('video').currentTime > 1", timeout=30_000)
            page.screenshot(path=str(dest / "iiif-clover.png"))
            browser.close()
    print(json.dumps({"painting": pid, "written": sorted(str(dest / n) for n in
                                                          ("gallery-index.png", "gallery-viewer-mesh.png",
                                                           "iiif-clover.png"))}))


if __name__ == "__main__":
    main()
