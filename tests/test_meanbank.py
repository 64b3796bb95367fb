"""The mean bank: means for languages an index lacks, as offsets from the index's own mean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.errors import BadInput
from search.index.centering import Centering
from search.index.meanbank import MIN_TEXTS, MeanBank, cache_path, compute_bank, find_bank, read_texts
from search.ingest.language import LanguageDetector
from search.records import SearchQuery
from tests.fakes import FakeEmbedder
from tests.helpers import make_service

DIM = 16
# Language identity as a fixed direction per language, on top of a topic shared across languages.
OFFSET = {lang: np.eye(DIM, dtype=np.float32)[i] * 3 for i, lang in enumerate(["en", "zh", "ru"])}


def texts_of(lang: str, topics: np.ndarray) -> np.ndarray:
    return (topics + OFFSET[lang]).astype(np.float32)


@pytest.fixture
def topics() -> np.ndarray:
    rng = np.random.default_rng(1)
    t = rng.normal(size=(40, DIM)).astype(np.float32)
    t[:, :3] = 0  # topics live away from the language directions
    return t


def bank_from(topics: np.ndarray, langs: list[str]) -> MeanBank:
    """A bank measured on parallel text: the same topics in every language, different from the index's."""
    other = topics[::-1] * 0.5 + 1.0
    return MeanBank({lang: texts_of(lang, other).mean(axis=0) for lang in langs}, dict.fromkeys(langs, 40), "t")


def test_a_missing_language_borrows_the_banks_offset_from_the_index_mean(topics: np.ndarray) -> None:
    en = texts_of("en", topics)
    bank = bank_from(topics, ["en", "zh", "ru"])
    c = Centering.fit(en, ["en"] * len(en), min_passages=5, bank=bank.means)
    assert set(c.means) == {"en"} and set(c.borrowed) == {"zh", "ru"}
    np.testing.assert_allclose(c.mean_for("zh"), en.mean(axis=0) + bank.means["zh"] - bank.means["en"], atol=1e-5)
    # the estimate is the index's topic with zh identity: exactly the mean the same topics have in zh
    np.testing.assert_allclose(c.mean_for("zh"), texts_of("zh", topics).mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(c.mean_for("de"), c.global_mean)  # not in the bank: the global mean, as before
    assert c.describe()["bank_languages"] == ["ru", "zh"]


def test_the_bank_stops_a_small_languages_passages_from_capturing_its_queries(topics: np.ndarray) -> None:
    """An en index with three unrelated zh passages: too few for a zh mean of their own. Centered with the global
    mean, they and a zh query keep their shared zh identity, and the distractors outrank the right en paragraph."""
    rng = np.random.default_rng(2)
    distractors = texts_of("zh", rng.normal(size=(3, DIM)).astype(np.float32))
    pool = np.vstack([texts_of("en", topics), distractors])
    langs = ["en"] * len(topics) + ["zh"] * 3
    zh_queries = texts_of("zh", topics)  # query i is a translation of paragraph i
    with_bank = Centering.fit(pool, langs, 5, bank=bank_from(topics, ["en", "zh"]).means)
    without = Centering.fit(pool, langs, 5)

    def top1(c: Centering) -> float:
        xb = c.passages(pool, langs)
        hits = [int(np.argmax(xb @ c.query(q, {"zh": 1.0}))) for q in zh_queries]
        return float(np.mean(np.array(hits) == np.arange(len(topics))))

    assert top1(with_bank) == 1.0
    assert top1(without) < top1(with_bank)


def test_own_means_win_and_small_languages_borrow(topics: np.ndarray) -> None:
    en, zh = texts_of("en", topics), texts_of("zh", topics[:3])
    vectors = np.vstack([en, zh])
    langs = ["en"] * len(en) + ["zh"] * len(zh)
    bank = bank_from(topics, ["en", "zh"])
    c = Centering.fit(vectors, langs, min_passages=5, bank=bank.means)
    np.testing.assert_allclose(c.mean_for("en"), en.mean(axis=0), atol=1e-5)
    assert "zh" in c.borrowed  # 3 passages are too few for a mean of its own


def test_no_language_in_common_borrows_nothing(topics: np.ndarray) -> None:
    ru = texts_of("ru", topics)
    c = Centering.fit(ru, ["ru"] * len(ru), 5, bank=bank_from(topics, ["en", "zh"]).means)
    assert c.borrowed == {}


def test_borrowed_means_survive_save_and_load(tmp_path: Path, topics: np.ndarray) -> None:
    en = texts_of("en", topics)
    c = Centering.fit(en, ["en"] * len(en), 5, bank=bank_from(topics, ["en", "zh"]).means)
    c.save(tmp_path / "c.npz")
    loaded = Centering.load(tmp_path / "c.npz")
    np.testing.assert_allclose(loaded.mean_for("zh"), c.mean_for("zh"))
    assert loaded.describe() == c.describe()


def test_bank_files_settings_and_bad_input(tmp_path: Path, topics: np.ndarray) -> None:
    bank = bank_from(topics, ["en", "zh"])
    cache = tmp_path / "cache"
    bank.save(cache_path(cache, "fp-1"))
    found = find_bank("auto", "fp-1", cache)
    assert found.counts == {"en": 40, "zh": 40} and found.source == "t"
    np.testing.assert_allclose(found.means["zh"], bank.means["zh"])
    assert find_bank("auto", "fp-1+onnx-v1", cache).source == "t"  # another backend of the same weights
    assert not find_bank("auto", "no-such-model", cache)
    assert not find_bank("off", "fp-1", cache)
    with pytest.raises(BadInput, match="mean_bank: 'nope.npz' is not a file"):
        find_bank("nope.npz", "fp-1", cache)

    bad = tmp_path / "texts.jsonl"
    bad.write_text('{"lang": "en", "text": "fine"}\n{"lang": "en"}\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"texts.jsonl:2: expected a JSON object"):
        read_texts(bad)
    with pytest.raises(BadInput, match=f"fewer than {MIN_TEXTS} texts"):
        compute_bank(FakeEmbedder(), {"en": ["one", "two"]}, "tiny")


def test_a_build_records_the_bank_it_borrowed_from(tmp_path: Path) -> None:
    """Through the service: a computed bank in the cache is found by fingerprint and used by the build."""
    embedder = FakeEmbedder()
    texts = {
        "en": [f"The harbour number {i} opens at dawn for fishing boats." for i in range(MIN_TEXTS)],
        "zh": [f"第{i}号港口在黎明时为渔船开放。" for i in range(MIN_TEXTS)],
    }
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "en.txt").write_text("\n\n".join(texts["en"][:8]), encoding="utf-8")
    service = make_service(tmp_path, LanguageDetector(["en", "zh"], preload=False))
    compute_bank(embedder, texts, "parallel harbours").save(cache_path(tmp_path / "cache", embedder.fingerprint))
    service.build([corpus])
    manifest = service.load().manifest
    assert manifest["mean_bank"] == {"source": "parallel harbours", "languages": ["en", "zh"]}
    assert manifest["centering"]["bank_languages"] == ["zh"]
    assert service.store.centering.mean_for("zh") is not service.store.centering.global_mean


def test_search_bank_cli_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "texts.jsonl"
    bad.write_text(json.dumps({"lang": "en", "text": "ok"}) + "\nnot json\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "search", "bank", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "texts.jsonl:2" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.model
def test_the_default_model_ships_a_bank_of_the_xquad_languages(service) -> None:  # type: ignore[no-untyped-def]
    bank = service.mean_bank
    assert {"en", "zh", "ru", "de", "es", "ar", "hi", "th"} <= set(bank.means)
    assert "XQuAD" in bank.source
    # the seed index (en, zh, ru) borrows the means of the XQuAD languages it does not hold
    assert {"de", "es", "ar"} <= set(service.store.manifest["centering"]["bank_languages"])


# --- query-side means ------------------------------------------------------------------------------------------------

# e5's queries of a language sit apart from its passages: a fixed "query" direction per language, in the bank.
QUERY_SHIFT = {lang: np.eye(DIM, dtype=np.float32)[3 + i] for i, lang in enumerate(["en", "zh", "ru"])}


def bank_with_queries(topics: np.ndarray, langs: list[str]) -> MeanBank:
    plain = bank_from(topics, langs)
    queries = {lang: plain.means[lang] + QUERY_SHIFT[lang] for lang in langs}
    return MeanBank(plain.means, plain.counts, "t", queries, dict.fromkeys(langs, 60), "questions")


def test_query_means_center_a_query_by_its_languages_query_offset(topics: np.ndarray) -> None:
    en = texts_of("en", topics)
    bank = bank_with_queries(topics, ["en", "zh"])
    np.testing.assert_allclose(bank.query_offsets()["zh"], QUERY_SHIFT["zh"], atol=1e-6)
    c = Centering.fit(en, ["en"] * len(en), 5, bank=bank.means, query_offsets=bank.query_offsets())
    q = texts_of("zh", topics[:1])[0] + QUERY_SHIFT["zh"]
    by_query_mean = c.query(q, {"zh": 1.0}, query_means=True)
    np.testing.assert_allclose(c.query_mean_for("zh"), c.mean_for("zh") + QUERY_SHIFT["zh"], atol=1e-6)
    expected = q - c.mean_for("zh") - QUERY_SHIFT["zh"]
    np.testing.assert_allclose(by_query_mean, expected / np.linalg.norm(expected), atol=1e-5)
    # off (the default), the query is centered with the passage mean, as before
    plain = q - c.mean_for("zh")
    np.testing.assert_allclose(c.query(q, {"zh": 1.0}), plain / np.linalg.norm(plain), atol=1e-5)
    np.testing.assert_allclose(c.query_mean_for("ru"), c.mean_for("ru"))  # no offset for ru: its passage mean
    assert c.describe()["query_mean_languages"] == ["en", "zh"]


def test_query_means_survive_save_and_load_and_older_files_have_none(tmp_path: Path, topics: np.ndarray) -> None:
    bank = bank_with_queries(topics, ["en", "zh"])
    bank.save(tmp_path / "bank.npz")
    loaded = MeanBank.load(tmp_path / "bank.npz")
    assert loaded.query_counts == {"en": 60, "zh": 60} and loaded.describe()["query_source"] == "questions"
    np.testing.assert_allclose(loaded.query_means["zh"], bank.query_means["zh"])
    older = bank_from(topics, ["en", "zh"])  # a bank written before query means: passage means only
    older.save(tmp_path / "older.npz")
    assert MeanBank.load(tmp_path / "older.npz").query_offsets() == {}

    en = texts_of("en", topics)
    c = Centering.fit(en, ["en"] * len(en), 5, bank=bank.means, query_offsets=bank.query_offsets())
    c.save(tmp_path / "c.npz")
    again = Centering.load(tmp_path / "c.npz")
    np.testing.assert_allclose(again.query_mean_for("zh"), c.query_mean_for("zh"))
    # a build made before query means: query_means=True centers with the passage means, as that build always did
    before = Centering.fit(en, ["en"] * len(en), 5, bank=bank.means)
    q = texts_of("en", topics[:1])[0]
    np.testing.assert_array_equal(before.query(q, {"en": 1.0}, query_means=True), before.query(q, {"en": 1.0}))


def test_a_bank_file_may_hold_query_lines(tmp_path: Path) -> None:
    texts = tmp_path / "texts.jsonl"
    rows = [{"lang": "en", "text": "A paragraph."}, {"lang": "en", "text": "A question?", "kind": "query"}]
    texts.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert read_texts(texts) == {"en": ["A paragraph."]}
    assert read_texts(texts, kind="query") == {"en": ["A question?"]}
    texts.write_text(json.dumps({"lang": "en", "text": "x", "kind": "title"}) + "\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"texts.jsonl:1: \"kind\" is 'title'"):
        read_texts(texts)
    with pytest.raises(BadInput, match=f"fewer than {MIN_TEXTS} queries"):
        compute_bank(FakeEmbedder(), {"en": ["p"] * MIN_TEXTS}, "tiny", {"en": ["q?"]})


def test_a_build_stores_the_banks_query_offsets_and_the_setting_uses_them(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    n = MIN_TEXTS
    rows = [{"lang": "en", "text": f"The harbour number {i} opens at dawn for fishing boats."} for i in range(n)]
    rows += [{"lang": "en", "text": f"When does harbour {i} open?", "kind": "query"} for i in range(n)]
    texts = tmp_path / "bank.jsonl"
    texts.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "en.txt").write_text("\n\n".join(r["text"] for r in rows[:8]), encoding="utf-8")
    detector = LanguageDetector(["en", "zh"], preload=False)
    service = make_service(tmp_path, detector, embedder, query_means=False)
    _, bank = service.make_bank(texts)
    assert set(bank.query_means) == {"en"}
    service.build([corpus])
    manifest = service.load().manifest
    assert manifest["mean_bank"]["query_languages"] == ["en"]
    assert manifest["centering"]["query_mean_languages"] == ["en"]
    on = make_service(tmp_path, detector, embedder, query_means=True)
    q = SearchQuery("When does the harbour open?", k=3, mode="dense")
    plain, shifted = service.search(q).hits, on.search(q).hits
    assert [h.score for h in plain] != [h.score for h in shifted]
