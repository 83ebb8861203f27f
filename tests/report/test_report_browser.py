"""The report in a real browser: headless Debian Chromium driven by Playwright (no downloads)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_helpers import HOSTILE

from toa.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no Chromium binary on PATH (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the dev extra)"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def test_the_report_reads_in_a_browser(run_dir: Path, browser: Any, tmp_path: Path) -> None:
    out = write_report(run_dir, tmp_path / "report.html")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith("file:") else None)
    page.goto(out.as_uri())

    assert page.locator("#summary").is_visible()
    assert page.locator('#summary [data-key="calls"] b').inner_text() != "0"
    rows = page.locator("#prompt-list .prompt")
    assert rows.count() == 6
    assert "6 of 6 prompts" in page.locator("#page-info").inner_text()

    # search: by prompt text and by id; the hostile prompt is shown as text, never run
    page.fill("#search", "haiku")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-id") == "q002"
    page.fill("#search", "HOSTILE")
    assert rows.count() == 1
    assert rows.first.locator(".ptext").inner_text() == HOSTILE
    page.fill("#search", "no such prompt")
    assert rows.count() == 0
    page.fill("#search", "q00")
    assert rows.count() == 5
    assert page.evaluate("window.pwned") is None

    # open the prompt with failed generations: the tree, the best path, the failed node
    page.fill("#search", "q000")
    rows.first.locator(".prompt-head").click()
    tree = rows.first.locator(".prompt-body")
    assert tree.is_visible()
    best = tree.locator("li.node.best")
    assert best.count() == 1
    path = tree.locator("li.node.best-path")
    assert path.count() >= 1
    assert path.last.get_attribute("data-node") == best.get_attribute("data-node")
    best_head = best.locator(":scope > .node-head")
    color = best_head.evaluate("e => getComputedStyle(e).backgroundColor")
    assert color not in ("rgba(0, 0, 0, 0)", "transparent")
    failed = tree.locator("li.node.failed")
    assert failed.count() >= 1
    assert "generation failed" in failed.first.locator(":scope > .node-head").inner_text()
    failed.first.locator(":scope > .node-head").click()
    assert "generation failed:" in failed.first.locator(".node-error").first.inner_text()

    # expand the best node: its text, read from the data, not before
    assert best.locator(".node-text").count() == 0
    best_head.click()
    text = best.locator(":scope > .node-body > .node-text")
    assert text.is_visible()
    assert len(text.inner_text()) > 10
    best_head.click()
    assert not text.is_visible()
    best_head.click()

    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 0
    assert errors == []
    assert requests == []
    page.close()


def test_a_big_report_pages_its_prompts(
    big_run: tuple[Path, int], browser: Any, tmp_path: Path
) -> None:
    out = write_report(big_run[0], tmp_path / "big.html")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    rows = page.locator("#prompt-list .prompt")
    assert rows.count() == 50
    assert page.locator("li.node").count() == 0  # no tree drawn before one is opened
    page.click("#next")
    assert rows.first.get_attribute("data-id") == "p00050"
    page.fill("#search", "p01999")
    assert rows.count() == 1
    rows.first.locator(".prompt-head").click()
    assert page.locator("li.node").count() == 16
    assert page.locator(".node-text").count() == 0
    assert errors == []
    page.close()
