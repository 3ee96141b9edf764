"""The mesh viewer in a real headless Chromium (WebGL through SwiftShader) over a real HTTP server: the GLB loads
and turns with the pointer and the keys, the turntable stays one click away, and no page of the served site asks
anything of another origin."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from .conftest import assert_clean, open_page

pytestmark = pytest.mark.browser


def canvas_pixels(page) -> np.ndarray:
    """The WebGL canvas as the browser shows it, (H, W, 3)."""
    png = page.locator("#model3d canvas").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def subject_share(pixels: np.ndarray) -> float:
    """Share of pixels that differ from the viewer's background (#dddddd)."""
    return float((np.abs(pixels - 0xDD).max(axis=-1) > 12).mean())


def wait_drawn(page) -> np.ndarray:
    page.wait_for_timeout(150)   # one animation frame or more: the viewer draws on requestAnimationFrame
    return canvas_pixels(page)


@pytest.mark.timeout(180)
def test_mesh_turns_in_webgl_and_falls_back_to_the_turntable(browser, built_site, served_site, screenshots):
    context, page, log = open_page(browser, served_site + "p/mona.lisa/index.html")
    try:
        page.wait_for_selector("body.mesh-ready", timeout=60_000)
        assert page.locator("#model3d canvas").is_visible()
        assert not page.locator("#stage").is_visible()        # 3D is the default view once the mesh is in
        assert page.get_attribute("#mode-3d", "aria-pressed") == "true"
        first = wait_drawn(page)
        assert subject_share(first) > 0.05                      # the ball is drawn, not an empty canvas
        assert first.std() > 5                                  # with its vertex colours, not one flat colour

        box = page.locator("#model3d canvas").bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=8)
        page.mouse.up()
        dragged = wait_drawn(page)
        assert np.abs(dragged - first).mean() > 1.0             # the view turned
        page.locator("#model3d canvas").focus()
        page.keyboard.press("ArrowUp")
        keyed = wait_drawn(page)
        assert np.abs(keyed - dragged).mean() > 1.0
        page.screenshot(path=str(screenshots / "viewer-mesh.png"), full_page=True)
        # Assistive text names the painting and says how to turn it.
        assert "drag or use the arrow keys" in page.get_attribute("#model3d canvas", "aria-label")

        # The expression morph target blends in real time from its slider, and back.
        slider = page.locator("#model3d input[data-morph='happiness']")
        assert slider.is_visible() and slider.input_value() == "0"
        slider.fill("0")                              # focus it first: the page may scroll to show it
        neutral = wait_drawn(page)
        slider.fill("100")
        smiling = wait_drawn(page)
        assert np.abs(smiling - neutral).mean() > 1.0
        assert slider.get_attribute("aria-valuetext") == "100 %"
        slider.fill("0")
        assert np.abs(wait_drawn(page) - neutral).mean() < 0.2

        page.click("button[data-expression='-1']")              # back to the rendered turntable
        assert page.locator("#stage").is_visible() and not page.locator("#model3d").is_visible()
        assert page.get_attribute("#mode-3d", "aria-pressed") == "false"
        page.click("#mode-3d")
        assert page.locator("#model3d canvas").is_visible()
        assert page.locator("a[href$='/mesh.glb']").count() == 1
        assert_clean(log, served_site)
    finally:
        context.close()


@pytest.mark.timeout(180)
def test_served_pages_make_no_external_request(browser, built_site, served_site):
    """Every page of the served site, with the mesh loaded: nothing but the site's own origin is asked for."""
    pages = ["index.html", "p/mona.lisa/index.html", "p/xss-1/index.html"]
    for rel in pages:
        context, page, log = open_page(browser, "about:blank")
        outside: list[str] = []

        def guard(route):
            if route.request.url.startswith(served_site):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        try:
            page.goto(served_site + rel)
            page.wait_for_load_state("networkidle")
            if rel == "p/mona.lisa/index.html":
                page.wait_for_selector("body.mesh-ready", timeout=60_000)
            assert outside == [], outside
            assert [u for u in log.requests if u != "about:blank"], "the page made no request at all"
            assert_clean(log, served_site)
        finally:
            context.close()


@pytest.mark.timeout(120)
def test_without_mesh_or_http_the_turntable_stays(browser, built_site, served_site):
    # A painting without a mesh: no 3D button, no 630 kB viewer script.
    context, page, log = open_page(browser, served_site + "p/xss-1/index.html")
    try:
        page.wait_for_selector("body.interactive")
        assert not page.locator("#mode-3d").is_visible()
        assert not any(u.endswith("mesh-viewer.js") for u in log.requests)
        assert_clean(log, served_site)
    finally:
        context.close()
    # A mesh opened from file://: browsers refuse fetch() there, so the page says how to see it and keeps the
    # turntable, without an error.
    context, page, log = open_page(browser, (built_site.site / "p" / "mona.lisa" / "index.html").as_uri())
    try:
        page.wait_for_selector("body.interactive")
        assert page.locator("#stage").is_visible() and not page.locator("#mode-3d").is_visible()
        assert "http(s)" in page.locator("#model3d-note").text_content()
        assert_clean(log)
    finally:
        context.close()
