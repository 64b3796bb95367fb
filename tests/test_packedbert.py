"""The packed forward pass: the same vectors as the Hugging Face / sentence-transformers path, or no packed path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search.model.packed import PackedBert, uses_block_mask
from tests.helpers import TEXTS


def _tiny_bert(seed: int = 0):  # type: ignore[no-untyped-def]
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64,
    )  # fmt: skip
    return BertModel(config).eval()


def _reference_means(bert, sequences: list[list[int]]) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    rows = []
    with torch.inference_mode():
        for seq in sequences:
            ids = torch.tensor([seq])
            rows.append(bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].mean(0).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("lengths", [[7], [3, 9, 1, 12], [60] * 12])
def test_packed_means_equal_the_model_per_text(lengths: list[int]) -> None:
    # [7]: one text; [3, 9, 1, 12]: a block-diagonal mask over all tokens; [60] * 12: too long to mask, per text.
    bert = _tiny_bert()
    rng = np.random.default_rng(1)
    sequences = [rng.integers(0, 100, n).tolist() for n in lengths]
    got = PackedBert(bert).mean_pooled(sequences)
    np.testing.assert_allclose(got, _reference_means(bert, sequences), atol=2e-5)
    assert uses_block_mask(lengths) == (lengths == [3, 9, 1, 12])


def test_packed_refuses_sequences_it_cannot_position() -> None:
    packed = PackedBert(_tiny_bert())
    with pytest.raises(ValueError, match="1..64 tokens"):
        packed.mean_pooled([[1] * 65])
    assert packed.mean_pooled([]).shape == (0, 32)


@pytest.fixture(scope="module")
def pair(settings):  # type: ignore[no-untyped-def]
    from search.model.embedders import SentenceTransformerEmbedder

    packed = SentenceTransformerEmbedder(settings.model, settings.cache_dir, threads=2)
    plain = SentenceTransformerEmbedder(settings.model, settings.cache_dir, threads=2, packed=False)
    return packed, plain


@pytest.mark.model
def test_default_model_runs_packed(pair) -> None:  # type: ignore[no-untyped-def]
    assert pair[0].runtime == "torch-packed" and pair[1].runtime == "torch-sentence-transformers"


@pytest.mark.model
@pytest.mark.parametrize("query", [True, False])
def test_same_vectors_as_sentence_transformers(pair, query: bool) -> None:  # type: ignore[no-untyped-def]
    data = Path(__file__).parents[1] / "data" / "xquad"
    paragraphs = [
        p["context"]
        for lang in ("en", "zh", "ru")
        for p in json.loads((data / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"][0]["paragraphs"][:4]
    ]
    texts = TEXTS + paragraphs  # short and long, mixed languages, one over the window: every packed path
    packed, plain = pair
    ours, theirs = packed.encode(texts, query=query), plain.encode(texts, query=query)
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() >= 0.99999, texts[int(np.argmin(cosines))][:40]
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # one text alone gives the vector it gets in a batch
    np.testing.assert_allclose(packed.encode([texts[5]], query=query)[0], ours[5], atol=1e-5)


@pytest.mark.model
def test_other_pooling_is_not_packed(pair) -> None:  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    st = pair[0]._model
    cls_pooled = SentenceTransformer(modules=[st[0], Pooling(384, pooling_mode="cls")], device="cpu")
    assert PackedBert.supports(st)
    assert not PackedBert.supports(cls_pooled)


@pytest.mark.model
def test_disagreement_at_load_keeps_sentence_transformers(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import search.model.embedders as embedding

    monkeypatch.setattr(embedding, "PROBE_MIN_COSINE", 1.01)  # no real agreement can pass
    fallback = embedding.SentenceTransformerEmbedder(settings.model, settings.cache_dir, threads=2)
    assert fallback.runtime == "torch-sentence-transformers"
    assert fallback.encode(["Who is Ushakov?"], query=True).shape == (1, 384)
