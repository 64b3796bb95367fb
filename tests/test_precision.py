"""Precision profiles (bf16, int8): vectors close to fp32's, the same answers, a clean fp32 fallback, their own
fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import search.model.precision as precision
from search.errors import IndexMismatch
from search.model.packed import LINEAR_NAMES, PackedBert
from tests.helpers import SEEDS, TEXTS
from tests.test_api import CASES

# The fastest profile: the tests build an index with it.
FAST = "int8"
# Lowest cosine to fp32 over TEXTS and XQuAD paragraphs (short, long, mixed-language, over-window), measured
# by `python -m benchmarks.bench_precision`, minus a margin for thread-count and batch-composition effects.
MIN_COSINE = {"bf16": 0.999, "int8": 0.98}


def _tiny_bert():  # type: ignore[no-untyped-def]
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64,
    )  # fmt: skip
    return BertModel(config).eval()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray(np.sum(a * b, axis=1))


@pytest.mark.parametrize("profile", ["bf16", "int8", "int8-bf16"])
def test_profiles_stay_close_to_fp32_on_a_small_bert(profile: str) -> None:
    bert = _tiny_bert()
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 100, n).tolist() for n in (5, 17, 40)]
    fp32 = PackedBert(bert).mean_pooled(sequences)
    got = PackedBert(bert, profile, {"0.qkv"}).mean_pooled(sequences)  # type: ignore[arg-type]
    assert not np.array_equal(got, fp32)  # the profile really computes differently
    assert _cos(got, fp32).min() > 0.99


def test_int8_with_every_layer_kept_is_fp32() -> None:
    bert = _tiny_bert()
    sequences = [[1, 2, 3, 4, 5], [7, 8, 9]]
    every = {f"{i}.{n}" for i in range(2) for n in LINEAR_NAMES}
    np.testing.assert_allclose(
        PackedBert(bert, "int8", every).mean_pooled(sequences), PackedBert(bert).mean_pooled(sequences), atol=1e-6
    )


def test_a_cpu_without_bf16_falls_back_to_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_bf16", lambda: False)
    choice = precision.choose("bf16")
    assert choice.effective == "fp32" and choice.fell_back
    assert "bf16" in choice.reason
    assert precision.choose("int8").effective == ("int8" if precision.cpu_int8() else "fp32")
    assert precision.choose("fp32") == precision.PrecisionChoice("fp32", "fp32")


# --- the real model -------------------------------------------------------------------------------------------------


def _xquad_paragraphs() -> list[str]:
    data = Path(__file__).parents[1] / "data" / "xquad"
    return [
        p["context"]
        for lang in ("en", "zh", "ru")
        for p in json.loads((data / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"][0]["paragraphs"][:4]
    ]


@pytest.fixture(scope="module")
def fast(settings):  # type: ignore[no-untyped-def]
    from search.model.embedders import embedder_for

    return embedder_for(settings.model_copy(update={"precision": FAST}))


@pytest.mark.model
@pytest.mark.parametrize("query", [True, False])
def test_profile_vectors_match_fp32(service, fast, query: bool) -> None:  # type: ignore[no-untyped-def]
    # TEXTS: short, mixed-language, and one over the window; XQuAD paragraphs: long, in three languages.
    texts = TEXTS + _xquad_paragraphs()
    assert fast.precision == FAST, fast.precision_choice
    cosines = np.sum(fast.encode(texts, query=query) * service.embedder.encode(texts, query=query), axis=1)
    assert cosines.min() >= MIN_COSINE[FAST], texts[int(np.argmin(cosines))][:40]


@pytest.mark.model
def test_profile_has_its_own_fingerprint(service, fast) -> None:  # type: ignore[no-untyped-def]
    assert fast.fingerprint.startswith(service.embedder.fingerprint + "+")
    assert FAST in fast.fingerprint


def _profile_service(settings, embedder, index_dir: Path):  # type: ignore[no-untyped-def]
    from search.service import SearchService

    update = {"precision": embedder.precision, "index_dir": index_dir}
    svc = SearchService(settings.model_copy(update=update), embedder=embedder)
    summary = svc.build([SEEDS])
    assert summary.precision == embedder.precision and not summary.precision_note
    svc.load()
    return svc


# The profiles are compared with queries centered by passage means, the setting the noise figures below were measured
# in (query means became the default later; they move every profile's query the same way).
@pytest.fixture(scope="module")
def compared(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"query_means": False})


@pytest.fixture(scope="module")
def reference(compared, service):  # type: ignore[no-untyped-def]
    """The session's fp32 seed index, searched with `compared`."""
    from search.service import SearchService

    svc = SearchService(compared, embedder=service.embedder)
    svc.load()
    return svc


@pytest.fixture(scope="module")
def fast_service(compared, fast, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return _profile_service(compared, fast, tmp_path_factory.mktemp("fast-index"))


def _seed_answers(svc, k: int = 3) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[text for text, _ in hits[:k]] for hits in _seed_hits(svc)]


def _seed_hits(svc) -> list[list[tuple[str, float]]]:  # type: ignore[no-untyped-def]
    from search.records import SearchQuery
    from tests.test_api import CASES

    results = svc.search_many([SearchQuery(q, k=4, mode="dense") for q, _ in CASES])
    return [[(h.passage.text, h.score) for h in r.hits] for r in results]


def _close_calls(fp32_hits: list[list[tuple[str, float]]], eps: float) -> set[int]:
    """The seed questions whose fp32 ranks 3 and 4 are closer than `eps`: a profile whose scores move by about
    that much may swap them, and no precision can promise their order."""
    return {i for i, hits in enumerate(fp32_hits) if hits[2][1] - hits[3][1] < eps}


# How far a profile moves a seed score from fp32 (measured on the 18 seed questions, top 4 each): bf16 up to
# 0.0021, int8 up to 0.066. The seed has one knife-edge question (特朗普对与普京的通话有何评价?: fp32's ranks 3
# and 4 are 0.1206 and 0.1203), and int8 also moves one at a 0.0095 gap (普京如何看待俄美关系?).
BF16_NOISE, INT8_NOISE = 0.005, 0.02


@pytest.mark.model
def test_bf16_index_answers_the_seed_questions_as_fp32(compared, reference, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from search.model.embedders import embedder_for

    bf16 = embedder_for(compared.model_copy(update={"precision": "bf16"}))
    if not precision.cpu_bf16():
        assert bf16.precision == "fp32"  # type: ignore[attr-defined]
        return
    ours = _seed_answers(_profile_service(compared, bf16, tmp_path / "bf16"))
    fp32_hits = _seed_hits(reference)
    close = _close_calls(fp32_hits, BF16_NOISE)
    assert len(close) <= 2, "the seed questions no longer separate their top 3 from the 4th: pick clearer ones"
    theirs = [[text for text, _ in hits[:3]] for hits in fp32_hits]
    differ = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if set(a) != set(b)]
    assert set(differ) <= close, [CASES[i][0] for i in differ]


@pytest.mark.model
def test_int8_index_answers_the_seed_questions_nearly_as_fp32(reference, service, fast_service) -> None:  # type: ignore[no-untyped-def]
    # The paragraph fp32 finds in the top 3 stays there on all seed questions but two, and those two are close
    # calls for fp32 itself (ranks 3 and 4 nearer than int8 moves scores, INT8_NOISE):
    # docs/performance.md#precision-profiles says what int8 costs.
    ours, fp32_hits = _seed_answers(fast_service), _seed_hits(reference)
    theirs = [[text for text, _ in hits[:3]] for hits in fp32_hits]
    kept = [any(expected in t for t in a) for (_, expected), a in zip(CASES, ours, strict=True)]
    assert all(any(expected in t for t in b) for (_, expected), b in zip(CASES, theirs, strict=True))
    missed = {i for i, k in enumerate(kept) if not k}
    assert len(missed) <= 2 and missed <= _close_calls(fp32_hits, INT8_NOISE), [CASES[i][0] for i in missed]
    assert fast_service.health()["precision"] == FAST and service.health()["precision"] == "fp32"


@pytest.mark.model
def test_an_index_of_another_precision_is_refused(service, fast_service) -> None:  # type: ignore[no-untyped-def]
    from search.service import SearchService

    fp32 = SearchService(fast_service.settings.model_copy(update={"precision": "fp32"}), embedder=service.embedder)
    with pytest.raises(IndexMismatch, match=f"built with precision {FAST} but this process encodes in fp32") as err:
        fp32.load()
    assert err.value.exit_code == 4
    assert f"SEARCH_PRECISION={FAST}" in str(err.value)


@pytest.mark.model
def test_fallback_is_fp32_and_says_so(settings, service, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from search.model.embedders import SentenceTransformerEmbedder
    from search.service import SearchService

    monkeypatch.setattr(precision, "cpu_bf16", lambda: False)  # a CPU without bf16
    e = SentenceTransformerEmbedder(settings.model, settings.cache_dir, threads=2, precision="bf16")
    assert e.precision == "fp32" and e.fingerprint == service.embedder.fingerprint
    np.testing.assert_allclose(
        e.encode(TEXTS[:3], query=True), service.embedder.encode(TEXTS[:3], query=True), atol=1e-5
    )
    svc = SearchService(settings.model_copy(update={"index_dir": tmp_path / "index", "precision": "bf16"}), embedder=e)
    summary = svc.build([SEEDS])
    assert summary.precision == "fp32"
    assert "bf16 requested, fp32 used" in summary.precision_note and "AVX-512 BF16" in summary.precision_note
