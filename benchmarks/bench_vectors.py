"""The vector index alone on seeded synthetic vectors: build time, search latency, size and recall@10 vs exact.

Every kind the project offers (`search.index.vectors.KINDS`: today exact `flat`, and the approximate `hnsw_sq8` and
`ivf_pq_sq8`) is built and searched the way the product does it (`build_vector_index` with the kind's default plan,
which trains and tunes approximate kinds to their recall target; `vectorindex.search`), so a new kind is measured as
soon as it is added there. Recall@10 is against exact search (`IndexFlatIP`) on the same data, as faiss
`contrib/evaluation.py` does.

Data: `xquad` (`make bench`) is real XQuAD questions over XQuAD paragraphs enlarged to the size
(`benchmarks/query_like.py`), each index tuned on build probes as `search index` tunes it; `uniform` (the smoke test)
is normalized gaussian vectors with queries next to database vectors, tuned on held-out rows.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_query import percentiles
from search.index import vectors as vectorindex
from search.index.vectors import KINDS

DIM = 384
K = 10


def normalized(rng: np.random.Generator, n: int, d: int = DIM, block: int = 100_000) -> np.ndarray:
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, block):
        x = rng.standard_normal((min(block, n - start), d), dtype=np.float32)
        out[start : start + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def queries_near(rng: np.random.Generator, xb: np.ndarray, n: int, noise: float = 0.5) -> np.ndarray:
    """Queries next to random database vectors (plain random vectors in 384-d have no meaningful neighbours)."""
    picked = xb[rng.choice(len(xb), size=n, replace=False)]
    x = picked + noise * normalized(rng, n, xb.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_neighbours(xb: np.ndarray, xq: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    _, ids = index.search(xq, k)
    return ids


def recall_at(ids: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(ids, truth, strict=True)]))


def serialized_bytes(index: Any) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


def one_by_one(index: Any, xq: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    ms = []
    for row in xq:
        start = time.perf_counter()
        vectorindex.search(index, row.reshape(1, -1), K, params)
        ms.append((time.perf_counter() - start) * 1000)
    return percentiles(ms)


def bench_kind(
    kind: str, xb: np.ndarray, xq: np.ndarray, truth: np.ndarray, single: int, probes: np.ndarray | None = None
) -> dict[str, Any]:
    start = time.perf_counter()
    plan = vectorindex.default_plan(kind, *xb.shape)
    built = vectorindex.build_vector_index(xb, np.arange(len(xb)), plan, xq_tune=probes, tuned_on="build probes")
    build = time.perf_counter() - start
    one = one_by_one(built.index, xq[:single], built.params)
    start = time.perf_counter()
    _, ids = vectorindex.search(built.index, xq, K, built.params)
    batched = time.perf_counter() - start
    return {
        "build_s": round(build, 3),
        "params": built.params,
        "one_by_one": one,
        "batched": {
            "n": len(xq),
            "ms_per_query": round(batched * 1000 / len(xq), 3),
            "queries_per_s": round(len(xq) / batched, 1),
        },
        "bytes_per_vector": round(serialized_bytes(built.index) / len(xb), 1),
        "recall_at_10": round(recall_at(ids, truth, K), 4),
        "recall_at_10_tuning": built.recall_at_10,
        "tuned_on": built.tuned_on,
    }


def bench_vectors(
    sizes: list[int],
    nq: int,
    single: int,
    kinds: list[str] | None = None,
    seed: int = 0,
    data: str = "uniform",
    cache: Path = Path("bench-results/xquad-embeddings.sqlite"),
) -> list[dict[str, Any]]:
    from benchmarks.query_like import LANGS, enlarged, real_vectors

    results = []
    real = real_vectors(LANGS, nq, cache, seed) if data == "xquad" else None
    for n in sizes:
        rng = np.random.default_rng(seed)
        probes = None
        if real is not None:
            xb, probes = enlarged(real, n, seed)
            xq = real.questions
        else:
            xb = normalized(rng, n)
            xq = queries_near(rng, xb, nq)
        truth = exact_neighbours(xb, xq, K)
        for kind in kinds or KINDS:
            row = {"vectors": len(xb), "dimension": DIM, "data": data, "index": kind}
            results.append(row | bench_kind(kind, xb, xq, truth, single, probes))
        del xb
    return results
