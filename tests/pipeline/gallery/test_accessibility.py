"""axe-core (vendored, test-only) in a real headless Chromium on the gallery's index and viewer pages: no serious
or critical violation, with the page in the states a visitor reaches (search results shown, 3D model on, an
expression still shown)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import assert_clean, open_page

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def axe_violations(page) -> list[dict]:
    """Run axe-core's WCAG 2.x A/AA rules (and best practices) on the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("""() => axe.run(document, {runOnly: {type: 'tag',
        values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}, resultTypes: ['violations']})""")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result["violations"]]


def blocking(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in BLOCKING]


@pytest.mark.timeout(180)
def test_index_page_has_no_serious_violations(browser, built_site, served_site):
    context, page, log = open_page(browser, served_site + "index.html")
    try:
        assert blocking(axe_violations(page)) == []
        page.fill("#q", "portrait")                          # the search results replace the static page
        page.wait_for_function("() => document.getElementById('results-count').textContent.includes('match')")
        assert blocking(axe_violations(page)) == []
        assert_clean(log, served_site)
    finally:
        context.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("pid", ["mona.lisa", "xss-1"])
def test_viewer_pages_have_no_serious_violations(browser, built_site, served_site, pid):
    context, page, log = open_page(browser, served_site + f"p/{pid}/index.html")
    try:
        page.wait_for_selector("body.interactive")
        assert blocking(axe_violations(page)) == []
        if pid == "mona.lisa":                                # the WebGL model in place of the turntable
            page.wait_for_selector("body.mesh-ready", timeout=30_000)
            page.click("#mode-3d")
            page.wait_for_selector("#model3d canvas")
        else:                                                 # an expression still in place of the turntable
            page.click("button[data-expression='0']")
        assert blocking(axe_violations(page)) == []
        assert_clean(log, served_site)
    finally:
        context.close()
