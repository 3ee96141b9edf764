"""The gallery in a real headless Chromium over file://: loads cleanly, rotates, switches expressions, resists XSS."""
from __future__ import annotations

import re

import pytest

from .conftest import XSS_METADATA, XSS_TITLE, assert_clean, open_page

pytestmark = pytest.mark.browser


def open_viewer(browser, built_site, painting_id: str):
    context, page, log = open_page(browser, (built_site.site / "p" / painting_id / "index.html").as_uri())
    page.wait_for_selector("body.interactive")  # viewer.js enabled the controls once the sprite loaded
    return context, page, log


@pytest.mark.timeout(120)
def test_index_lists_committed_paintings_only(browser, built_site, screenshots):
    context, page, log = open_page(browser, built_site.summary.index_url)
    try:
        cards = page.locator("li.card")
        assert sorted(cards.evaluate_all("els => els.map(e => e.dataset.painting)")) == ["mona.lisa", "xss-1"]
        assert page.locator("text=Hidden: not committed").count() == 0
        assert page.locator("a[href*='no_marker']").count() == 0
        assert page.locator("h1").text_content() == "Test <Gallery>"
        # Thumbnails really decoded (a broken image has naturalWidth 0).
        widths = page.locator("li.card img").evaluate_all("els => els.map(e => e.naturalWidth)")
        assert widths and all(w > 0 for w in widths)
        unavailable = page.locator(".unavailable li")
        assert unavailable.count() == 1
        text = unavailable.text_content()
        assert "broken_1" in text and "not available: no_face" in text
        assert '<img src=x onerror="window.__pwned=5">' in text  # the report's message, as text
        assert page.locator(".unavailable img").count() == 0
        assert page.evaluate("window.__pwned") is None
        page.screenshot(path=str(screenshots / "index.png"), full_page=True)
        assert_clean(log)
    finally:
        context.close()


@pytest.mark.timeout(120)
def test_viewer_drag_keys_play_and_expressions(browser, built_site, screenshots):
    context, page, log = open_viewer(browser, built_site, "mona.lisa")
    try:
        stage = page.locator("#stage")
        start = int(stage.get_attribute("data-frame"))
        assert start == 8  # nearest the painting's pose (frame 24 // 3)
        sprite_transform = page.evaluate("document.getElementById('sprite').style.transform")

        box = stage.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] / 2, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.8, y, steps=6)
        page.mouse.up()
        dragged = int(stage.get_attribute("data-frame"))
        assert dragged > start
        assert page.evaluate("document.getElementById('sprite').style.transform") != sprite_transform

        stage.focus()
        page.keyboard.press("ArrowRight")
        assert int(stage.get_attribute("data-frame")) == dragged + 1
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        assert int(stage.get_attribute("data-frame")) == dragged - 1
        page.keyboard.press("End")
        page.keyboard.press("ArrowRight")  # clamps: this turntable is not a full turn
        assert int(stage.get_attribute("data-frame")) == 23

        page.click("#play")
        assert page.get_attribute("#play", "aria-pressed") == "true"
        page.wait_for_function("() => document.getElementById('stage').dataset.frame !== '23'", timeout=5000)
        page.click("#play")
        assert page.get_attribute("#play", "aria-pressed") == "false"

        page.click("button[data-expression='0']")
        still = page.locator("#still")
        assert still.is_visible() and not page.locator("#sprite").is_visible()
        assert re.fullmatch(r"m-[0-9a-f]{16}/expr/0\.png", still.get_attribute("src"))
        page.wait_for_function("() => document.getElementById('still').naturalWidth > 0")
        assert page.get_attribute("button[data-expression='0']", "aria-pressed") == "true"
        assert "happiness" in page.locator("#status").text_content()
        page.click("button[data-expression='1']")
        assert re.fullmatch(r"m-[0-9a-f]{16}/expr/1\.png", still.get_attribute("src"))
        page.screenshot(path=str(screenshots / "viewer-expression.png"), full_page=True)

        page.click("button[data-expression='-1']")
        assert not still.is_visible() and page.locator("#sprite").is_visible()
        rights = page.locator("dd.rights a")
        assert rights.get_attribute("href") == "https://creativecommons.org/publicdomain/zero/1.0/"
        assert page.locator("dd.source a").get_attribute("href") == "https://collection.example.org/objects/42"
        page.screenshot(path=str(screenshots / "viewer.png"), full_page=True)
        assert_clean(log)
    finally:
        context.close()


@pytest.mark.timeout(120)
def test_viewer_touch_drag(browser, built_site):
    """Pointer Events cover touch: a synthetic touch-type pointer drag turns the head too."""
    context, page, log = open_viewer(browser, built_site, "mona.lisa")
    try:
        start = int(page.get_attribute("#stage", "data-frame"))
        page.evaluate("""() => {
            const s = document.getElementById('stage'); const r = s.getBoundingClientRect();
            const y = r.top + r.height / 2, opts = {pointerId: 7, pointerType: 'touch', isPrimary: true,
                                                    button: 0, bubbles: true};
            s.dispatchEvent(new PointerEvent('pointerdown', {...opts, clientX: r.left + 10, clientY: y}));
            s.dispatchEvent(new PointerEvent('pointermove', {...opts, clientX: r.left + r.width / 2, clientY: y}));
            s.dispatchEvent(new PointerEvent('pointerup', {...opts, clientX: r.left + r.width / 2, clientY: y}));
        }""")
        assert int(page.get_attribute("#stage", "data-frame")) > start
        assert log.dialogs == [] and log.failed == []
    finally:
        context.close()


@pytest.mark.timeout(120)
def test_xss_metadata_renders_as_text(browser, built_site, screenshots):
    context, page, log = open_viewer(browser, built_site, "xss-1")
    try:
        page.click("button[data-expression='0']")  # exercise the JSON-fed status text too
        page.keyboard.press("Escape")
        assert page.evaluate("window.__pwned") is None
        assert page.locator("h1").text_content() == XSS_TITLE
        assert page.title().startswith(XSS_TITLE)
        assert page.locator("dd.artist").text_content() == XSS_METADATA["artist"]
        assert page.locator("dd.date").text_content() == XSS_METADATA["date"]
        assert page.locator("dd.credit").text_content() == XSS_METADATA["credit_line"]
        assert XSS_TITLE in page.locator("#status").text_content()
        # javascript: URIs stay text, never links; no element was injected.
        assert page.locator("dd.rights").text_content() == "javascript:alert(1)"
        assert page.locator("dd.rights a, dd.source a").count() == 0
        assert page.locator("a[href^='javascript']").count() == 0
        assert page.locator(".details img, .details svg, .details b").count() == 0
        assert page.locator("script").count() == 2  # the JSON block and viewer.js, nothing injected
        page.screenshot(path=str(screenshots / "viewer-xss.png"), full_page=True)
        assert_clean(log)
    finally:
        context.close()
    context, page, log = open_page(browser, built_site.summary.index_url)
    try:
        card = page.locator("li.card[data-painting='xss-1']")
        assert card.locator(".title").text_content() == XSS_TITLE
        assert card.locator(".artist").text_content() == XSS_METADATA["artist"]
        assert card.locator("img").count() == 1  # only the thumbnail
        assert page.evaluate("window.__pwned") is None
        assert_clean(log)
    finally:
        context.close()


@pytest.mark.timeout(120)
def test_webm_plays_in_chromium(browser, built_site):
    """The published WebM decodes in the browser (duration matches the ping-pong length)."""
    context, page, log = open_page(browser, (built_site.site / "p" / "mona.lisa" / "index.html").as_uri())
    try:
        duration = page.evaluate("""() => new Promise((resolve, reject) => {
            const v = document.createElement('video'); v.muted = true; v.preload = 'auto';
            v.onloadedmetadata = () => resolve(v.duration); v.onerror = () => reject(new Error('video error'));
            v.src = document.querySelector('a[href$="turntable.webm"]').getAttribute('href');
            document.body.appendChild(v);
        })""")
        assert duration == pytest.approx((2 * 24 - 2) / 12.0, abs=0.1)
        assert_clean(log)
    finally:
        context.close()
