"""Vectors for measuring recall as users meet it: real XQuAD questions over XQuAD paragraphs, enlarged to any size.

The product's own path gives every vector: paragraphs embedded as passages (through an embedding cache, so a second
run embeds nothing), questions and build probes (`search/index/probes.py`) encoded as queries, and all of it
centered as `search index` and a search do (passages by their language's mean, queries as queries of their
language). The questions are real queries: the `query: ` prompt and question wording put them elsewhere in the
space than the passages an index would be tuned on.

To reach 100k or 1M vectors the paragraphs are the centers of the synthetic generator (`bench_scale.clustered`):
each filler is a real paragraph plus noise shaped by the paragraphs' own covariance, scaled so a filler is as close
to its paragraph as paragraphs are to their nearest neighbour. The questions stay the real ones; the exact top 10
they are scored against is over the whole enlarged set. A filler's build probe is its paragraph's probe offset
(probe minus paragraph) added to the filler, so the tuning queries are drawn over the whole set as a build's are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.xquad import load
from search.config import Settings
from search.index.centering import Centering, normalize_rows
from search.index.embedcache import EmbeddingCache, text_key
from search.index.probes import opening
from search.index.vectors import TUNE_QUERIES, exact_knn
from search.model.embedders import Embedder, embedder_for

log = logging.getLogger("benchmarks.query_like")

LANGS = ("en", "zh", "ru", "de", "es", "ar")


@dataclass(frozen=True)
class RealVectors:
    """Centered, normalized XQuAD vectors: paragraphs, the opening probe of each, and sampled questions."""

    passages: np.ndarray
    probes: np.ndarray
    questions: np.ndarray
    langs: tuple[str, ...]


def real_vectors(langs: tuple[str, ...], questions: int, cache: Path, seed: int = 0) -> RealVectors:
    """Embed (or read from `cache`) the paragraphs of `langs`; encode `questions` sampled questions and every
    paragraph's opening as queries."""
    data = load(langs)
    embedder = embedder_for(Settings())
    paragraphs = [p for lang in langs for p in data.paragraphs[lang]]
    texts = [p.text for p in paragraphs]
    para_langs = [p.lang for p in paragraphs]
    raw = _cached(texts, embedder, cache, query=False)
    centering = Centering.fit(raw, para_langs, min_passages=5)
    passages = centering.passages(raw, para_langs)
    probes = _as_queries(_cached([opening(t) for t in texts], embedder, cache, query=True), para_langs, centering)
    asked = [q for lang in langs for q in data.questions[lang]]
    picked = np.random.default_rng(seed).choice(len(asked), size=min(questions, len(asked)), replace=False)
    chosen = [asked[i] for i in np.sort(picked)]
    encoded = _cached([q.text for q in chosen], embedder, cache, query=True)
    xq = _as_queries(encoded, [q.lang for q in chosen], centering)
    return RealVectors(passages, probes, xq, langs)


def _cached(texts: list[str], embedder: Embedder, cache: Path, *, query: bool) -> np.ndarray:
    """`texts` encoded as queries or passages, through the product's embedding cache (queries under a model
    fingerprint of their own, so they never mix with passages)."""
    fingerprint = embedder.fingerprint + ("/query" if query else "")
    store = EmbeddingCache(cache, fingerprint, embedder.dimension)
    try:
        found = store.get_many(texts)
        missing = list(dict.fromkeys(t for t in texts if text_key(t) not in found))
        if missing:
            fresh = embedder.encode(missing, query=query)
            store.put_many(missing, fresh)
            found.update({text_key(t): v for t, v in zip(missing, fresh, strict=True)})
    finally:
        store.close()
    log.info("%d texts as %s: %d encoded, the rest cached", len(texts), "query" if query else "passage", len(missing))
    return np.stack([found[text_key(t)] for t in texts]).astype(np.float32)


def _as_queries(vectors: np.ndarray, langs: list[str], centering: Centering) -> np.ndarray:
    """Centered as the product centers a query whose language is known."""
    out = np.asarray(vectors, dtype=np.float32).copy()
    by_lang = np.asarray(langs)
    for lang in set(langs):
        rows = by_lang == lang
        out[rows] = centering.query(out[rows], {lang: 1.0})
    return out


def _noise_scale(passages: np.ndarray, basis: np.ndarray) -> float:
    """The noise scale at which a filler's cosine to its paragraph is the median nearest-neighbour cosine."""
    scores, _ = exact_knn(passages, passages, 2)
    target = float(np.median(scores[:, 1]))
    spread = float((basis**2).sum())  # expected squared norm of one unscaled noise draw
    return float(np.sqrt(max(1 / target**2 - 1, 1e-6) / spread))


def enlarged(real: RealVectors, n: int, seed: int = 0, block: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """`n` database vectors (the real paragraphs first, then fillers) and TUNE_QUERIES build probes over them."""
    rng = np.random.default_rng(seed)
    p = real.passages
    cov = np.cov(p, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    basis = (vectors * np.sqrt(np.clip(values, 0, None))).astype(np.float32)
    scale = _noise_scale(p, basis)
    xb = np.empty((max(n, len(p)), p.shape[1]), dtype=np.float32)
    xb[: len(p)] = p
    source = np.concatenate([np.arange(len(p)), rng.integers(0, len(p), size=len(xb) - len(p))])
    for start in range(len(p), len(xb), block):
        stop = min(start + block, len(xb))
        noise = rng.standard_normal((stop - start, p.shape[1]), dtype=np.float32) @ basis.T
        xb[start:stop] = normalize_rows(p[source[start:stop]] + scale * noise)
    picked = np.sort(rng.choice(len(xb), size=min(TUNE_QUERIES, len(xb)), replace=False))
    offsets = real.probes[source[picked]] - p[source[picked]]
    return xb, normalize_rows(xb[picked] + offsets)
