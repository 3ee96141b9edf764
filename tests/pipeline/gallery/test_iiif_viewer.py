"""A real IIIF viewer opens the gallery's Manifests: Clover IIIF 3.3.8 (npm `@samvera/clover-iiif`, its web
component build vendored under vendor/clover-iiif, test-only) on a test page served from a real 127.0.0.1 HTTP
server beside a gallery built with that server's --base-url; headless Chromium plays the turntable canvas."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from artmator.pipeline.gallery import build_gallery

from .conftest import MONA, XSS, assert_clean, open_page, serve_folder, write_painting

pytestmark = pytest.mark.browser

CLOVER = Path(__file__).parent / "vendor" / "clover-iiif"
CLOVER_OWN = re.compile(r"^Tabs is changing from uncontrolled to controlled")
"""A React warning Clover 3.3.8 logs about its own tabs on every Manifest (not about the Manifest)."""


@pytest.fixture(scope="module")
def iiif_server(tmp_path_factory):
    """(base URL, root): `site/` is a gallery whose IIIF ids are this server's URLs, `viewer/` the Clover page."""
    root = tmp_path_factory.mktemp("iiif_served")
    out = root / "out"
    for spec in (MONA, XSS):
        write_painting(out, spec)
    with serve_folder(root) as url:
        build_gallery(str(out), str(root / "site"), base_url=url + "site/", title="Clover test")
        shutil.copytree(CLOVER, root / "viewer")
        yield url, root


@pytest.mark.timeout(180)
@pytest.mark.parametrize("pid", ["mona.lisa", "xss-1"])
def test_clover_opens_the_manifest_and_plays_the_turntable(browser, iiif_server, screenshots, pid):
    url, root = iiif_server
    manifest = f"{url}site/p/{pid}/manifest.json"
    context, page, log = open_page(browser, f"{url}viewer/viewer.html?manifest={manifest}",
                                   viewport={"width": 1200, "height": 900})
    try:
        thumbs = page.locator("button[data-testid='media-thumbnail']")
        thumbs.first.wait_for(timeout=20_000)
        texts = thumbs.evaluate_all("els => els.map(e => e.textContent.trim())")
        labels = [re.sub(r"^\d+:\d\d", "", t) for t in texts]     # a video's thumbnail shows its duration first
        assert re.match(r"^0:0[1-9]Turntable", texts[labels.index("Turntable (AI-generated)")])  # our canvas duration
        if pid == "mona.lisa":          # the painting first, then the turntable and the stills made from it
            assert labels[:2] == ["The painting", "Turntable (AI-generated)"] and len(labels) == 4, labels
        else:                           # no painting copy committed: the turntable first
            assert labels[0] == "Turntable (AI-generated)" and len(labels) == 2, labels
        page.locator("button[data-testid='media-thumbnail']", has_text="Turntable").click()
        video = page.locator("video")
        video.wait_for(timeout=20_000)
        sources = video.evaluate("v => [v.currentSrc, ...[...v.querySelectorAll('source')].map(s => s.src)]")
        media = f"{url}site/p/{pid}/m-"
        assert sources[0].startswith(media) and sources[0].endswith("/turntable.webm"), sources
        assert [s.rsplit("/", 1)[1] for s in sources[1:]] == ["turntable.webm", "turntable.mp4"]  # the Choice
        page.wait_for_function("() => document.querySelector('video').readyState >= 2", timeout=20_000)
        video.evaluate("v => { v.muted = true; return v.play(); }")
        page.wait_for_function("() => document.querySelector('video').currentTime > 0.5", timeout=20_000)
        assert not video.evaluate("v => v.paused") and video.evaluate("v => v.error") is None
        body = page.locator("body").text_content()
        assert "AI-generated 3D interpretation" in body                  # the summary and metadata are shown
        if pid == "xss-1":                                               # hostile catalogue text stays text
            assert '<img src=x onerror="window.__pwned=1">' in body
        assert page.evaluate("() => window.__pwned") is None
        if pid == "mona.lisa":
            page.screenshot(path=str(screenshots / "iiif-clover.png"))
        log.errors = [e for e in log.errors if not CLOVER_OWN.search(e)]
        assert_clean(log, url)
    finally:
        context.close()
