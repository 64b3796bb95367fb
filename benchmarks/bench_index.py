"""Indexing speed: the product's build end to end on XQuAD, against raw sentence-transformers on the same passages."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.xquad import ALL_LANGS, load, write_corpus
from search.config import Settings
from search.ingest.chunking import ChunkerSettings, chunk_article
from search.ingest.corpus import read_corpus
from search.model.embedders import resolve_model
from search.service import SearchService

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def fresh_service(index_dir: Path) -> SearchService:
    """A service on a fresh index folder and embedding cache, model and detector loaded (as a running service has
    them) so that a build times the build alone."""
    shutil.rmtree(index_dir, ignore_errors=True)
    settings = Settings(index_dir=index_dir, embedding_cache=index_dir / "embeddings.sqlite")
    svc = SearchService(settings)
    svc.embedder  # noqa: B018
    svc.detector  # noqa: B018
    return svc


def passage_texts(svc: SearchService, corpus: Sequence[Path]) -> list[str]:
    """The passages the product's build will embed (its own reader and chunker), for the raw encode."""
    settings = ChunkerSettings(max_tokens=svc.embedder.max_tokens)
    articles = read_corpus(list(corpus)).articles
    return [c.text for a in articles for c in chunk_article(a.text, svc.embedder.count_tokens, settings)]


def substages(svc: SearchService, corpus: Sequence[Path]) -> dict[str, float]:
    """The FAISS part of the product's `write` stage, timed again apart on the same vectors."""
    import faiss
    import numpy as np

    xb = np.ascontiguousarray(svc.store.raw_vectors(), dtype=np.float32)
    start = time.perf_counter()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(xb.shape[1]))
    index.add_with_ids(xb, np.arange(len(xb), dtype=np.int64))
    return {"faiss_index": time.perf_counter() - start}


def raw_model(settings: Settings) -> SentenceTransformer:
    """The same model folder loaded by sentence-transformers directly, on the product's thread count."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(settings.threads)
    return SentenceTransformer(str(resolve_model(settings.model, settings.cache_dir)), device="cpu")


def raw_encode(model: SentenceTransformer, texts: Sequence[str], prompt: str, batch_size: int) -> float:
    """Seconds for sentence-transformers alone to embed `texts`, with the product's prompt and batch size."""
    model.encode(list(texts[:8]), prompt=prompt, batch_size=batch_size)
    start = time.perf_counter()
    model.encode(list(texts), prompt=prompt, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return time.perf_counter() - start


def bench_indexing(out: Path, limit: int | None, raw: SentenceTransformer) -> tuple[dict[str, Any], SearchService]:
    """Figures for the markdown and JSON, and the service on the built index (which the query benchmark uses).

    The raw encode runs twice, on two disjoint random quarters of the passages, one just before the product's
    build and one just after: on a shared machine the load drifts within minutes, and bracketing the build
    cancels most of that drift from the ratio.
    """
    import random

    xq = load(ALL_LANGS, limit)
    files = list(write_corpus(xq, out / "corpus").values())
    svc = fresh_service(out / "index")
    texts = passage_texts(svc, files)
    sample = random.Random(0).sample(texts, len(texts))
    quarter = max(1, len(texts) // 4)
    prompt = getattr(svc.embedder, "passage_prompt", "passage: ")
    batch = svc.settings.batch_size
    before = raw_encode(raw, sample[:quarter], prompt, batch)
    summary = svc.build(files).as_dict()
    svc.load()
    after = raw_encode(raw, sample[quarter : 2 * quarter], prompt, batch)
    sub = substages(svc, files)
    raw_seconds = (before + after) * len(texts) / (2 * quarter)  # all passages at the bracketing runs' rate
    paragraphs = summary["articles"]
    pipeline_rate = paragraphs / summary["seconds"]
    raw_rate = len(texts) / raw_seconds
    embed_rate = summary["passages"] / summary["stages"]["embed"]
    return {
        "languages": len(xq.paragraphs),
        "paragraphs": paragraphs,
        "passages": summary["passages"],
        "pipeline_seconds": summary["seconds"],
        "pipeline_paragraphs_per_s": round(pipeline_rate, 2),
        "pipeline_passages_per_s": round(summary["passages"] / summary["seconds"], 2),
        "stages": summary["stages"],
        "substages": {k: round(v, 3) for k, v in sub.items()},
        "embed_stage_passages_per_s": round(embed_rate, 2),
        "raw_encode_seconds": round(raw_seconds, 3),
        "raw_passages_per_s": round(raw_rate, 2),
        "ratio_pipeline_to_raw": round(summary["passages"] / summary["seconds"] / raw_rate, 3),
        "raw_bracketing_seconds": [round(before, 3), round(after, 3)],
        "ratio_embed_stage_to_raw": round(embed_rate / raw_rate, 3),
        "embedded": summary["embedded"],
        "languages_detected": summary["languages"],
    }, svc
