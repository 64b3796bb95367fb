"""`report.html` in a real headless Chromium (Debian's `chromium`): no console errors, every figure decoded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from search.reports.run import ReportOptions, run_report

ROOT = Path(__file__).resolve().parents[1]
# Screenshots for people to look at (and for the README); /reports/ is ignored by git.
SCREENSHOTS = ROOT / "reports" / "test-output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
FIGURES = ("pairs per language pair", "article matrix heatmap", "score histograms per language pair")


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); CI installs it")
    return path


def check_page(page_file: Path, screenshot: Path) -> dict[str, list[int]]:
    """Open the page over file://, fail on any console error or page error, return each image's natural size."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(page_file.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete ? e.naturalWidth : 0, e.naturalHeight])"
            )
            title = page.title()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert title == "Similarity report"
    return {alt: [w, h] for alt, w, h in images}


def test_synthetic_report_renders_without_errors(tmp_path: Path) -> None:
    from test_report import make_store, synthetic

    chromium()
    store = make_store(tmp_path / "index", *synthetic())
    run_report(store, ReportOptions(k=5, align=("en/a0", "zh/a0")), tmp_path / "out")
    sizes = check_page(tmp_path / "out" / "report.html", SCREENSHOTS / "report-synthetic.png")
    for alt in (*FIGURES, "translation margin histograms"):
        assert sizes[alt][0] > 0 and sizes[alt][1] > 0, alt
    assert (SCREENSHOTS / "report-synthetic.png").stat().st_size > 10_000


@pytest.mark.model
def test_seed_report_renders_without_errors(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chromium()
    (article,) = [a.article_id for a in service.articles()]
    service.report(ReportOptions(align=(f"{article}@en", f"{article}@zh")), tmp_path)
    sizes = check_page(tmp_path / "report.html", SCREENSHOTS / "report-seed.png")
    for alt in FIGURES:
        assert sizes[alt][0] > 0 and sizes[alt][1] > 0, alt
