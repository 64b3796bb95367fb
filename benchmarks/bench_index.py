"""Indexing speed: the product's build end to end on XQuAD, and, alternating in one process on the same passages,
the product's indexing path against raw sentence-transformers `encode` and against the packed pass alone."""

from __future__ import annotations

import shutil
import statistics
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


def raw_encode(model: SentenceTransformer, texts: Sequence[str], prompt: str, batch_size: int) -> None:
    """sentence-transformers alone embedding `texts`, with the product's prompt and batch size."""
    model.encode(list(texts), prompt=prompt, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)


def bench_indexing(out: Path, limit: int | None) -> tuple[dict[str, Any], SearchService]:
    """The product's build end to end on XQuAD in 12 languages, its stages, and the service on the built index
    (which the query benchmark uses). How it compares with raw sentence-transformers is `alternating`'s part."""
    xq = load(ALL_LANGS, limit)
    files = list(write_corpus(xq, out / "corpus").values())
    svc = fresh_service(out / "index")
    summary = svc.build(files).as_dict()
    svc.load()
    sub = substages(svc, files)
    paragraphs = summary["articles"]
    return {
        "languages": len(xq.paragraphs),
        "paragraphs": paragraphs,
        "passages": summary["passages"],
        "pipeline_seconds": summary["seconds"],
        "pipeline_paragraphs_per_s": round(paragraphs / summary["seconds"], 2),
        "pipeline_passages_per_s": round(summary["passages"] / summary["seconds"], 2),
        "stages": summary["stages"],
        "substages": {k: round(v, 3) for k, v in sub.items()},
        "embed_stage_passages_per_s": round(summary["passages"] / summary["stages"]["embed"], 2),
        "embedded": summary["embedded"],
        "languages_detected": summary["languages"],
    }, svc


METHODS = ("product", "raw", "packed")


def alternating(
    out: Path, limit: int, rounds: int, raw: SentenceTransformer, loaded: SearchService | None = None
) -> dict[str, Any]:
    """The same passages, in one process, round after round (the order rotating each round): the product's
    indexing path (`SearchService.build` on a fresh folder and embedding cache: read, chunk, language ID, embed,
    center, write, publish), raw sentence-transformers `encode` (the product's prompt and batch size), and the
    product's embedder alone (`encode`: the packed forward pass by default). Load that drifts on a shared machine
    then falls on every method alike; the median round of each is compared, wall and process CPU time."""
    xq = load(ALL_LANGS, limit)
    files = list(write_corpus(xq, out / "alternating-corpus").values())
    index_dir = out / "alternating-index"
    if loaded is None:
        svc = fresh_service(index_dir)
    else:  # the loaded model and detector, with an index folder and embedding cache of its own
        shutil.rmtree(index_dir, ignore_errors=True)
        settings = Settings(index_dir=index_dir, embedding_cache=index_dir / "embeddings.sqlite")
        svc = SearchService(settings, embedder=loaded.embedder, detector=loaded.detector)
    texts = passage_texts(svc, files)
    prompt = getattr(svc.embedder, "passage_prompt", "passage: ")
    batch = svc.settings.batch_size

    def product() -> None:
        shutil.rmtree(index_dir, ignore_errors=True)
        svc.build(files, index_dir=index_dir)

    def packed() -> None:
        svc.embedder.encode(texts, query=False)

    run = {"product": product, "raw": lambda: raw_encode(raw, texts, prompt, batch), "packed": packed}
    raw_encode(raw, texts[:8], prompt, batch)  # warm both models' first-call costs
    svc.embedder.encode(texts[:8], query=False)
    wall: dict[str, list[float]] = {m: [] for m in METHODS}
    cpu: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(rounds):
        for method in METHODS[r % 3 :] + METHODS[: r % 3]:
            t, c = time.perf_counter(), time.process_time()
            run[method]()
            cpu[method].append(time.process_time() - c)
            wall[method].append(time.perf_counter() - t)
    shutil.rmtree(index_dir, ignore_errors=True)
    median = {m: statistics.median(wall[m]) for m in METHODS}
    median_cpu = {m: statistics.median(cpu[m]) for m in METHODS}
    return {
        "paragraphs": sum(len(ps) for ps in xq.paragraphs.values()),
        "passages": len(texts),
        "rounds": rounds,
        "wall_seconds": {m: [round(x, 2) for x in wall[m]] for m in METHODS},
        "cpu_seconds": {m: [round(x, 2) for x in cpu[m]] for m in METHODS},
        "passages_per_s": {m: round(len(texts) / median[m], 2) for m in METHODS},
        # Throughput ratios (higher: the first is faster), of the median rounds.
        "ratio_product_to_raw": round(median["raw"] / median["product"], 3),
        "ratio_packed_to_raw": round(median["raw"] / median["packed"], 3),
        "ratio_product_to_packed": round(median["packed"] / median["product"], 3),
        "cpu_ratio_product_to_raw": round(median_cpu["raw"] / median_cpu["product"], 3),
        "cpu_ratio_packed_to_raw": round(median_cpu["raw"] / median_cpu["packed"], 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.bench_index`: the alternating run alone (`make bench` runs it after the full build)."""
    import argparse
    import json
    import logging

    from benchmarks.bench_report import alternating as render
    from benchmarks.machine import load_average, machine_info, machine_markdown
    from search.model.embedders import limit_threads

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_index", description=main.__doc__)
    parser.add_argument("--paragraphs", type=int, default=20, help="XQuAD paragraphs per language (12 languages)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three methods [default: %(default)s]")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder [default: %(default)s]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = Settings()
    limit_threads(settings.threads, settings.interop_threads)
    machine = machine_info()
    result = alternating(args.out, args.paragraphs, args.rounds, raw_model(settings))
    machine["load_average_at_end"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "alternating.json").write_text(json.dumps({"machine": machine, **result}, indent=2), encoding="utf-8")
    print(machine_markdown(machine) + "\n\n" + render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
