"""Building, publishing, loading and searching an index, with a fake embedder (plumbing, not quality)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search.config import Settings
from search.errors import BadInput, IndexCorrupt, IndexMismatch, IndexNotFound
from search.index.centering import Centering
from search.index.store import current_build
from search.ingest.chunking import normalize_whitespace
from search.ingest.language import LanguageDetector
from search.records import SearchQuery
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import make_service

ARTICLES = {
    "en.txt": "Cats are small domestic animals.\n\nThey like to sleep in the sun for most of the day.\n",
    "zh.txt": "猫是一种小型家养动物。\n\n它们一天中大部分时间喜欢在阳光下睡觉。\n",
    "ru.txt": "Кошки — маленькие домашние животные.\n\nБольшую часть дня они любят спать на солнце.\n",
}


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "zh", "ru", "de"], preload=False)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    for name, text in ARTICLES.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_build_publishes_passages_with_offsets_languages_and_manifest(tmp_path, corpus, detector) -> None:
    svc = make_service(tmp_path, detector)
    summary = svc.build([corpus])
    assert (summary.articles, summary.passages, summary.embedded, summary.reused, summary.removed) == (3, 6, 6, 0, 0)
    assert summary.languages == {"en": 2, "zh": 2, "ru": 2}
    assert set(summary.stages) >= {"read", "chunk", "language", "embed", "center", "write"}

    store = svc.load()
    texts = {a.article_id: (corpus / a.article_id).read_text(encoding="utf-8") for a in store.articles()}
    for p in store.all_passages():
        assert normalize_whitespace(texts[p.article_id][p.start : p.end]) == p.text
        assert p.lang == p.article_id[:2]
    manifest = json.loads((current_build(tmp_path / "index") / "manifest.json").read_text())
    assert manifest["model"] == {
        "name": "fake-model",
        "about": "fake-model from the Hugging Face hub",  # what the name would stand for: not a folder here
        "fingerprint": "fake-1",
        "max_tokens": 64,
        "precision": "fp32",
    }
    assert manifest["dimension"] == 32 and manifest["normalized"] is True
    assert manifest["index"]["type"] == "IndexIDMap2(IndexFlatIP)"
    assert manifest["counts"]["passages"] == 6 and manifest["chunker"]["max_tokens"] == 64
    assert manifest["centering"]["enabled"] is True and "package_version" in manifest


def test_unchanged_passages_are_never_embedded_twice_and_keep_their_ids(tmp_path, corpus, detector) -> None:
    svc = make_service(tmp_path, detector)
    svc.build([corpus])
    ids_before = {p.passage_id for p in svc.load().all_passages()}
    fake = svc.embedder
    assert isinstance(fake, FakeEmbedder)
    calls_before = len(fake.encoded)

    again = svc.build([corpus])
    assert (again.embedded, again.reused, again.removed) == (0, 6, 0)
    assert len(fake.encoded) == calls_before
    assert {p.passage_id for p in svc.load().all_passages()} == ids_before

    (corpus / "en.txt").write_text("Cats are small domestic animals.\n\nDogs bark at strangers.\n", encoding="utf-8")
    changed = svc.build([corpus])
    assert (changed.embedded, changed.reused, changed.removed) == (1, 5, 1)
    assert fake.encoded[calls_before:] == ["Dogs bark at strangers."]


def test_a_failed_build_leaves_the_previous_index_intact(tmp_path, corpus, detector) -> None:
    svc = make_service(tmp_path, detector)
    first = svc.build([corpus])
    before = sorted(p.name for p in (tmp_path / "index" / "builds").iterdir())

    class Broken(FakeEmbedder):
        def encode(self, texts, *, query, progress=False):  # type: ignore[no-untyped-def]
            raise RuntimeError("model crashed")

    (corpus / "new.txt").write_text("Something entirely new.\n", encoding="utf-8")
    broken = SearchService(svc.settings, embedder=Broken(), detector=detector)
    with pytest.raises(RuntimeError):
        broken.build([corpus])
    assert sorted(p.name for p in (tmp_path / "index" / "builds").iterdir()) == before
    reloaded = make_service(tmp_path, detector).load()
    assert reloaded.build_id == first.build_id and reloaded.size == 6


def test_loading_with_another_model_says_how_to_fix_it(tmp_path, corpus, detector) -> None:
    make_service(tmp_path, detector).build([corpus])
    other = SearchService(
        Settings(model="other-model", index_dir=tmp_path / "index"), embedder=FakeEmbedder(), detector=detector
    )
    with pytest.raises(IndexMismatch, match="fake-model.*other-model.*rebuild"):
        other.load()

    class Retrained(FakeEmbedder):
        fingerprint = "fake-2"

    same_name = SearchService(make_service(tmp_path, detector).settings, embedder=Retrained(), detector=detector)
    with pytest.raises(IndexMismatch, match="fingerprint"):
        same_name.load()


def test_missing_and_corrupt_indexes_fail_clearly(tmp_path, corpus, detector) -> None:
    svc = make_service(tmp_path, detector)
    with pytest.raises(IndexNotFound, match="search index"):
        svc.load()
    svc.build([corpus])
    folder = current_build(tmp_path / "index")
    assert folder is not None
    (folder / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexCorrupt, match="checksum"):
        make_service(tmp_path, detector).load()


def test_an_empty_corpus_is_bad_input(tmp_path, detector) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no articles"):
        make_service(tmp_path, detector).build([tmp_path / "empty"])


def test_search_filters_validation_and_tie_order(tmp_path, corpus, detector) -> None:
    svc = make_service(tmp_path, detector)
    svc.build([corpus])
    result = svc.search(SearchQuery("cats sleep in the sun", k=6))
    assert result.query_lang == "en" and len(result.hits) == 6
    keys = [(-round(h.score, 6), h.passage.passage_id) for h in result.hits]
    assert keys == sorted(keys)
    assert all(h.passage.lang == "ru" for h in svc.search(SearchQuery("cats", k=5, langs=["ru"])).hits)
    only = svc.search(SearchQuery("cats", k=5, articles=["zh.txt"])).hits
    assert {h.passage.article_id for h in only} == {"zh.txt"} and len(only) == 2
    assert svc.search(SearchQuery("cats", k=5, langs=["xx"])).hits == []
    for bad in (SearchQuery(" "), SearchQuery("cats", k=0), SearchQuery("cats", k=101), SearchQuery("x" * 2001)):
        with pytest.raises(BadInput):
            svc.search(bad)


def test_search_many_matches_single_searches(tmp_path, corpus, detector) -> None:
    svc = make_service(tmp_path, detector)
    svc.build([corpus])
    queries = [SearchQuery("cats", k=3), SearchQuery("солнце", k=2, langs=["ru"])]
    batch = svc.search_many(queries)
    for q, r in zip(queries, batch, strict=True):
        single = svc.search(q)
        assert [h.passage.passage_id for h in r.hits] == [h.passage.passage_id for h in single.hits]


def test_centering_subtracts_language_means_and_falls_back_to_the_global_mean() -> None:
    rng = np.random.default_rng(0)
    en = rng.normal(size=(10, 8)) + np.array([3, 0, 0, 0, 0, 0, 0, 0])
    zh = rng.normal(size=(10, 8)) + np.array([0, 3, 0, 0, 0, 0, 0, 0])
    ru = rng.normal(size=(2, 8))
    vectors = np.vstack([en, zh, ru]).astype(np.float32)
    langs = ["en"] * 10 + ["zh"] * 10 + ["ru"] * 2
    c = Centering.fit(vectors, langs, min_passages=5)
    assert set(c.means) == {"en", "zh"}
    np.testing.assert_allclose(c.mean_for("ru"), vectors.mean(axis=0), rtol=1e-5)
    centered = c.passages(vectors, langs)
    np.testing.assert_allclose(np.linalg.norm(centered, axis=1), 1.0, rtol=1e-5)
    # the language direction is gone: centered en and zh vectors no longer separate on dimensions 0 and 1
    assert abs(centered[:10, 0].mean() - centered[10:20, 0].mean()) < 0.3
    q = c.query(vectors[0], {"en": 0.5, "zh": 0.5})
    expected = vectors[0] - (c.means["en"] + c.means["zh"]) / 2
    np.testing.assert_allclose(q, expected / np.linalg.norm(expected), rtol=1e-5)
    off = Centering.fit(vectors, langs, min_passages=5, enabled=False)
    assert off.passages(vectors, langs) is vectors


def test_metadata_and_date_filters_from_jsonl(tmp_path, detector) -> None:
    rows = [
        {"id": "a", "text": "Cats sleep in the sun.", "published": "2024-01-05", "source": "Reuters"},
        {"id": "b", "text": "Cats chase mice at night.", "published": "2025-03-01T10:00:00+01:00", "source": "AP"},
        {"id": "c", "text": "Cats purr when happy.", "published": "2025-07-09", "source": "Reuters"},
    ]
    corpus = tmp_path / "news.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    svc = make_service(tmp_path, detector)
    svc.build([corpus])

    def ids(**kw: object) -> set[str]:
        return {h.passage.article_id for h in svc.search(SearchQuery("cats", k=10, **kw)).hits}  # type: ignore[arg-type]

    assert ids() == {"a", "b", "c"}
    assert ids(published_after="2025-01-01") == {"b", "c"}
    assert ids(published_before="2025-03-01") == {"a", "b"}  # the day bound holds a time on that day
    assert ids(published_after="2025-03-01", published_before="2025-03-01") == {"b"}
    assert ids(metadata={"source": "Reuters"}) == {"a", "c"}
    assert ids(metadata={"source": "Reuters"}, published_after="2025-01-01") == {"c"}
    assert ids(metadata={"source": "nobody"}) == set()
    with pytest.raises(BadInput, match="field names"):
        ids(metadata={"source') OR 1=1 --": "x"})
    articles = {a.article_id: a for a in svc.articles()}
    assert articles["a"].metadata == {"published": "2024-01-05", "source": "Reuters"}


def test_lexical_mode_and_language_aware_hybrid(tmp_path, corpus, detector) -> None:
    svc = make_service(tmp_path, detector)
    svc.build([corpus])
    lexical = svc.search(SearchQuery("domestic animals", k=5, mode="lexical")).hits
    assert [h.passage.article_id for h in lexical] == ["en.txt"] and lexical[0].ranks == {"lexical": 1}
    dense = svc.search(SearchQuery("domestic animals", k=6, mode="dense")).hits
    hybrid = svc.search(SearchQuery("domestic animals", k=6, mode="hybrid")).hits
    slots = lambda hits: [(h.rank, h.passage.passage_id) for h in hits if h.passage.lang != "en"]  # noqa: E731
    assert slots(hybrid) == slots(dense)
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


def test_a_build_from_before_pages_reads_every_page_as_none(tmp_path: Path) -> None:
    """Builds made before PDFs were read have no page columns; they load, and their passages have no page."""
    import sqlite3

    from search.index.store import Store, read_manifest

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Cats sleep in the sun all day long.\n\nDogs bark at every stranger.\n", "utf-8")
    svc = make_service(tmp_path, LanguageDetector(["en", "ru"], preload=False), watch_seconds=0)
    svc.build([corpus])
    folder, manifest = read_manifest(svc.settings.index_dir)
    with sqlite3.connect(folder / "passages.sqlite") as db:
        db.execute("ALTER TABLE passages DROP COLUMN page")
        db.execute("ALTER TABLE articles DROP COLUMN pages")
    store = Store(folder, manifest, verify=False)  # the tables changed under their checksums
    try:
        passages = store.all_passages()
        assert len(passages) == 2 and {p.page for p in passages} == {None}
        assert store.passage(passages[0].passage_id).text == "Cats sleep in the sun all day long."
        assert [a.pages for a in store.all_articles()] == [()]
    finally:
        store.close()


def test_joined_debris_is_a_sample_of_its_language_mean_and_not_a_passage(tmp_path, detector) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    story = ["Cats are small domestic animals.", "They like to sleep in the sun for most of the day."]
    (corpus / "en.txt").write_text(f"{story[0]}\n\nCats purr.\n\n{story[1]}\n", encoding="utf-8")
    (corpus / "zh.txt").write_text(ARTICLES["zh.txt"], encoding="utf-8")
    embedder = FakeEmbedder()
    svc = make_service(tmp_path, detector, embedder, centering_min_passages=1)
    summary = svc.build([corpus])

    store = svc.load()
    passages = store.all_passages()
    assert [p.text for p in passages if p.lang == "en"] == [f"{story[0]} Cats purr.", story[1]]
    assert summary.passages == len(passages) == 4 and summary.embedded == 4  # the debris is not a passage
    assert store.raw_vectors().shape[0] == 4
    assert "Cats purr." in embedder.encoded  # embedded on its own, for the mean only
    manifest = json.loads((current_build(tmp_path / "index") / "manifest.json").read_text())
    assert manifest["centering"]["extra_samples"] == {"en": 1}
    assert manifest["counts"]["languages"] == {"en": 2, "zh": 2}

    en = FakeEmbedder().encode([f"{story[0]} Cats purr.", story[1], "Cats purr."], query=False)
    np.testing.assert_allclose(store.centering.means["en"], en.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Centering.load(current_build(tmp_path / "index") / "centering.npz").means["en"],
                               en.mean(axis=0), rtol=1e-5, atol=1e-6)  # fmt: skip

    embedder.encoded.clear()
    again = svc.build([corpus])
    assert embedder.encoded == [] and again.reused == 4  # the debris vector comes from the embedding cache too
    np.testing.assert_array_equal(svc.load().centering.means["en"], store.centering.means["en"])


def test_a_corpus_without_debris_has_the_means_of_its_passages_alone(tmp_path, corpus, detector) -> None:
    svc = make_service(tmp_path, detector, centering_min_passages=1)
    svc.build([corpus])
    store = svc.load()
    passages = store.all_passages()
    raw = FakeEmbedder().encode([p.text for p in passages], query=False)
    before = Centering.fit(raw, [p.lang for p in passages], min_passages=1)
    assert set(store.centering.means) == set(before.means) == {"en", "zh", "ru"}
    for lang, mean in before.means.items():
        np.testing.assert_array_equal(store.centering.means[lang], mean)
    np.testing.assert_array_equal(store.centering.global_mean, before.global_mean)
    assert store.centering.extra_samples == {}


def test_extra_samples_count_toward_the_mean_and_survive_save_and_load(tmp_path) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(6, 4)).astype(np.float32)
    extra = rng.normal(size=(2, 4)).astype(np.float32)
    langs = ["en"] * 4 + ["zh"] * 2
    c = Centering.fit(vectors, langs, min_passages=3, extra=(extra, ["zh", "zh"]))
    assert set(c.means) == {"en", "zh"}  # 2 zh passages + 2 zh samples reach min_passages=3
    np.testing.assert_allclose(c.means["zh"], np.vstack([vectors[4:], extra]).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(c.global_mean, np.vstack([vectors, extra]).mean(axis=0), rtol=1e-5)
    assert c.passages(vectors, langs).shape == vectors.shape  # samples are not passages
    c.save(tmp_path / "c.npz")
    loaded = Centering.load(tmp_path / "c.npz")
    assert loaded.extra_samples == {"zh": 2} and loaded.describe() == c.describe()
