"""`python -m benchmarks.bench_backends`: the model backends (torch, onnx, onnx-int8) side by side on XQuAD text.

Single-query latency (one question per `encode` call, as a search without a cached vector does) and passage
throughput (paragraphs through `encode` in batches, which every backend sorts by length). The backends take turns
on the same texts, round after round, so load from other work on a shared machine falls on all of them alike. It
also gives each backend's cosine to torch on the same texts; retrieval quality is `benchmarks.eval`'s job
(`SEARCH_BACKEND=onnx python -m benchmarks.eval ...`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any, get_args

import numpy as np

from benchmarks.bench_query import percentiles
from benchmarks.machine import load_average, machine_info, machine_markdown, rss_mb
from benchmarks.xquad import load
from search.config import Backend, Settings
from search.model.embedders import Embedder, embedder_for

# "torch" is the default (the packed forward pass for BERT models); "torch-st" the same weights through
# sentence-transformers' own forward, the figure every other row is compared with in issue #3.
BACKENDS: tuple[str, ...] = ("torch", "torch-st", *get_args(Backend)[1:])


QUERY_BATCH = 8


def make(settings: Settings, name: str, batch_size: int) -> Embedder:
    backend = "torch" if name == "torch-st" else name
    update = {"backend": backend, "packed_forward": name != "torch-st", "batch_size": batch_size}
    return embedder_for(settings.model_copy(update=update))


def interleave(groups: Sequence[Sequence[str]], n: int) -> list[str]:
    """The first `n` texts taking one from each language in turn, so every language is in every slice."""
    return [t for t in chain.from_iterable(zip_longest(*groups)) if t is not None][:n]


def run(langs: Sequence[str], n_queries: int, n_passages: int, rounds: int, batch_size: int) -> dict[str, Any]:
    info = machine_info()
    xq = load(langs)
    queries = interleave([[q.text for q in xq.questions[lang]] for lang in langs], n_queries)
    passages = interleave([[p.text for p in xq.paragraphs[lang]] for lang in langs], n_passages)
    settings = Settings()
    embedders: dict[str, Embedder] = {}
    load_seconds: dict[str, float] = {}
    for backend in BACKENDS:
        start = time.perf_counter()
        embedders[backend] = make(settings, backend, batch_size)
        load_seconds[backend] = round(time.perf_counter() - start, 2)
        embedders[backend].encode(passages[:batch_size], query=False)  # warm-up: first calls allocate
    latencies: dict[str, list[float]] = {b: [] for b in BACKENDS}
    query_vectors: dict[str, list[np.ndarray]] = {b: [] for b in BACKENDS}
    for i, text in enumerate(queries):
        for backend in BACKENDS[i % len(BACKENDS) :] + BACKENDS[: i % len(BACKENDS)]:  # rotate who goes first
            start = time.perf_counter()
            query_vectors[backend].append(embedders[backend].encode([text], query=True)[0])
            latencies[backend].append((time.perf_counter() - start) * 1000)
    # Eight questions per call, as the server's micro-batcher groups them under load: what batching saves over
    # eight single calls (the single-query p50 above times eight) is the most it can add to throughput.
    batch_latencies: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for i, start_at in enumerate(range(0, len(queries) - QUERY_BATCH + 1, QUERY_BATCH)):
        group = queries[start_at : start_at + QUERY_BATCH]
        for backend in BACKENDS[i % len(BACKENDS) :] + BACKENDS[: i % len(BACKENDS)]:
            start = time.perf_counter()
            embedders[backend].encode(group, query=True)
            batch_latencies[backend].append((time.perf_counter() - start) * 1000)
    seconds = dict.fromkeys(BACKENDS, 0.0)
    passage_vectors: dict[str, list[np.ndarray]] = {b: [] for b in BACKENDS}
    step = -(-len(passages) // rounds)
    for r, start_at in enumerate(range(0, len(passages), step)):
        part = passages[start_at : start_at + step]
        for backend in BACKENDS[r % len(BACKENDS) :] + BACKENDS[: r % len(BACKENDS)]:
            start = time.perf_counter()
            passage_vectors[backend].append(embedders[backend].encode(part, query=False))
            seconds[backend] += time.perf_counter() - start
    reference_q = np.stack(query_vectors["torch"])
    reference_p = np.concatenate(passage_vectors["torch"])
    rows = []
    for backend in BACKENDS:
        cos_q = (np.stack(query_vectors[backend]) * reference_q).sum(axis=1)
        cos_p = (np.concatenate(passage_vectors[backend]) * reference_p).sum(axis=1)
        rows.append(
            {
                "backend": backend,
                "fingerprint": embedders[backend].fingerprint,
                "load_seconds": load_seconds[backend],
                "query_ms": percentiles(latencies[backend]),
                "query_batch_ms": percentiles(batch_latencies[backend]),
                "passages_per_second": round(len(passages) / seconds[backend], 2),
                "cosine_to_torch_queries": {"min": round(float(cos_q.min()), 5), "mean": round(float(cos_q.mean()), 5)},
                "cosine_to_torch_passages": {
                    "min": round(float(cos_p.min()), 5),
                    "mean": round(float(cos_p.mean()), 5),
                },
            }
        )
    info["load_average_at_end"] = load_average()
    return {
        "machine": info,
        "config": {
            "langs": list(langs),
            "queries": len(queries),
            "passages": len(passages),
            "rounds": rounds,
            "batch_size": batch_size,
            "threads": settings.threads,
            "passage_tokens_mean": round(float(np.mean([embedders["torch"].count_tokens(p) for p in passages])), 1),
        },
        "backends": rows,
        "process_rss_mb": rss_mb(),
    }


def render(results: dict[str, Any]) -> str:
    c = results["config"]
    rows = {r["backend"]: r for r in results["backends"]}
    base = rows["torch"]
    lines = [
        "## Model backends: encode speed",
        "",
        machine_markdown(results["machine"]),
        "",
        f"{c['queries']} XQuAD questions one per call; {c['passages']} paragraphs (mean {c['passage_tokens_mean']} "
        f"tokens) in batches of {c['batch_size']}, {c['rounds']} rounds, backends taking turns; "
        f"{c['threads']} threads; languages {', '.join(c['langs'])}.",
        "",
        "| backend | query p50 ms | query p95 ms | query speed-up (p50) | 8 queries in one call, p50 ms "
        "| passages/s | passage speed-up | cosine to torch, queries min / mean | cosine to torch, passages min / mean "
        "| load s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        q, cq, cp = r["query_ms"], r["cosine_to_torch_queries"], r["cosine_to_torch_passages"]
        lines.append(
            f"| {name} | {q['p50_ms']} | {q['p95_ms']} | {base['query_ms']['p50_ms'] / q['p50_ms']:.2f}x "
            f"| {r['query_batch_ms']['p50_ms']} "
            f"| {r['passages_per_second']} | {r['passages_per_second'] / base['passages_per_second']:.2f}x "
            f"| {cq['min']:.4f} / {cq['mean']:.4f} | {cp['min']:.4f} / {cp['mean']:.4f} | {r['load_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_backends", description=__doc__.split("\n")[0])
    parser.add_argument("--langs", default="en,zh,ru", help="XQuAD languages [default: %(default)s]")
    parser.add_argument("--queries", type=int, default=200, help="questions timed one by one [default: %(default)s]")
    parser.add_argument("--passages", type=int, default=500, help="paragraphs encoded [default: %(default)s]")
    parser.add_argument(
        "--rounds", type=int, default=5, help="slices the backends take turns on [default: %(default)s]"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="passages per model call [default: %(default)s]")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    results = run(langs, args.queries, args.passages, args.rounds, args.batch_size)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(render(results))
    print("```json\n" + json.dumps(results["backends"], indent=2) + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
