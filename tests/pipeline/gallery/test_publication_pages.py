"""What a visitor and a screen-reader user get: the AI-generated label everywhere, the painting beside its head,
the model card, a live region that does not chatter during playback, and a stage that lets phones scroll."""
from __future__ import annotations

import pytest

from artmator.pipeline.provenance import AI_LABEL

from .conftest import assert_clean, open_page

pytestmark = pytest.mark.browser


@pytest.mark.timeout(120)
def test_label_painting_and_model_card(browser, built_site, served_site, screenshots):
    context, page, log = open_page(browser, served_site + "index.html")
    try:
        assert AI_LABEL in page.locator(".ai-label").text_content()
        page.screenshot(path=str(screenshots / "index.png"), full_page=True)
        assert_clean(log, served_site)
    finally:
        context.close()
    for pid in ("mona.lisa", "xss-1"):
        context, page, log = open_page(browser, served_site + f"p/{pid}/index.html")
        try:
            label = page.locator("#ai-label")
            assert label.is_visible() and AI_LABEL in label.text_content()
            if pid == "mona.lisa":
                figure = page.locator("figure.painting img")
                page.wait_for_function("() => document.querySelector('figure.painting img').naturalWidth > 0")
                assert figure.get_attribute("alt") == "The painting: Portrait of a Lady"
            else:
                assert page.locator("figure.painting").count() == 0      # no web copy committed: no figure
            link = page.locator("a[href$='/model_card.md']")      # in the page's media folder
            response = page.request.get(served_site + f"p/{pid}/" + link.get_attribute("href"))
            assert link.count() == 1 and response.ok and AI_LABEL in response.text()
            assert_clean(log, served_site)
        finally:
            context.close()


@pytest.mark.timeout(120)
def test_live_region_is_quiet_while_playing(browser, built_site):
    context, page, log = open_page(browser, (built_site.site / "p" / "xss-1" / "index.html").as_uri())
    try:
        page.wait_for_selector("body.interactive")
        page.evaluate("""() => { window.__spoken = [];
            new MutationObserver(() => window.__spoken.push(document.getElementById('status').textContent))
              .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true}); }""")
        start = page.get_attribute("#stage", "aria-valuenow")
        page.click("#play")
        page.wait_for_function("() => document.getElementById('stage').dataset.frame !== '%s'" % start, timeout=5000)
        page.wait_for_timeout(800)                              # ~10 frames at 12 fps
        assert page.get_attribute("#stage", "aria-valuenow") == start   # not re-announced per frame
        page.click("#play")
        spoken = page.evaluate("window.__spoken")
        assert spoken == ["Playing the turntable", spoken[-1]] and spoken[-1].startswith("Paused")
        assert page.get_attribute("#stage", "aria-valuenow") == page.get_attribute("#stage", "data-frame")
        assert_clean(log)
    finally:
        context.close()


def swipe(cdp, page, x: float, y: float, dx: float, dy: float, steps: int = 15) -> None:
    """A real touch swipe through Chromium's input pipeline (touch start, moves, end)."""
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for i in range(1, steps + 1):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove",
                                              "touchPoints": [{"x": x + dx * i / steps, "y": y + dy * i / steps}]})
        page.wait_for_timeout(16)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@pytest.mark.timeout(120)
def test_a_phone_scrolls_over_the_turntable(browser, built_site):
    """A vertical swipe that starts on the stage scrolls the page (touch-action: pan-y; `none` would trap it);
    a horizontal one turns the head."""
    context, page, log = open_page(browser, (built_site.site / "p" / "mona.lisa" / "index.html").as_uri(),
                                   viewport={"width": 390, "height": 640}, is_mobile=True, has_touch=True,
                                   device_scale_factor=2)
    try:
        page.wait_for_selector("body.interactive")
        assert page.evaluate("getComputedStyle(document.getElementById('stage')).touchAction") == "pan-y"
        cdp = context.new_cdp_session(page)
        box = page.locator("#stage").bounding_box()
        assert box["y"] + box["height"] * 0.8 < 640                  # the swipe starts on the stage
        frame = page.get_attribute("#stage", "data-frame")
        swipe(cdp, page, box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.8, 0, -300)
        page.wait_for_function("() => window.scrollY > 100", timeout=5000)
        assert page.get_attribute("#stage", "data-frame") == frame    # scrolling did not turn the head
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(100)
        box = page.locator("#stage").bounding_box()
        swipe(cdp, page, box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2, 200, 0)
        page.wait_for_function("f => document.getElementById('stage').dataset.frame !== f", arg=frame, timeout=5000)
        assert_clean(log)
    finally:
        context.close()


@pytest.mark.timeout(120)
def test_gallery_media_say_they_are_ai_generated(built_site):
    """Every render the gallery encodes carries the IPTC source type: XMP in PNG/WebP, an XMP `uuid` box plus
    `mdta` tags in the MP4, Matroska tags in the WebM (no XMP there); the painting's own copy does not."""
    from tests.pipeline.xmp_reading import container_tags, frames_decode, image_xmp, mp4_xmp, xmp_fields

    from artmator.pipeline.provenance import DIGITAL_SOURCE_TYPE

    for pid in ("mona.lisa", "xss-1"):
        [media] = (built_site.site / "p" / pid).glob("m-*")
        encoded = ["poster.png", "thumb.webp", "sprite.webp"] + (["turntable.webp"] if pid == "xss-1" else [])
        for name in encoded:
            fields = xmp_fields(image_xmp((media / name).read_bytes()))
            assert fields["DigitalSourceType"] == DIGITAL_SOURCE_TYPE and fields["identifier"] == pid, (pid, name)
        mp4 = (media / "turntable.mp4").read_bytes()
        assert xmp_fields(mp4_xmp(mp4))["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
        for suffix, data in (("mp4", mp4), ("webm", (media / "turntable.webm").read_bytes())):
            tags = container_tags(data, suffix)
            assert tags["digitalsourcetype"] == DIGITAL_SOURCE_TYPE and tags["comment"].startswith(AI_LABEL), suffix
            assert frames_decode(data, suffix) > 1                     # the tags and the box leave the video whole
    painting = (built_site.site / "p" / "mona.lisa").glob("m-*/painting.jpg")
    assert image_xmp(next(painting).read_bytes()) is None            # the painting is not AI-generated media
