"""The vector index alone on seeded synthetic vectors: build time, search latency, size and recall@10 vs exact.

Every index type the project offers is listed in `INDEX_TYPES` (name -> factory taking the dimension); today only
the exact `IndexIDMap2(IndexFlatIP)` that `search/store.py` builds. A new type plugs in with one entry: it is
trained on the database vectors if it needs training, and its recall is measured against exact search
(`IndexFlatIP`) on the same data, as faiss `contrib/evaluation.py` does.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.bench_query import percentiles

DIM = 384
K = 10


def _flat_ip(d: int) -> Any:
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(d))


INDEX_TYPES: dict[str, Callable[[int], Any]] = {
    "IndexIDMap2(IndexFlatIP) [exact, search/store.py]": _flat_ip,
}


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


def bench_type(
    make: Callable[[int], Any], xb: np.ndarray, xq: np.ndarray, truth: np.ndarray, single: int
) -> dict[str, Any]:
    start = time.perf_counter()
    index = make(xb.shape[1])
    if not index.is_trained:
        index.train(xb)
    index.add_with_ids(xb, np.arange(len(xb), dtype=np.int64))
    build = time.perf_counter() - start
    one = []
    for row in xq[:single]:
        t = time.perf_counter()
        index.search(row.reshape(1, -1), K)
        one.append((time.perf_counter() - t) * 1000)
    start = time.perf_counter()
    _, ids = index.search(xq, K)
    batched = time.perf_counter() - start
    return {
        "build_s": round(build, 3),
        "one_by_one": percentiles(one),
        "batched": {
            "n": len(xq),
            "ms_per_query": round(batched * 1000 / len(xq), 3),
            "queries_per_s": round(len(xq) / batched, 1),
        },
        "bytes_per_vector": round(serialized_bytes(index) / len(xb), 1),
        "recall_at_10": round(recall_at(ids, truth, K), 4),
    }


def bench_vectors(sizes: list[int], nq: int, single: int, seed: int = 0) -> list[dict[str, Any]]:
    results = []
    for n in sizes:
        rng = np.random.default_rng(seed)
        xb = normalized(rng, n)
        xq = queries_near(rng, xb, nq)
        truth = exact_neighbours(xb, xq, K)
        for name, make in INDEX_TYPES.items():
            results.append({"vectors": n, "dimension": DIM, "index": name, **bench_type(make, xb, xq, truth, single)})
        del xb
    return results
