"""Indexing speed: the product's build end to end on XQuAD, against raw sentence-transformers on the same passages."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.xquad import ALL_LANGS, load, write_corpus
from search.config import Settings
from search.service import SearchService


def build(corpus: Sequence[Path], index_dir: Path) -> tuple[SearchService, dict[str, Any]]:
    """A cold build (fresh index folder and embedding cache) through `SearchService.build`, as `search index` runs."""
    shutil.rmtree(index_dir, ignore_errors=True)
    settings = Settings(index_dir=index_dir, embedding_cache=index_dir / "embeddings.sqlite")
    svc = SearchService(settings)
    svc.embedder  # noqa: B018 - load the model outside the timed build, as a running service has it loaded
    svc.detector  # noqa: B018
    summary = svc.build(list(corpus))
    svc.load()
    return svc, summary.as_dict()


def substages(svc: SearchService, corpus: Sequence[Path]) -> dict[str, float]:
    """The product's `chunk+language` and `write` stages split, by timing their parts again on the same input."""
    import faiss
    import numpy as np

    from search.chunking import ChunkerSettings, chunk_article
    from search.corpus import read_corpus

    embedder, detector = svc.embedder, svc.detector
    articles = read_corpus(list(corpus)).articles
    start = time.perf_counter()
    settings = ChunkerSettings(max_tokens=embedder.max_tokens)
    texts = [c.text for a in articles for c in chunk_article(a.text, embedder.count_tokens, settings)]
    chunk = time.perf_counter() - start
    start = time.perf_counter()
    detector.detect_many(texts)
    language = time.perf_counter() - start
    xb = np.ascontiguousarray(svc.store.raw_vectors(), dtype=np.float32)
    start = time.perf_counter()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(xb.shape[1]))
    index.add_with_ids(xb, np.arange(len(xb), dtype=np.int64))
    return {"chunk": chunk, "language_id": language, "faiss_index": time.perf_counter() - start}


def raw_model(settings: Settings) -> Any:
    """The same model folder loaded by sentence-transformers directly, on the product's thread count."""
    import torch
    from sentence_transformers import SentenceTransformer

    from search.embedding import resolve_model

    torch.set_num_threads(settings.threads)
    return SentenceTransformer(str(resolve_model(settings.model, settings.cache_dir)), device="cpu")


def raw_encode(model: Any, texts: Sequence[str], prompt: str, batch_size: int) -> float:
    """Seconds for sentence-transformers alone to embed `texts`, with the product's prompt and batch size."""
    model.encode(list(texts[:8]), prompt=prompt, batch_size=batch_size)
    start = time.perf_counter()
    model.encode(list(texts), prompt=prompt, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return time.perf_counter() - start


def bench_indexing(out: Path, limit: int | None, raw: Any) -> tuple[dict[str, Any], SearchService]:
    """Figures for the markdown and JSON, and the service on the built index (which the query benchmark uses)."""
    xq = load(ALL_LANGS, limit)
    files = list(write_corpus(xq, out / "corpus").values())
    svc, summary = build(files, out / "index")
    texts = [p.text for p in svc.store.all_passages()]
    sub = substages(svc, files)
    prompt = getattr(svc.embedder, "passage_prompt", "passage: ")
    raw_seconds = raw_encode(raw, texts, prompt, svc.settings.batch_size)
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
        "ratio_embed_stage_to_raw": round(embed_rate / raw_rate, 3),
        "embedded": summary["embedded"],
        "languages_detected": summary["languages"],
    }, svc
