"""report.html (reports/html.py): one self-contained page, checked in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from jaxbench.reports.build import build_report

pytestmark = pytest.mark.version_independent  # the page is built from saved results: nothing here runs JAX

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
"""As root (CI) without a sandbox; and nothing fetched in the background, which a machine without a
network refuses."""


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def html_report(saved_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    build_report([saved_run["dir"] / "results.json"], out)
    return out / "report.html"


def test_the_page_stands_alone_and_holds_the_report(html_report):
    page = html_report.read_text()
    sources = re.findall(r'(?:src|href)="([^"#][^"]*)"', page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)  # nothing beside it
    for title in ("At a glance", "Headline findings", "Summary", "Expectations", "Environment", "Charts"):
        assert f"<h2>{title}</h2>" in page
    assert page.count('class="sortable"') == 5  # the grid, summary, the two expectation tables, environment


def test_the_page_reads_well_in_a_real_browser(html_report, tmp_path):
    """Skipped on a machine without Chromium or playwright, but not in CI (`CI` set), whose script
    installs both (.ci/run): there a missing browser fails."""
    missing = ("no Chromium here (Debian: apt-get install chromium)" if CHROMIUM is None else
               None if _has_playwright() else "needs playwright (pip install -e '.[browser]')")
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(html_report.as_uri())
            assert page.title() == "jaxbench report"
            assert page.locator("table").count() == 5
            first_screen = os.environ.get("JAXBENCH_SCREENSHOT")  # docs/images/report-first-screen.png
            if first_screen:
                page.screenshot(path=first_screen)
            for table in page.locator("table").all():  # a wide table scrolls in its own box, not the page
                box = table.locator("xpath=..").bounding_box()
                assert box["x"] + box["width"] <= 1400, box
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            assert len(images) == 4 and all(done and width > 0 and height > 0 for done, width, height in images)
            summary = page.locator("section", has=page.locator("h2", has_text="Summary")).locator("table")
            column = """(t, name) => { const i = Array.from(t.tHead.rows[0].cells)
                          .findIndex(h => h.textContent.trim().startsWith(name));
                        return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[i].textContent)); }"""
            header = summary.locator("thead th", has_text="median step (ms)")
            header.click()
            ascending = summary.evaluate(column, "median step (ms)")
            assert ascending == sorted(ascending) and len(ascending) == 15
            header.click()
            assert summary.evaluate(column, "median step (ms)") == sorted(ascending, reverse=True)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert (tmp_path / "report.png").stat().st_size > 10_000
        finally:
            browser.close()
