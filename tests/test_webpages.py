"""Web pages shaped like news sites: only the story is indexed, with its title, author, date, URL and site name."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.ingest.chunking import chunk_article
from search.ingest.corpus import read_corpus
from tests.helpers import PAGE, STORY, write

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
