"""The lexical index: BM25 (bm25s) per language, with tokenization that fits each language.

One BM25 index per passage language, because the lexical list only ever ranks passages in the query's own
language: a word match must never push a cross-language hit out of the fused ranking. Chinese is segmented into
words with jieba or into character bigrams (`ZhTokenizer`, chosen at build time and kept with the index so
queries are cut the same way); Japanese, Korean and Thai use character bigrams; other languages use word tokens,
the stop words bm25s ships and a Snowball stemmer where PyStemmer has one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, cast, get_args

import numpy as np

from search.config import ZhTokenizer

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]+")
_BIGRAM_LANGS = {"ja", "ko", "th"}
# What builds from before the choice existed used, so they keep being queried the way they were built.
_LEGACY_ZH: ZhTokenizer = "jieba"
_SETTINGS_FILE = "tokenizers.json"
_STEMMERS = {
    "en": "english", "ru": "russian", "de": "german", "es": "spanish", "fr": "french", "it": "italian",
    "pt": "portuguese", "nl": "dutch", "sv": "swedish", "tr": "turkish", "ro": "romanian", "ar": "arabic",
    "el": "greek", "id": "indonesian", "hi": "hindi", "uk": "ukrainian",
}  # fmt: skip
_STOPWORDS = {
    "en": "STOPWORDS_EN_PLUS", "zh": "STOPWORDS_CHINESE", "ru": "STOPWORDS_RUSSIAN", "de": "STOPWORDS_GERMAN",
    "es": "STOPWORDS_SPANISH", "fr": "STOPWORDS_FRENCH", "it": "STOPWORDS_ITALIAN", "pt": "STOPWORDS_PORTUGUESE",
    "nl": "STOPWORDS_DUTCH", "sv": "STOPWORDS_SWEDISH", "tr": "STOPWORDS_TURKISH", "ko": "STOPWORDS_KOREAN",
}  # fmt: skip


@cache
def _stopwords(lang: str) -> frozenset[str]:
    import bm25s.stopwords

    name = _STOPWORDS.get(lang)
    return frozenset(getattr(bm25s.stopwords, name, ())) if name else frozenset()


@cache
def _stemmer(lang: str) -> Callable[[list[str]], list[str]] | None:
    import Stemmer

    algorithm = _STEMMERS.get(lang)
    if algorithm is None or algorithm not in Stemmer.algorithms():
        return None
    stem: Callable[[list[str]], list[str]] = Stemmer.Stemmer(algorithm).stemWords
    return stem


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def tokenize(text: str, lang: str, zh: ZhTokenizer = "jieba") -> list[str]:
    """Index terms of `text` as a passage or query in `lang`; `zh` says how Chinese is cut."""
    text = text.lower()
    stop = _stopwords(lang)
    if lang == "zh" and zh == "jieba":
        words = [w.strip() for w in _jieba().lcut(text)]
        return [w for w in words if w and _WORD.fullmatch(w) and w not in stop]
    tokens: list[str] = []
    if lang in _BIGRAM_LANGS or lang == "zh":
        for run in _CJK_RUN.findall(text):
            # A bigram that is a whole stop word ("我们", "一个") carries no topic; bigrams across words stay.
            tokens.extend(b for b in _bigrams(run) if b not in stop)
        text = _CJK_RUN.sub(" ", text)
    words = [w for w in _WORD.findall(text) if w not in stop]
    stem = _stemmer(lang)
    return tokens + (stem(words) if stem else words)


class LexicalIndex:
    """BM25 indexes by language over passage rows; searched in the query's language only."""

    def __init__(self, by_lang: dict[str, tuple[Any, np.ndarray]], zh_tokenizer: ZhTokenizer = "jieba") -> None:
        self._by_lang = by_lang
        self.zh_tokenizer = zh_tokenizer

    @property
    def languages(self) -> list[str]:
        return sorted(self._by_lang)

    def first_rows(self) -> dict[str, int]:
        """One passage row per language: what a warm-up searches for, so each language's tokenizer loads."""
        return {lang: int(rows[0]) for lang, (_, rows) in self._by_lang.items() if len(rows)}

    def describe(self) -> dict[str, Any]:
        """What the build manifest records about this index."""
        return {"library": "bm25s", "per_language": True, "zh_tokenizer": self.zh_tokenizer}

    @classmethod
    def build(cls, texts: Sequence[str], langs: Sequence[str], zh_tokenizer: ZhTokenizer = "jieba") -> LexicalIndex:
        import bm25s

        by_lang: dict[str, tuple[Any, np.ndarray]] = {}
        lang_arr = np.asarray(langs)
        for lang in sorted(set(langs)):
            rows = np.flatnonzero(lang_arr == lang).astype(np.int64)
            corpus = [tokenize(texts[int(r)], lang, zh_tokenizer) or ["\x00"] for r in rows]
            bm25 = bm25s.BM25()
            bm25.index(corpus, show_progress=False)
            by_lang[lang] = (bm25, rows)
        return cls(by_lang, zh_tokenizer)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for lang, (bm25, rows) in self._by_lang.items():
            bm25.save(str(folder / lang))
            np.save(folder / lang / "rows.npy", rows)
        (folder / "languages.json").write_text(json.dumps(sorted(self._by_lang)))
        (folder / _SETTINGS_FILE).write_text(json.dumps({"zh": self.zh_tokenizer}))

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import bm25s

        if not (folder / "languages.json").is_file():
            return cls({})
        by_lang = {}
        for lang in json.loads((folder / "languages.json").read_text()):
            by_lang[lang] = (bm25s.BM25.load(str(folder / lang)), np.load(folder / lang / "rows.npy"))
        # The build's tokenizer, never the current setting: terms cut differently from the index match nothing.
        chosen = _LEGACY_ZH
        if (folder / _SETTINGS_FILE).is_file():
            chosen = json.loads((folder / _SETTINGS_FILE).read_text()).get("zh", _LEGACY_ZH)
        if chosen not in get_args(ZhTokenizer):
            raise ValueError(f"{folder / _SETTINGS_FILE}: unknown Chinese tokenizer {chosen!r}")
        return cls(by_lang, cast(ZhTokenizer, chosen))

    def search(self, query: str, lang: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, BM25 score) pairs, best first, among passages in `lang` (and in `allowed` rows if given)."""
        entry = self._by_lang.get(lang)
        if entry is None:
            return []
        bm25, rows = entry
        vocab = bm25.vocab_dict
        terms = [t for t in tokenize(query, lang, self.zh_tokenizer) if t in vocab]
        if not terms:
            return []
        scores = bm25.get_scores(terms)
        if allowed is not None:
            scores = np.where(np.isin(rows, allowed), scores, 0.0)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(rows[i]), float(scores[i])) for i in top if scores[i] > 0]
