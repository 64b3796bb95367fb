"""Running one query over a loaded index (`search/query/retrieval.py`): which lists a mode draws on, filters,
paging, grouping, score floors, context, and which languages a short query is matched in lexically.

The store is built with the fake embedder, so nothing here says anything about ranking quality: the expected
results come from the corpus (which passages say "cat", which article a passage is in), not from scores.
"""

from __future__ import annotations

from collections import Counter

import pytest

from search.ingest.language import LanguageDetector, LanguageGuess
from search.query.retrieval import Retriever, lexical_languages, script_of
from search.records import MODES, Hit, Mode, Passage, SearchQuery
from search.service import SearchService
from tests.helpers import make_service

ARTICLES = {
    "en-cats.txt": [
        "Cats are small domestic animals that live with people.",
        "Most cats sleep in the sun for a large part of the day.",
        "A cat hunts mice and birds in the garden at night.",
        "Koltunov wrote a long book about the history of house cats.",
    ],
    "en-dogs.txt": [
        "Dogs bark at strangers who walk past the house.",
        "A dog fetches sticks in the park every morning.",
        "Dogs and wolves share many ancestors from long ago.",
    ],
    "de-katzen.txt": [
        "Katzen sind kleine Haustiere, die gern bei Menschen leben.",
        "Die meisten Katzen schlafen tagsüber in der Sonne.",
        "Koltunov schrieb ein Buch über die Geschichte der Hauskatzen.",
    ],
    "ru-koshki.txt": [
        "Кошки — маленькие домашние животные, которые живут с людьми.",
        "Большую часть дня кошки спят на солнце.",
        "Колтунов написал книгу об истории домашних кошек.",
    ],
}
SIZE = sum(len(paragraphs) for paragraphs in ARTICLES.values())
# What a sure detector says of an English query, and what an unsure one says of a lone name.
SURE_EN = LanguageGuess("en", {"en": 0.9, "de": 0.1})
UNSURE_EN = LanguageGuess("en", {"en": 0.4, "de": 0.35, "ru": 0.25})


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> SearchService:
    tmp = tmp_path_factory.mktemp("retrieval")
    corpus = tmp / "corpus"
    corpus.mkdir()
    for name, paragraphs in ARTICLES.items():
        (corpus / name).write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    detector = LanguageDetector(["en", "de", "ru", "zh"], preload=False)
    service = make_service(tmp, detector, query_batch_ms=0)
    service.build([corpus])
    service.load()
    return service


@pytest.fixture(scope="module")
def passages(svc: SearchService) -> dict[str, Passage]:
    found = {p.passage_id: p for p in svc.store.all_passages()}
    assert len(found) == SIZE  # one passage per paragraph: the tests below count on it
    assert {p.lang for p in found.values()} == {"en", "de", "ru"}
    return found


def run(svc: SearchService, q: SearchQuery, guess: LanguageGuess = SURE_EN) -> list[Hit]:
    retriever = Retriever(svc.store, svc.settings, svc.encoder.passages)
    return retriever.run(q, guess, svc.encoder.queries([q.query])[0])


def ids(hits: list[Hit]) -> list[str]:
    return [h.passage.passage_id for h in hits]


def with_words(passages: dict[str, Passage], *stems: str, lang: str = "en") -> set[str]:
    """Passages in `lang` with a word starting with one of `stems`: what BM25 in that language can match."""
    return {
        pid
        for pid, p in passages.items()
        if p.lang == lang and any(w.lower().startswith(stems) for w in p.text.replace(".", " ").split())
    }


def test_dense_hits_come_from_the_dense_list_only(svc: SearchService) -> None:
    hits = run(svc, SearchQuery("cats sleep", k=SIZE, mode="dense"))

    assert len(hits) == SIZE  # the fake vectors rank every passage
    assert all(set(h.ranks) == {"dense"} for h in hits)
    assert sorted(h.ranks["dense"] for h in hits) == list(range(1, SIZE + 1))
    assert [h.rank for h in hits] == list(range(1, SIZE + 1))


def test_lexical_hits_are_the_passages_with_the_words_in_the_querys_language(
    svc: SearchService, passages: dict[str, Passage]
) -> None:
    hits = run(svc, SearchQuery("cats sleep", k=SIZE, mode="lexical"))

    assert set(ids(hits)) == with_words(passages, "cat", "sleep") and len(hits) == 4
    assert all(set(h.ranks) == {"lexical"} for h in hits)
    assert run(svc, SearchQuery("cats sleep", k=SIZE, mode="lexical"), LanguageGuess("ru", {"ru": 0.9})) == []


def test_lexical_search_needs_no_query_vector(svc: SearchService) -> None:
    q = SearchQuery("cats sleep", k=SIZE, mode="lexical")
    without = Retriever(svc.store, svc.settings, svc.encoder.passages).run(q, SURE_EN, None)

    assert ids(without) == ids(run(svc, q))


def test_hybrid_ranks_say_where_each_hit_stood_in_the_dense_and_lexical_lists(svc: SearchService) -> None:
    dense = run(svc, SearchQuery("cats sleep", k=SIZE, mode="dense"))
    lexical = run(svc, SearchQuery("cats sleep", k=SIZE, mode="lexical"))
    hybrid = run(svc, SearchQuery("cats sleep", k=SIZE, mode="hybrid"))

    assert set(ids(hybrid)) == set(ids(dense)) | set(ids(lexical))
    assert all(h.ranks and set(h.ranks) <= {"dense", "lexical"} for h in hybrid)
    for name, single in (("dense", dense), ("lexical", lexical)):
        in_hybrid = {h.passage.passage_id: h.ranks[name] for h in hybrid if name in h.ranks}
        assert in_hybrid == {h.passage.passage_id: h.ranks[name] for h in single}, name
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_language_and_article_filters_restrict_every_mode(
    svc: SearchService, passages: dict[str, Passage], mode: Mode
) -> None:
    def found(**filters: object) -> set[str]:
        return set(ids(run(svc, SearchQuery("cats sleep", k=SIZE, mode=mode, **filters))))  # type: ignore[arg-type]

    everything = found()
    for filters, allowed in [
        ({"langs": ["de"]}, {pid for pid, p in passages.items() if p.lang == "de"}),
        ({"articles": ["en-dogs.txt"]}, {pid for pid, p in passages.items() if p.article_id == "en-dogs.txt"}),
        ({"articles": ["en-cats.txt", "de-katzen.txt"], "langs": ["en"]},
         {pid for pid, p in passages.items() if p.article_id == "en-cats.txt"}),
    ]:  # fmt: skip
        assert found(**filters) == everything & allowed, filters
    if mode != "lexical":  # the vectors reach every passage, so a filter leaves exactly the allowed ones
        assert found(langs=["de"]) == {pid for pid, p in passages.items() if p.lang == "de"}
    assert found(langs=["xx"]) == set() and found(articles=["nope.txt"]) == set()


@pytest.mark.parametrize("mode", MODES)
def test_pages_are_stable_and_do_not_overlap(svc: SearchService, mode: Mode) -> None:
    full = run(svc, SearchQuery("cats sleep", k=SIZE, mode=mode))
    pages = [run(svc, SearchQuery("cats sleep", k=3, offset=offset, mode=mode)) for offset in range(0, SIZE, 3)]

    assert [pid for page in pages for pid in ids(page)] == ids(full)
    assert [h.rank for page in pages for h in page] == [h.rank for h in full]
    assert [ids(page) for page in pages] == [
        ids(run(svc, SearchQuery("cats sleep", k=3, offset=offset, mode=mode))) for offset in range(0, SIZE, 3)
    ]


def test_grouping_by_article_keeps_each_articles_best_passage_and_counts_its_candidates(
    svc: SearchService, passages: dict[str, Passage]
) -> None:
    ranked = run(svc, SearchQuery("cats sleep", k=SIZE, mode="dense"))
    grouped = run(svc, SearchQuery("cats sleep", k=10, mode="dense", group_by="article"))

    articles = [h.passage.article_id for h in grouped]
    assert sorted(articles) == sorted(ARTICLES)  # one hit per article
    best: dict[str, str] = {}
    for h in ranked:
        best.setdefault(h.passage.article_id, h.passage.passage_id)
    assert ids(grouped) == [best[a] for a in articles]
    assert [h.rank for h in grouped] == list(range(1, len(ARTICLES) + 1))
    # dense candidates are every passage, so each article's count is its number of paragraphs
    assert {h.passage.article_id: h.article_matches for h in grouped} == {a: len(p) for a, p in ARTICLES.items()}
    assert all(h.article_matches is None for h in ranked)


def test_grouping_counts_only_the_candidates_of_the_mode(svc: SearchService, passages: dict[str, Passage]) -> None:
    grouped = run(svc, SearchQuery("cats sleep", k=10, mode="lexical", group_by="article"))

    matched = Counter(passages[pid].article_id for pid in with_words(passages, "cat", "sleep"))
    assert {h.passage.article_id: h.article_matches for h in grouped} == dict(matched)


@pytest.mark.parametrize("mode", MODES)
def test_min_score_drops_the_hits_below_it(svc: SearchService, mode: Mode) -> None:
    full = run(svc, SearchQuery("cats sleep", k=SIZE, mode=mode))
    floor = full[len(full) // 2].score

    kept = run(svc, SearchQuery("cats sleep", k=SIZE, mode=mode, min_score=floor))

    assert kept and ids(kept) == [h.passage.passage_id for h in full if h.score >= floor]
    assert run(svc, SearchQuery("cats sleep", k=SIZE, mode=mode, min_score=full[0].score + 1)) == []


@pytest.mark.parametrize("n", [1, 2])
def test_context_attaches_the_neighbouring_paragraphs_in_order(
    svc: SearchService, passages: dict[str, Passage], n: int
) -> None:
    hits = run(svc, SearchQuery("cats sleep", k=SIZE, mode="dense", context=n))

    for h in hits:
        p = h.passage
        same_article = sorted(
            (o for o in passages.values() if o.article_id == p.article_id and o.passage_id != p.passage_id),
            key=lambda o: o.paragraph,
        )
        expected = [
            ("before" if o.paragraph < p.paragraph else "after", o)
            for o in same_article
            if abs(o.paragraph - p.paragraph) <= n
        ]
        assert h.context == expected, p.passage_id
    first = next(h for h in hits if h.passage.article_id == "en-cats.txt" and h.passage.paragraph == 0)
    assert [position for position, _ in first.context] == ["after"] * n
    assert all(h.context == [] for h in run(svc, SearchQuery("cats sleep", k=SIZE, mode="dense")))


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("Koltunov", "Latin"),
        ("Zoë", "Latin"),
        ("2024: Koltunov", "Latin"),  # the first letter counts, not the first character
        ("Колтунов", "Cyrillic"),
        ("普京", "CJK"),
        ("こんにちは", "CJK"),
        ("カタカナ", "CJK"),
        ("한국", "Hangul"),
        ("مرحبا", "Arabic"),
        ("שלום", "Hebrew"),
        ("Ελλάδα", "Greek"),
        ("नमस्ते", "Devanagari"),
        ("สวัสดี", "Thai"),
        ("2024 !?", None),
        ("", None),
    ],
)
def test_script_of_a_query(text: str, script: str | None) -> None:
    assert script_of(text) == script


def test_a_sure_guess_is_matched_in_its_own_language_only() -> None:
    indexed = ["de", "en", "ru", "zh"]
    assert lexical_languages("Koltunov", SURE_EN, indexed) == ["en"]
    assert lexical_languages("Koltunov", SURE_EN, ["de", "ru"]) == []  # not indexed: no lexical list at all


def test_an_unsure_latin_name_is_matched_in_every_indexed_latin_language() -> None:
    indexed = ["de", "en", "fr", "ru", "zh"]
    assert lexical_languages("Koltunov", UNSURE_EN, indexed) == ["de", "en", "fr"]
    assert lexical_languages("Колтунов", LanguageGuess("ru", {"ru": 0.3, "uk": 0.3}), indexed) == ["ru"]


def test_an_unsure_name_finds_its_passages_in_every_latin_language(svc: SearchService) -> None:
    q = SearchQuery("Koltunov", k=SIZE, mode="lexical")

    sure = run(svc, q, SURE_EN)
    unsure = run(svc, q, UNSURE_EN)

    assert [(h.passage.article_id, h.passage.paragraph) for h in sure] == [("en-cats.txt", 3)]
    assert sorted((h.passage.article_id, h.passage.paragraph) for h in unsure) == [
        ("de-katzen.txt", 2),
        ("en-cats.txt", 3),
    ]
