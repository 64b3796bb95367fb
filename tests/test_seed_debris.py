"""On the seed with the real model: the attribution line "科尔图诺夫。" and the photo caption are no hubs any more,
and stay searchable through the paragraph they joined."""

from __future__ import annotations

import pytest

from search.records import SearchQuery

pytestmark = pytest.mark.model

ATTRIBUTION = "科尔图诺夫。"
CAPTION = "当地时间7月3日,美国得梅因,特朗普在“致敬美国”庆典上隔着防弹玻璃发表讲话。图/视觉中国"


@pytest.mark.parametrize("query", ["NATO", "Putin", "Zoellick", "北约", "Koltunov"])
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_the_attribution_line_is_not_a_hub(service, query: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    hits = service.search(SearchQuery(query, k=3, mode=mode)).hits
    assert all(h.passage.text != ATTRIBUTION for h in hits), [h.passage.text[:30] for h in hits]
    assert all(len(h.passage.text) > 20 for h in hits)


def test_no_passage_of_the_seed_is_debris(service) -> None:  # type: ignore[no-untyped-def]
    from search.ingest.chunking import ChunkerSettings, word_count

    texts = [p.text for p in service.store.all_passages()]
    assert texts and not [t for t in texts if word_count(t) < ChunkerSettings().min_words]
    assert sum(t.endswith(ATTRIBUTION) for t in texts) == 1 and sum(t.endswith(CAPTION) for t in texts) == 1


def test_the_caption_is_found_through_its_paragraph(service) -> None:  # type: ignore[no-untyped-def]
    hits = service.search(SearchQuery("特朗普隔着防弹玻璃发表讲话", k=3, mode="hybrid")).hits
    assert any(CAPTION in h.passage.text for h in hits)


@pytest.mark.parametrize(
    ("query", "lang"), [("NATO", "en"), ("Putin", "en"), ("Zoellick", "en"), ("Koltunov", "en"), ("北约", "zh")]
)
def test_short_queries_on_the_seed_get_its_languages_or_unknown(service, query: str, lang: str) -> None:  # type: ignore[no-untyped-def]
    assert service.search(SearchQuery(query, k=1)).query_lang in (lang, "und")
