"""A gallery index for 20,000 works in a real Chromium: light static pages with paging links, and search and
filters over the whole catalogue from the static index, also from file://."""
from __future__ import annotations

import json
import time

import pytest

from artmator.pipeline.gallery import pages

from .conftest import assert_clean, open_page

pytestmark = pytest.mark.browser
WORKS = 20_000


@pytest.fixture(scope="module")
def big_site(tmp_path_factory):
    """The index pages and search index of 20,000 paintings, as build_gallery writes them, with one shared
    thumbnail per painting folder (building 20,000 paintings' media is not what is tested here)."""
    import io

    from PIL import Image

    site = tmp_path_factory.mktemp("big_site")
    cards = [pages.Card(f"w{i:05d}", f"Portrait {i}", f"Painter {i % 97}", f"c. {1400 + i % 500}",
                        media=f"m-{i:016x}/", flags=("weak_fit",) if i % 10 == 0 else ()) for i in range(WORKS)]
    cards[12345] = pages.Card("w12345", "The Lacemaker </script><b>", "Johannes V.", "1669-1670", f"m-{12345:016x}/")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (150, 120, 90)).save(buffer, format="WEBP")
    thumb = buffer.getvalue()
    for card in cards:
        folder = site / "p" / card.painting_id
        folder.mkdir(parents=True)
        (folder / card.media).mkdir()
        (folder / card.media / "thumb.webp").write_bytes(thumb)
    (site / "assets").mkdir()
    for name in pages.STATIC_ASSETS:
        (site / "assets" / name).write_bytes(pages.asset_bytes(name))
    rows = pages.index_rows(cards)
    (site / "index.json").write_text(json.dumps(rows))
    (site / "index-data.js").write_bytes(pages.index_data_script(rows))
    for name, data in pages.render_index("Twenty thousand", cards, []).items():
        (site / name).write_bytes(data)
    return site


def test_pages_stay_light(big_site):
    names = sorted(p.name for p in big_site.glob("index*.html"))
    assert len(names) == -(-WORKS // pages.PAGE_SIZE) == 334
    first = (big_site / "index.html").read_text()
    assert first.count('class="card"') == pages.PAGE_SIZE
    assert len(first.encode()) < 40_000                        # one page of 60 cards, not 20,000
    assert 'href="index-2.html"' in first and 'href="index-334.html"' in first
    last = (big_site / "index-334.html").read_text()
    assert last.count('class="card"') == WORKS - 333 * pages.PAGE_SIZE
    index = json.loads((big_site / "index.json").read_text())
    assert index["fields"] == list(pages.INDEX_FIELDS) and len(index["items"]) == WORKS
    assert index["items"][12345][4] == 1669                     # the year parsed for the date filter
    assert "</script>" not in (big_site / "index-data.js").read_text()   # escaped in the script copy


@pytest.mark.timeout(180)
def test_search_filters_and_pages_over_20000_works(browser, big_site, screenshots):
    context, page, log = open_page(browser, (big_site / "index.html").as_uri())
    try:
        assert page.locator("li.card").count() == pages.PAGE_SIZE
        assert page.locator("#search").is_visible()
        start = time.perf_counter()
        page.fill("#q", "lacemaker")
        page.wait_for_function("() => document.querySelectorAll('#grid li.card').length === 1", timeout=20_000)
        card = page.locator("#grid li.card")
        assert card.get_attribute("data-painting") == "w12345"
        assert card.locator(".title").text_content() == "The Lacemaker </script><b>"   # text, not markup
        assert page.locator("#grid b").count() == 0
        seconds = time.perf_counter() - start
        assert seconds < 10, seconds
        page.wait_for_function("() => document.getElementById('results-count').textContent === '1 painting matches'")
        assert not page.locator("nav.pager[aria-label='Pages']").is_visible()      # the static pager is hidden meanwhile

        page.fill("#q", "")
        page.fill("#artist", "painter 7")                        # Painter 7 and Painter 70..79
        page.fill("#from", "1450")
        page.fill("#to", "1460")
        page.select_option("#flag", "weak_fit")
        page.wait_for_function("() => document.getElementById('results-count').textContent.endsWith('match')")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshots / "index-search.png"), full_page=False)
        ids = page.locator("#grid li.card").evaluate_all("els => els.map(e => e.dataset.painting)")
        assert ids and len(ids) <= pages.PAGE_SIZE
        expected = [f"w{i:05d}" for i in range(WORKS) if i != 12345 and str(i % 97).startswith("7")
                    and 1450 <= 1400 + i % 500 <= 1460 and i % 10 == 0]
        count = int(page.locator("#results-count").text_content().split()[0])
        assert count == len(expected) and ids == expected[:pages.PAGE_SIZE]
        page.select_option("#flag", "")
        page.fill("#artist", "")
        page.fill("#to", "")
        page.wait_for_function("() => !document.getElementById('results-pager').hidden")
        page.click("#results-pager button[data-step='1']")
        assert "Page 2 of" in page.locator("#results-pager .pager-where").text_content()
        page.wait_for_function("() => [...document.querySelectorAll('#grid li.card img')].slice(0, 3)"
                               ".every(e => e.complete)")
        widths = page.locator("#grid li.card img").evaluate_all("els => els.slice(0, 3).map(e => e.naturalWidth)")
        assert widths == [8, 8, 8]                       # the thumbnails of search results load from their media folder

        for name in ("#q", "#from"):
            page.fill(name, "")
        page.wait_for_function("() => document.querySelectorAll('#grid li.card').length === 60 && "
                               "document.querySelector('#grid li.card').dataset.painting === 'w00000'")
        assert page.locator("nav.pager[aria-label='Pages']").is_visible()
        page.click("a[rel='next']")
        page.wait_for_load_state("load")
        assert page.url.endswith("index-2.html")
        assert page.locator("li.card").first.get_attribute("data-painting") == "w00060"
        assert_clean(log)
    finally:
        context.close()
