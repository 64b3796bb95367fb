"""The search page at / in a real headless Chromium (Debian's `chromium`), against a real server on the seed index.

Screenshots go to test-output/. `UPDATE_SCREENSHOT=1 pytest tests/test_web.py` also refreshes docs/screenshot.png,
the README's picture; a normal run leaves that committed file alone.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Locator, Page, Route, sync_playwright

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-output"
README_SCREENSHOT = ROOT / "docs" / "screenshot.png"
CHROMIUM = shutil.which("chromium")
# Playwright's own browser download cannot work here; these flags keep Debian's Chromium quiet and offline.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
QUESTION = "普京如何看待俄美关系？"
EVIDENCE = "Putin views the relationship between Russia and the United States"
RESULTS = '#results[data-state="results"]'


@dataclass
class Tab:
    """A page and everything it reported as an error: console errors and uncaught exceptions."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def open(self, path: str = "/") -> None:
        self.page.goto(path)
        self.page.wait_for_selector("body[data-ready]")

    def search(self, question: str) -> None:
        box = self.page.get_by_label("Question or text, in any language")
        box.fill("")
        box.press_sequentially(question)
        box.press("Enter")
        self.page.wait_for_selector(RESULTS)

    def settle(self) -> None:
        """Wait for the best-matching sentences, which arrive after the hits when the server can mark them."""
        self.page.wait_for_function(
            "document.querySelector('#results').dataset.highlights !== 'loading'", timeout=180_000
        )

    def hit(self, lang: str, text: str) -> Locator:
        return self.page.locator(f'li.hit[data-lang="{lang}"]', has_text=text)

    def langs_of_hits(self) -> list[str]:
        return self.page.locator("li.hit").evaluate_all("els => els.map(e => e.dataset.lang)")


# A mark rather than a skip in the fixture, so that a machine without Chromium does not start the server for nothing.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH: apt-get install -y chromium (Playwright's own download is unused)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def tab(browser: Browser, server_url: str) -> Iterator[Tab]:
    context = browser.new_context(base_url=server_url, viewport={"width": 1100, "height": 900}, locale="en-US")
    page = context.new_page()
    t = Tab(page)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            t.errors.append(f"console: {msg.text} ({msg.location.get('url')})")

    def on_page_error(exc: Error) -> None:
        t.errors.append(f"page error: {exc}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    yield t
    context.close()


def screenshot(page: Page, name: str) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / name
    page.screenshot(path=str(path))
    return path


def features(server_url: str) -> dict[str, bool]:
    """The features the page reads from /openapi.json to decide what to show."""
    spec = httpx.get(f"{server_url}/openapi.json", timeout=10).json()
    paths = spec["paths"]
    search_params = {p["name"] for p in paths["/search"]["get"].get("parameters", [])}
    return {
        "mode": "mode" in search_params,
        "context": "context" in search_params,
        "highlight": "highlight" in search_params,
        "similar": any(re.fullmatch(r"/passages/\{[^}]+\}/similar", p) and "get" in paths[p] for p in paths),
        "reports": "get" in paths.get("/reports", {}),
    }


def test_page_and_assets_are_served_locally(server_url: str) -> None:
    r = httpx.get(f"{server_url}/", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "static/app.js" in refs and "static/style.css" in refs
    for ref in refs:
        assert not re.match(r"(?:https?:)?//", ref), f"external resource {ref!r}: everything must be served locally"
    types = {"app.js": "javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
    for name, kind in types.items():
        a = httpx.get(f"{server_url}/static/{name}", timeout=10)
        assert a.status_code == 200 and kind in a.headers["content-type"], (name, a.status_code, a.headers)
        assert not re.search(r"""(?:url\(|import\s|from\s)\s*["']?(?:https?:)?//""", a.text), name


@needs_chromium
def test_chinese_question_finds_english_evidence(tab: Tab) -> None:
    page = tab.page
    tab.open("/")
    assert page.locator("#idle").is_visible()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q", "`/` focuses the search box"

    tab.search(QUESTION)

    status = page.locator("#status-text").inner_text()
    assert re.search(r"\d+ results? · query language: Chinese \(zh\)( · \w+)? · [\d.]+ ms", status), status
    english = tab.hit("en", EVIDENCE)
    assert english.count() == 1, f"the English paragraph is not among the results: {tab.langs_of_hits()}"
    assert english.locator(".badge").inner_text().endswith("en")
    assert re.fullmatch(r"score \d+(\.\d+)?(e-\d+)?", english.locator(".score").inner_text())
    assert "zh" in tab.langs_of_hits(), "results in every language when no language is picked"
    assert parse_qs(urlsplit(page.url).query)["q"] == [QUESTION], "the query is in the URL (permalink)"
    assert page.locator("#permalink").evaluate("a => a.href") == page.url

    toggle = english.locator(".actions button").first
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    panel = english.locator(".context")
    assert panel.is_visible() and "Passage" in panel.inner_text()
    assert EVIDENCE in english.inner_text()
    toggle.press("Enter")
    assert toggle.get_attribute("aria-expanded") == "false" and not panel.is_visible()

    page.get_by_label("English").check()
    page.wait_for_selector(RESULTS)
    langs = tab.langs_of_hits()
    assert langs and set(langs) == {"en"}, langs
    assert parse_qs(urlsplit(page.url).query)["lang"] == ["en"]
    evidence = tab.hit("en", EVIDENCE)
    assert evidence.count() == 1
    evidence.locator(".actions button").first.click()
    tab.settle()
    page.evaluate("window.scrollTo(0, 0)")
    path = screenshot(page, "search.png")
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, README_SCREENSHOT)
        assert README_SCREENSHOT.stat().st_size < 300_000, "keep the README screenshot under 300 KB"
    assert tab.errors == []


@needs_chromium
def test_permalink_runs_the_search(tab: Tab) -> None:
    page = tab.page
    page.goto(f"/?q={quote(QUESTION)}&lang=en&k=5")
    page.wait_for_selector(RESULTS)
    assert page.locator("#q").input_value() == QUESTION
    assert page.locator("#lang-en").is_checked() and not page.locator("#lang-zh").is_checked()
    assert page.locator("#k").input_value() == "5"
    langs = tab.langs_of_hits()
    assert 1 <= len(langs) <= 5 and set(langs) == {"en"}, langs
    assert tab.hit("en", EVIDENCE).count() == 1
    assert tab.errors == []


@needs_chromium
def test_empty_state_offers_every_language(tab: Tab) -> None:
    page = tab.page
    page.goto("/?q=NATO&lang=xx")
    page.wait_for_selector('#results[data-state="empty"]')
    assert "No passages found" in page.locator("#status-text").inner_text()
    page.get_by_role("button", name="Search every language").click()
    page.wait_for_selector(RESULTS)
    assert tab.langs_of_hits()
    assert "lang" not in parse_qs(urlsplit(page.url).query)
    assert tab.errors == []


@needs_chromium
def test_error_state_shows_the_servers_message(tab: Tab) -> None:
    def unavailable(route: Route) -> None:
        body = '{"error": {"code": "index_not_found", "message": "no index yet: run `search index`"}}'
        route.fulfill(status=503, content_type="application/json", body=body)

    page = tab.page
    tab.open("/")
    page.route(re.compile(r".*/search\?.*"), unavailable)
    box = page.locator("#q")
    box.fill(QUESTION)
    box.press("Enter")
    page.wait_for_selector('#results[data-state="error"]', state="attached")
    alert = page.get_by_role("alert")
    assert alert.is_visible() and "no index yet: run `search index`" in alert.inner_text()
    assert page.locator("li.hit").count() == 0
    # the browser itself logs the failed request; nothing else may complain
    assert all("status of 503" in e for e in tab.errors), tab.errors


@needs_chromium
def test_narrow_screen_has_no_horizontal_scroll(tab: Tab) -> None:
    page = tab.page
    page.set_viewport_size({"width": 375, "height": 812})
    page.goto(f"/?q={quote(QUESTION)}")
    page.wait_for_selector(RESULTS)
    for button in page.locator("li.hit .actions button:first-child").all()[:3]:
        button.click()
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"horizontal scroll at 375 px: content {widths[0]} px wide"
    screenshot(page, "search-375px.png")
    page.click("#nav-reports")
    page.wait_for_function("document.querySelector('#reports-status').textContent.trim() !== ''")
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1]
    assert tab.errors == []


# Every visible text against its effective background: WCAG AA (4.5:1, or 3:1 for large text).
CONTRAST_JS = """
() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.checkVisibility() || el.closest(".vh")) continue;
    const s = getComputedStyle(el);
    const a = lum(rgb(s.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) bad.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)} < ${need}`);
  }
  return bad;
}
"""

UNLABELLED_JS = """
() => [...document.querySelectorAll("input, select, button, a[href]")]
  .filter((el) => {
    const name = (el.labels && [...el.labels].map((l) => l.textContent).join(" ")) ||
      el.getAttribute("aria-label") || (el.tagName !== "INPUT" && el.textContent);
    return !(name && name.trim());
  })
  .map((el) => el.outerHTML.slice(0, 80))
"""


@needs_chromium
def test_controls_are_labelled_keyboard_friendly_and_readable(tab: Tab) -> None:
    page = tab.page
    page.goto(f"/?q={quote(QUESTION)}")
    page.wait_for_selector(RESULTS)
    page.locator("li.hit .actions button").first.click()
    assert page.evaluate(UNLABELLED_JS) == []
    assert page.evaluate(CONTRAST_JS) == []
    assert page.locator("#status-text").get_attribute("aria-live") == "polite"
    assert page.locator("#lang-en").evaluate("el => el.labels[0].textContent").startswith("English")

    page.locator("#q").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Search"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none", "visible focus"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "lang", "language chips are reachable by keyboard"
    page.keyboard.press("Space")
    page.wait_for_url(re.compile(r"[?&]lang="))
    page.wait_for_selector(RESULTS)
    assert page.evaluate("document.activeElement.checked") is True
    assert tab.errors == []


@needs_chromium
def test_the_page_offers_modes_highlights_context_more_like_this_and_reports(tab: Tab, server_url: str) -> None:
    # The page shows a feature only when the server's OpenAPI documents it; this server documents all of them, so
    # each must be on the page: a missing one fails here rather than quietly hiding its control.
    assert features(server_url) == dict.fromkeys(("mode", "context", "highlight", "similar", "reports"), True)
    report = httpx.post(f"{server_url}/reports", params={"wait": "true"}, json={"k": 4}, timeout=600).json()
    assert report["status"] == "done", report
    page = tab.page
    page.goto(f"/?q={quote(QUESTION)}")
    page.wait_for_selector(RESULTS)

    modes = page.locator("#modes")
    assert modes.is_visible() and modes.locator("input").count() >= 3, "dense, lexical and hybrid can be chosen"
    tab.settle()
    sent = httpx.get(f"{server_url}/search", params={"q": QUESTION, "highlight": "true"}, timeout=180).json()["hits"]
    assert any(h.get("highlights") for h in sent), "the server marks sentences for this question"
    assert page.locator("li.hit .text mark").count() >= 1, "the best-matching sentences are marked"
    first = page.locator("li.hit").first
    first.locator(".actions button").first.click()
    assert first.locator(".ctx li[aria-current]").count() == 1, "the hit's own paragraph, marked as current"
    assert first.locator(".ctx li").count() >= 2, "with its neighbouring paragraphs"

    source = first.get_attribute("data-passage-id")
    first.get_by_role("button", name="More like this").click()
    page.wait_for_selector("#similar-bar:not([hidden])")
    assert parse_qs(urlsplit(page.url).query)["similar"] == [source]
    # The seed is one article, so its own passages are the only neighbours: the page offers to include them.
    include = page.get_by_label("Include passages of the same article")
    assert include.is_visible()
    include.check()
    page.wait_for_url(re.compile(r"[?&]same=1"))
    page.wait_for_selector(RESULTS)
    assert page.locator("li.hit").count() >= 1
    assert page.locator(f'li.hit[data-passage-id="{source}"]').count() == 0
    page.get_by_role("button", name="Back to results").click()
    page.wait_for_selector(RESULTS)
    assert parse_qs(urlsplit(page.url).query)["q"] == [QUESTION]

    page.get_by_role("link", name="Reports").click()
    page.wait_for_function("document.querySelector('#reports-status').textContent.trim() !== ''")
    listed = httpx.get(f"{server_url}/reports", timeout=10).json()
    assert page.locator("#reports-list li").count() == len(listed) >= 1
    assert page.locator(f'#reports-list a[href$="reports/{report["job_id"]}"]').count() == 1
    screenshot(page, "reports.png")
    assert tab.errors == []


@needs_chromium
def test_a_hit_shows_its_other_languages(tab: Tab) -> None:
    # The seed holds no translations (tests/test_translations_model.py), so the server's own answer is given one:
    # the first hit is said to translate the best hit of the other language, with its text (translations=collapse)
    # or without it (together, where that member is a hit of its own).
    def with_translation(route: Route) -> None:
        body = route.fetch().json()
        first = body["hits"][0]
        other = next(h for h in body["hits"] if h["lang"] != first["lang"])
        text = None if "together" in route.request.url else other["text"]
        first["translations"] = [{"passage_id": other["passage_id"], "lang": other["lang"], "text": text}]
        route.fulfill(json=body)

    page = tab.page
    page.route(re.compile(r".*/search\?.*"), with_translation)
    page.goto(f"/?q={quote(QUESTION)}")
    page.wait_for_selector(RESULTS)
    first, rest = page.locator("li.hit").first, page.locator("li.hit").nth(1)
    other_lang = page.locator("li.hit").evaluate_all(
        "els => els.map(e => e.dataset.lang).find(l => l !== els[0].dataset.lang)"
    )
    name = {"en": "English", "zh": "Chinese"}[other_lang]
    shown = first.locator("details.translations")
    assert shown.locator("summary").inner_text() == f"Also in {name}"
    assert rest.locator(".translations").count() == 0, "only hits with translations list them"
    item = shown.locator(f'li[data-lang="{other_lang}"]')
    assert not item.is_visible()
    shown.locator("summary").click()
    assert item.is_visible() and item.locator(f'[lang="{other_lang}"]').inner_text().strip()
    screenshot(page, "translations.png")
    assert page.evaluate(UNLABELLED_JS) == [] and page.evaluate(CONTRAST_JS) == []

    page.goto(f"/?q={quote(QUESTION)}&translations=together")
    page.wait_for_selector(RESULTS)
    note = page.locator("li.hit").first.locator(".translations")
    assert note.inner_text() == f"Also in {name}, among these results."
    assert tab.errors == []
