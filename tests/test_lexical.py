"""The lexical index's Chinese tokenizers: what each makes of a text, and that an index is queried as it was built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.config import Settings
from search.index.lexical import LexicalIndex, tokenize
from search.ingest.language import LanguageDetector
from search.records import SearchQuery
from search.service import SearchService
from tests.fakes import FakeEmbedder

TEXTS = ["中华人民共和国成立于1949年。", "俄罗斯联邦与美国的关系很复杂。", "The NATO summit ended."]
LANGS = ["zh", "zh", "en"]


def test_both_tokenizers_cut_chinese_sensibly() -> None:
    text = "普京重申了承诺, NATO 东扩"
    words = tokenize(text, "zh", "jieba")
    bigrams = tokenize(text, "zh", "bigram")
    # jieba: whole words, the particle 了 dropped as a stop word, Latin words lower-cased
    assert {"普京", "重申", "承诺", "nato"} <= set(words) and "了" not in words
    # bigrams: every overlapping pair of each run of Han characters, whatever the words are, plus the Latin words
    assert [t for t in bigrams if t.isascii()] == ["nato"]
    assert [t for t in bigrams if not t.isascii()] == ["普京", "京重", "重申", "申了", "了承", "承诺", "东扩"]
    assert tokenize("中华人民共和国", "zh", "jieba") == ["中华人民共和国"]
    assert tokenize("中华人民共和国", "zh", "bigram") == ["中华", "华人", "人民", "民共", "共和", "和国"]


def test_a_bigram_index_is_queried_with_bigrams_after_a_reload(tmp_path: Path) -> None:
    LexicalIndex.build(TEXTS, LANGS, "bigram").save(tmp_path / "lexical")
    index = LexicalIndex.load(tmp_path / "lexical")
    assert index.zh_tokenizer == "bigram" and index.describe()["zh_tokenizer"] == "bigram"
    # "中华人民共和国" is one jieba word, which no bigram index holds: only a query cut into bigrams finds it
    bigram_vocab = index._by_lang["zh"][0].vocab_dict
    assert not [t for t in tokenize("中华人民共和国", "zh", "jieba") if t in bigram_vocab]
    assert [row for row, _ in index.search("中华人民共和国", "zh", 5)] == [0]
    # and the other way round: a jieba index knows the whole word but not the pair "华人" inside it
    jieba = LexicalIndex.build(TEXTS, LANGS, "jieba")
    assert [row for row, _ in jieba.search("中华人民共和国", "zh", 5)] == [0]
    assert jieba.search("华人", "zh", 5) == [] and [row for row, _ in index.search("华人", "zh", 5)] == [0]
    assert [row for row, _ in index.search("NATO summit", "en", 5)] == [2]


def test_builds_from_before_the_setting_load_as_jieba_and_unknown_ones_fail(tmp_path: Path) -> None:
    LexicalIndex.build(TEXTS, LANGS, "jieba").save(tmp_path / "old")
    (tmp_path / "old" / "tokenizers.json").unlink()
    assert LexicalIndex.load(tmp_path / "old").zh_tokenizer == "jieba"
    LexicalIndex.build(TEXTS, LANGS, "bigram").save(tmp_path / "odd")
    (tmp_path / "odd" / "tokenizers.json").write_text(json.dumps({"zh": "pkuseg"}))
    with pytest.raises(ValueError, match="pkuseg"):
        LexicalIndex.load(tmp_path / "odd")


def test_the_setting_chooses_the_build_and_the_build_chooses_the_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "zh.txt"
    corpus.write_text("中华人民共和国成立于1949年。\n\n俄罗斯联邦与美国的关系很复杂。\n", encoding="utf-8")
    detector = LanguageDetector(["en", "zh"], preload=False)
    monkeypatch.setenv("SEARCH_ZH_TOKENIZER", "bigram")
    settings = Settings(model="fake-model", index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")
    assert settings.zh_tokenizer == "bigram"
    SearchService(settings, embedder=FakeEmbedder(), detector=detector).build([corpus])
    # A server started later with the other setting still cuts queries the way the index was built.
    later = settings.model_copy(update={"zh_tokenizer": "jieba"})
    svc = SearchService(later, embedder=FakeEmbedder(), detector=detector)
    assert svc.store.manifest["lexical"]["zh_tokenizer"] == "bigram" and svc.store.lexical.zh_tokenizer == "bigram"
    hits = svc.search(SearchQuery("中华人民共和国", k=3, mode="lexical", langs=["zh"])).hits
    assert [h.passage.text for h in hits] == ["中华人民共和国成立于1949年。"]
    monkeypatch.setenv("SEARCH_ZH_TOKENIZER", "spaces")
    with pytest.raises(ValueError, match="zh_tokenizer"):
        Settings()
