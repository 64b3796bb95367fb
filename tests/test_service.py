"""`SearchService` (`search/service.py`): what it checks before any model call, the default mode, more-like-this,
reports without the model, and the bad inputs of its writes and model commands.

The fake embedder stands in for the model: plumbing only; it records what reached it (`encoded`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import search.service
from search.config import Settings
from search.errors import BadInput, ModelUnavailable
from search.index.store import current_build
from search.ingest.language import LanguageDetector
from search.records import Article, SearchQuery
from search.reports.run import ReportOptions
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import make_service

ARTICLES = {
    "cats.txt": [
        "Cats sleep in the sun for most of the day.",
        "A cat hunts mice in the garden at night.",
        "Old cats like warm blankets by the fire.",
    ],
    "dogs.txt": [
        "Dogs bark at strangers who walk past the house.",
        "A dog fetches sticks in the park every morning.",
    ],
    "birds.txt": [
        "Birds sing at dawn in the tall trees.",
        "Parrots can learn to repeat human words.",
    ],
    "koshki.txt": [
        "Кошки спят на солнце большую часть дня.",
        "Кошка охотится на мышей в саду ночью.",
    ],
}
SIZE = sum(len(paragraphs) for paragraphs in ARTICLES.values())


def write_corpus(root: Path) -> Path:
    root.mkdir()
    for name, paragraphs in ARTICLES.items():
        (root / name).write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "ru", "de"], preload=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, detector: LanguageDetector) -> SearchService:
    """The corpus built and loaded once; tests that read only share it."""
    tmp = tmp_path_factory.mktemp("service")
    svc = make_service(tmp, detector, query_batch_ms=0)
    svc.build([write_corpus(tmp / "corpus")])
    svc.load()
    return svc


def fake(svc: SearchService) -> FakeEmbedder:
    embedder = svc.embedder
    assert isinstance(embedder, FakeEmbedder)
    return embedder


def served_with(built: SearchService, detector: LanguageDetector, **overrides: object) -> SearchService:
    """Another service on the same published index, with other settings and a fake embedder of its own."""
    settings = built.settings.model_copy(update=overrides)
    return SearchService(settings, embedder=FakeEmbedder(), detector=detector)


# --- the default mode -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("default", ["dense", "lexical", "hybrid"])
def test_a_search_without_a_mode_uses_the_configured_default_and_says_so(
    built: SearchService, detector: LanguageDetector, default: str
) -> None:
    svc = served_with(built, detector, default_mode=default)

    result = svc.search(SearchQuery("cats sleep in the sun", k=SIZE))

    assert result.mode == default
    lists = {name for h in result.hits for name in h.ranks}
    assert lists == ({"dense", "lexical"} if default == "hybrid" else {default})


def test_a_mode_given_wins_over_the_default(built: SearchService, detector: LanguageDetector) -> None:
    svc = served_with(built, detector, default_mode="lexical")

    results = svc.search_many([SearchQuery("cats", mode="dense"), SearchQuery("cats")])

    assert [r.mode for r in results] == ["dense", "lexical"]
    assert {name for h in results[0].hits for name in h.ranks} == {"dense"}


def test_a_lexical_search_never_calls_the_model(built: SearchService, detector: LanguageDetector) -> None:
    svc = served_with(built, detector, default_mode="lexical")

    hits = svc.search(SearchQuery("parrots words")).hits

    assert [h.passage.article_id for h in hits] == ["birds.txt"]
    assert fake(svc).encoded == []
    svc.search(SearchQuery("parrots words", mode="dense"))
    assert fake(svc).encoded == ["parrots words"]  # the same service does call it when vectors are needed


# --- every query is checked before the model sees any -------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (SearchQuery("dogs", k=0), "k"),
        (SearchQuery("   "), "query"),
        (SearchQuery("dogs", offset=-1), "offset"),
        (SearchQuery("dogs", context=99), "context"),
        (SearchQuery("dogs", published_after="last May"), "published_after"),
        (SearchQuery("dogs", mode="fuzzy"), "mode"),  # type: ignore[arg-type]
    ],
)
def test_search_many_checks_every_query_before_encoding_any(
    built: SearchService, detector: LanguageDetector, bad: SearchQuery, field: str
) -> None:
    svc = served_with(built, detector)
    good = [SearchQuery("dogs fetch sticks"), SearchQuery("birds sing at dawn", mode="dense")]

    with pytest.raises(BadInput) as info:
        svc.search_many([*good, bad])

    assert str(info.value).startswith(f"{field}:"), str(info.value)
    assert fake(svc).encoded == []
    svc.search_many(good)
    assert sorted(fake(svc).encoded) == ["birds sing at dawn", "dogs fetch sticks"]


# --- more like this -------------------------------------------------------------------------------------------------


def test_similar_passages_leave_out_the_source_and_by_default_its_article(built: SearchService) -> None:
    source = next(p for p in built.store.all_passages() if p.article_id == "cats.txt" and p.paragraph == 1)
    others = len(ARTICLES["cats.txt"]) - 1

    hits = built.similar_passages(source.passage_id, k=built.settings.max_k)
    with_article = built.similar_passages(source.passage_id, k=built.settings.max_k, exclude_same_article=False)

    assert len(hits) == SIZE - 1 - others and all(h.passage.article_id != "cats.txt" for h in hits)
    assert len(with_article) == SIZE - 1 and source.passage_id not in {h.passage.passage_id for h in with_article}
    assert sum(h.passage.article_id == "cats.txt" for h in with_article) == others
    for found in (hits, with_article):
        assert [h.rank for h in found] == list(range(1, len(found) + 1))
        assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
    assert len(built.similar_passages(source.passage_id, k=2)) == 2


def test_similar_articles_leave_out_the_article_itself(built: SearchService) -> None:
    matches = built.similar_articles("cats.txt", k=10)

    assert {m.article_id for m in matches} == set(ARTICLES) - {"cats.txt"}
    assert all(1 <= m.matched_passages <= len(ARTICLES["cats.txt"]) for m in matches)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert len(built.similar_articles("cats.txt", k=1)) == 1


@pytest.mark.parametrize("method", ["similar_passages", "similar_articles"])
def test_more_like_this_checks_k(built: SearchService, method: str) -> None:
    target = built.store.all_passages()[0].passage_id if method == "similar_passages" else "cats.txt"
    call = getattr(built, method)
    for k in (0, -3, built.settings.max_k + 1):
        with pytest.raises(BadInput, match=rf"^k: {k} is outside 1\.\.{built.settings.max_k}"):
            call(target, k=k)


# --- reports read the published index without the model ------------------------------------------------------------


def test_a_report_on_a_service_that_never_loaded_the_model_does_not_create_it(
    built: SearchService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a report must not load the model or the language detector")

    monkeypatch.setattr(search.service, "embedder_for", no_model)
    monkeypatch.setattr(search.service, "LanguageDetector", no_model)
    settings = Settings(
        model="no-such-org/no-such-model", index_dir=built.settings.index_dir, cache_dir=tmp_path / "cache"
    )

    summary = SearchService(settings).report(ReportOptions(k=2), tmp_path / "report")

    assert (summary.passages, summary.articles) == (SIZE, len(ARTICLES))
    assert summary.languages == {"en": SIZE - len(ARTICLES["koshki.txt"]), "ru": len(ARTICLES["koshki.txt"])}
    assert (tmp_path / "report" / "summary.json").is_file() and (tmp_path / "report" / "pairs.csv").is_file()


def test_report_options_are_checked_before_anything_is_read(tmp_path: Path) -> None:
    service = SearchService(Settings(model="no-such-org/no-such-model", index_dir=tmp_path / "none"))
    with pytest.raises(BadInput, match="^k: 1 is outside 2..100"):
        service.report(ReportOptions(k=1), tmp_path / "out")


# --- writes and model commands with bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
def test_upserting_an_article_with_blank_text_is_bad_input_and_changes_nothing(built: SearchService, text: str) -> None:
    before = current_build(built.settings.index_dir)
    encoded = len(fake(built).encoded)

    with pytest.raises(BadInput, match="article 'empty.txt': text must not be blank"):
        built.upsert_article(Article("empty.txt", "Empty", text))

    assert current_build(built.settings.index_dir) == before and len(fake(built).encoded) == encoded
    assert "empty.txt" not in {a.article_id for a in built.articles()}


def test_a_bank_from_a_missing_file_is_bad_input_before_the_model_is_used(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    svc = make_service(tmp_path, detector)

    with pytest.raises(BadInput, match="no-such.jsonl: no such file"):
        svc.make_bank(tmp_path / "no-such.jsonl", tmp_path / "bank.npz")

    assert fake(svc).encoded == [] and not (tmp_path / "bank.npz").exists()


def test_a_model_folder_that_exists_is_prepared_as_a_path(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert SearchService(Settings(model=str(folder), cache_dir=tmp_path)).prepare_model() == folder


def test_preparing_a_model_from_a_missing_path_says_the_folder_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelUnavailable, match="no model folder at .*no-such-model"):
        SearchService(Settings(model=str(missing), cache_dir=tmp_path)).prepare_model()


def test_more_like_this_fills_k_from_other_articles_however_long_the_source_article(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    """An article of many near-copies of one paragraph crowds every nearest slot: the other article's passages
    still make the k hits when the source article is left out."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "long.txt").write_text(
        "\n\n".join(f"Cats sleep in the warm sun, day {i}." for i in range(80)) + "\n", encoding="utf-8"
    )
    (corpus / "other.txt").write_text(
        "Dogs bark at strangers.\n\nBirds sing at dawn.\n\nFish swim in the sea.\n", encoding="utf-8"
    )
    svc = make_service(tmp_path, detector, query_batch_ms=0)
    svc.build([corpus])
    source = next(p for p in svc.load().all_passages() if p.article_id == "long.txt")

    hits = svc.similar_passages(source.passage_id, k=3)

    assert [h.passage.article_id for h in hits] == ["other.txt"] * 3
