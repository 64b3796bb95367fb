"""Web pages shaped like news sites: only the story is indexed, with its title, author, date, URL and site name."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.ingest.chunking import chunk_article
from search.ingest.corpus import read_corpus
from tests.helpers import write

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Talks in Helsinki end without a deal | The Daily Planet</title>
<meta property="og:title" content="Talks in Helsinki end without a deal">
<meta name="author" content="Jane Doe">
<meta property="article:published_time" content="2025-07-04T09:30:00Z">
<meta property="og:url" content="https://dailyplanet.example/world/helsinki-talks">
<meta property="og:site_name" content="The Daily Planet">
</head><body>
<header>
<a href="/">The Daily Planet</a>
<nav>
<ul>
<li>
<a href="/world">World</a>
</li>
<li>
<a href="/business">Business</a>
</li>
<li>
<a href="/sport">Sport</a>
</li>
</ul>
</nav>
</header>
<div class="cookie-banner" id="cookie-consent">
<p>We use cookies to improve your experience. By continuing you accept our cookie policy.</p>
<button>Accept all cookies</button>
</div>
<main><article>
<h1>Talks in Helsinki end without a deal</h1>
<p class="byline">By <span class="author">Jane Doe</span> · <time datetime="2025-07-04">July 4, 2025</time></p>
<div class="share">
<a href="#">Share on Facebook</a> <a href="#">Share on X</a> <a href="#">Email this article</a>
</div>
<p>The leaders of the two countries met in Helsinki on Thursday for talks that lasted almost four hours,
officials said.</p>
<p>Neither side announced an agreement on arms control, although both described the conversation as frank and
useful.</p>
<figure>
<img src="a.jpg" alt="">
<figcaption>The two delegations at the start of the talks in Helsinki. Photo: Jane Roe/Reuters</figcaption>
</figure>
<p>Analysts had expected little from the meeting, which was arranged at short notice after weeks of public
disagreement.</p>
<h2>What comes next</h2>
<p>Diplomats said working groups would meet again in Geneva before the end of the summer to prepare a second
round.</p>
<p>The foreign ministers are expected to speak by telephone next week, according to a statement released late
on Thursday.</p>
</article>
<aside class="related">
<h3>Related articles</h3>
<ul>
<li>
<a href="/a">Markets rally as talks begin</a>
</li>
<li>
<a href="/b">Five things to know about arms control</a>
</li>
</ul>
</aside>
<section id="comments" class="comments">
<h3>Comments (2)</h3>
<div class="comment">
<p>Great reporting, thanks for keeping us informed about this.</p>
</div>
<div class="comment">
<p>I do not believe a word of what either side says about these talks.</p>
</div>
</section>
</main>
<footer>
<p>© 2025 The Daily Planet. All rights reserved.</p>
<ul>
<li>
<a href="/privacy">Privacy policy</a>
</li>
<li>
<a href="/terms">Terms of use</a>
</li>
</ul>
</footer>
</body></html>"""

STORY = [
    "The leaders of the two countries met in Helsinki on Thursday for talks that lasted almost four hours",
    "Neither side announced an agreement on arms control",
    "Analysts had expected little from the meeting",
    "Diplomats said working groups would meet again in Geneva",
    "The foreign ministers are expected to speak by telephone next week",
]
BOILERPLATE = [
    "World", "Business", "cookies", "Accept all", "Share on", "Email this article", "Related articles",
    "Markets rally", "Five things", "Comments", "Great reporting", "I do not believe", "All rights reserved",
    "Privacy policy", "Terms of use", "By Jane Doe", "July 4, 2025",
]  # fmt: skip


def _passages(path: Path, **options: str) -> tuple[list[str], dict[str, object], str]:
    report = read_corpus([path], **options)  # type: ignore[arg-type]
    [article] = report.articles
    chunks = chunk_article(article.text, lambda t: len(t) // 4 + 4)
    return [c.text for c in chunks], article.metadata, article.title


def test_only_story_paragraphs_survive_in_order(tmp_path: Path) -> None:
    texts, _, _ = _passages(write(tmp_path / "news.html", PAGE))
    found = [next(k for k, t in enumerate(texts) if s in t) for s in STORY]
    assert found == sorted(found) and len(texts) == len(STORY)
    leaked = [b for b in BOILERPLATE for t in texts if b in t]
    assert not leaked, leaked


def test_the_caption_stays_searchable_in_the_paragraph_before_its_figure(tmp_path: Path) -> None:
    texts, _, _ = _passages(write(tmp_path / "news.html", PAGE))
    [with_caption] = [t for t in texts if "The two delegations at the start of the talks" in t]
    assert with_caption.startswith(STORY[1])


def test_title_author_date_url_and_site_become_metadata(tmp_path: Path) -> None:
    _, metadata, title = _passages(write(tmp_path / "news.htm", PAGE))
    assert title == "Talks in Helsinki end without a deal"
    assert metadata == {
        "author": "Jane Doe",
        "published": "2025-07-04",
        "url": "https://dailyplanet.example/world/helsinki-talks",
        "site": "The Daily Planet",
    }


def test_the_visible_text_reader_stays_as_a_setting(tmp_path: Path) -> None:
    texts, metadata, _ = _passages(write(tmp_path / "news.html", PAGE), html_reader="visible")
    assert metadata == {} and any("Accept all cookies" in t for t in texts)


@pytest.mark.parametrize("body", ["<ul><li>Home</li><li>About</li></ul>", "<p>Hi</p>"])
def test_a_page_without_a_story_falls_back_to_its_visible_text(tmp_path: Path, body: str) -> None:
    path = write(tmp_path / "menu.html", f"<html><head><title>Menu</title></head><body>{body}</body></html>")
    report = read_corpus([path])
    assert [a.title for a in report.articles] == ["Menu"] and report.articles[0].text.strip()
