"""The vector index: exact up to a measured size, approximate above it, tuned at build time to a recall target.

Every index is an `IndexIDMap2` (ids are passage rows) over inner product on centered, normalized vectors:

- `flat`        `IndexFlatIP`: exact; 4 * dim bytes per vector.
- `hnsw_sq8`    `IndexHNSWSQ` (HNSW graph, M links, over 8-bit scalar-quantized vectors): ~ dim + 8 * M bytes.
- `ivf_pq_sq8`  `IndexRefine(IndexIVFPQFastScan, IndexScalarQuantizer SQ8)`: a 4-bit PQ fast scan over the probed
                lists proposes k * k_factor candidates that the 8-bit codes re-rank; ~ dim + dim / 4 + 16 bytes.

Approximate indexes are trained on a seeded sample, and their search parameters (efSearch; nprobe and k_factor)
are swept upward until recall@10 against exact search on the tuning queries reaches the target. The tuning queries
should look like real queries: a build passes query-prompted probes (`search/index/probes.py`); passages held out
of the index stand in only when none are given, and they overstate recall (real queries sit elsewhere in the
space: a 100k hnsw_sq8 tuned to 0.970 on held-out passages found 0.881 of real XQuAD questions' top 10, in
`python -m benchmarks.bench_scale --sizes 100000`). The figures behind the constants are in
`benchmarks/bench_scale.py` (`bench-results/scale.json`).
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.exhaustive_search import knn_ground_truth

from search.config import FLAT_MAX
from search.errors import BadInput, IndexCorrupt

log = logging.getLogger(__name__)

KINDS = ("flat", "hnsw_sq8", "ivf_pq_sq8")
# Below this an approximate index could not hold out enough rows (n // 10) to tune on, and an exact search over so
# few vectors takes microseconds: such indexes are flat whatever the settings.
APPROX_MIN = 100
# A filter allowing m of n ids is answered exactly (scoring the m SQ8 codes gathered into a small index: ~0.4 us
# each, one thread) when m <= EXACT_SUBSET_FACTOR * sqrt(n), else by a graph / list search scaled by n / m
# (~ t * n / m for an unfiltered query time t). The costs meet at m = sqrt(n * t / 0.4 us): ~10k at 100k
# (t = 0.43 ms) and ~65k at 1M (t = 1.7 ms) in `bench_scale`. Graph search alone also misses when a filter
# keeps a tiny share of the rows.
EXACT_SUBSET_FACTOR = 50
# From this size ivf_pq_sq8 is planned before hnsw_sq8. At recall@10 >= 0.95 (held-out), one thread, p50:
# 100k: hnsw 0.48 ms (efSearch 96) vs ivf 0.59 ms (nprobe 256 of 1024 lists: fragile); 300k: hnsw 0.66 ms vs
# ivf 0.36 ms (nprobe 24 of 2048); 1M: hnsw 1.2 ms CPU (efSearch 256, held-out recall 0.964, 664 B/vector,
# build 639 CPU-s) vs ivf 0.48 ms CPU / 0.50 ms wall (nprobe 8 of 4096, recall 0.963, 508 B/vector, build 527 CPU-s):
# ivf is faster, ~25% smaller and cheaper to build. See bench-results/.
IVF_MIN = 200_000
TUNE_QUERIES = 1000
# The recall of 1000 tuning queries has a standard error of ~0.005: tune to the target plus two of them.
TUNE_MARGIN = 0.01
_EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
_NPROBE_LADDER = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
# Candidates re-ranked by the SQ8 codes per result: 80 more SQ8 distances, negligible beside the list scan.
K_FACTOR = 8
_EF_MAX = 4096
_BLOCK = 100_000
_QT_8BIT: Any = faiss.ScalarQuantizer.QT_8bit  # an int in the stubs, which want the enum type
_TYPES = {
    "flat": "IndexIDMap2(IndexFlatIP)",
    "hnsw_sq8": "IndexIDMap2(IndexHNSWSQ(QT_8bit))",
    "ivf_pq_sq8": "IndexIDMap2(IndexRefine(IndexIVFPQFastScan, IndexScalarQuantizer(QT_8bit)))",
}


# Fills a trained, empty IndexIDMap2 with xb[rows] under ids[rows] (in that order) and returns the filled index: how a
# build hands the adds of a large ivf_pq_sq8 index to workers (search/index/distributed.py), given (index, xb, ids,
# rows).
Adder = Callable[[faiss.Index, np.ndarray, np.ndarray, np.ndarray], faiss.Index]


@dataclass(frozen=True)
class IndexPlan:
    """Which index to build and its build parameters."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TuningQueries:
    """Query vectors to tune an approximate index on, and what they are (recorded in the manifest)."""

    vectors: np.ndarray
    source: str


@dataclass(frozen=True)
class BuiltIndex:
    """A built index with its build and tuned search parameters and what they were measured to give."""

    index: faiss.Index
    kind: str
    params: dict[str, Any]
    recall_at_10: float | None
    build_seconds: float
    bytes_per_vector: float
    target_recall: float | None = None
    tune_queries: int = 0
    tuned_on: str | None = None

    def describe(self) -> dict[str, Any]:
        """The manifest and `/health` entry: everything needed to load, search and judge the index."""
        return {
            "type": _TYPES[self.kind],
            "kind": self.kind,
            "metric": "inner_product",
            "exact": self.kind == "flat",
            "params": self.params,
            "recall_at_10": self.recall_at_10,
            "target_recall": self.target_recall,
            "tune_queries": self.tune_queries,
            "tuned_on": self.tuned_on,
            "build_seconds": round(self.build_seconds, 2),
            "bytes_per_vector": round(self.bytes_per_vector, 1),
        }


def _nlist(n: int) -> int:
    """About 4 * sqrt(n) lists (a power of two), with at least 39 training points per list."""
    target = 2 ** round(math.log2(max(16.0, 4 * math.sqrt(n))))
    return int(max(16, min(target, 2 ** int(math.log2(max(16, n // 39))))))


def estimated_bytes_per_vector(plan: IndexPlan, dim: int, n: int) -> float:
    """Serialized bytes per vector, id map included (checked against the measured sizes at 100k and 1M)."""
    p = {**default_plan(plan.kind, n, dim).params, **plan.params}
    if plan.kind == "hnsw_sq8":
        return dim + 8 * int(p["M"]) + 36  # codes, level-0 and upper links, levels and offsets, id map
    if plan.kind == "ivf_pq_sq8":
        pq_bytes = math.ceil(int(p["pq_m"]) / 2)
        # SQ8 codes, PQ codes, list and map ids; centroids; fast-scan lists padded to blocks of 32 codes
        return dim + pq_bytes + 16 + (4.0 * dim + 16 * pq_bytes) * int(p["nlist"]) / max(n, 1)
    return 4.0 * dim + 8


def default_plan(kind: str, n: int, dim: int) -> IndexPlan:
    """The build parameters used for `kind` at `n` vectors of `dim` dimensions."""
    if kind == "hnsw_sq8":
        return IndexPlan(kind, {"M": 32, "efConstruction": 40})
    if kind == "ivf_pq_sq8":
        pq_m = dim // 2 if dim % 2 == 0 else dim
        return IndexPlan(
            kind, {"nlist": _nlist(n), "pq_m": pq_m, "pq_bits": 4, "refine": "SQ8", "kmeans_iterations": 10}
        )
    if kind == "flat":
        return IndexPlan(kind)
    raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)}")


def plan_index(n: int, dim: int, memory_budget_bytes: int | None = None, flat_max: int = FLAT_MAX) -> IndexPlan:
    """Flat up to `flat_max` vectors, else the approximate kind measured fastest at this size; the first of
    those that fits the memory budget."""
    if n < APPROX_MIN:
        return default_plan("flat", n, dim)
    approximate = ["hnsw_sq8", "ivf_pq_sq8"] if n < IVF_MIN else ["ivf_pq_sq8", "hnsw_sq8"]
    kinds = (["flat"] if n <= flat_max else []) + approximate
    candidates = [default_plan(kind, n, dim) for kind in kinds]
    if memory_budget_bytes is None:
        return candidates[0]
    for plan in candidates:
        if estimated_bytes_per_vector(plan, dim, n) * n <= memory_budget_bytes:
            return plan
    smallest = min(estimated_bytes_per_vector(p, dim, n) for p in candidates) * n
    raise BadInput(
        f"no index of {n} vectors of {dim} dimensions fits in {memory_budget_bytes} bytes; the smallest needs "
        f"about {int(smallest)}: raise the memory budget"
    )


def _blocks(xb: np.ndarray, block: int = _BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """float32 blocks of `xb` (which may be a float16 memmap), so memory stays bounded."""
    for start in range(0, len(xb), block):
        yield start, np.ascontiguousarray(xb[start : start + block], dtype=np.float32)


def exact_knn(xq: np.ndarray, xb: np.ndarray, k: int, skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product: (scores, rows of xb), row -1 where fewer than k rows exist; `skip` masks
    rows out. FAISS's own block-wise ground truth, fed float32 blocks (xb may be a float16 memmap)."""
    rows = np.arange(len(xb)) if skip is None else np.flatnonzero(~skip)
    if not len(rows):
        return np.full((len(xq), k), -np.inf, dtype=np.float32), np.full((len(xq), k), -1, dtype=np.int64)
    blocks = (np.ascontiguousarray(xb[rows[s : s + _BLOCK]], dtype=np.float32) for s in range(0, len(rows), _BLOCK))
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    scores, found = knn_ground_truth(xq, blocks, k, metric_type=faiss.METRIC_INNER_PRODUCT, ngpu=0)
    # An empty slot keeps the heap's -FLT_MAX score; its id is never a row.
    empty = (found < 0) | (scores <= -np.finfo(np.float32).max)
    return scores, np.where(empty, -1, rows[np.clip(found, 0, len(rows) - 1)])


def recall_at_k(ids: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Share of the exact top k found in the approximate top k, averaged over queries."""
    return float(np.mean([len(set(a[:k]) & set(b[:k]) - {-1}) / k for a, b in zip(ids, truth, strict=True)]))


def _make(plan: IndexPlan, dim: int, n: int) -> tuple[faiss.Index, dict[str, Any]]:
    p = {**default_plan(plan.kind, n, dim).params, **plan.params}
    ip = faiss.METRIC_INNER_PRODUCT
    if plan.kind == "hnsw_sq8":
        hnsw = faiss.IndexHNSWSQ(dim, _QT_8BIT, int(p["M"]), ip)
        hnsw.hnsw.efConstruction = int(p["efConstruction"])
        return hnsw, p
    if plan.kind == "ivf_pq_sq8":
        ivf = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim, int(p["nlist"]), int(p["pq_m"]), 4, ip)
        ivf.cp.niter = int(p["kmeans_iterations"])
        return faiss.IndexRefine(ivf, faiss.IndexScalarQuantizer(dim, _QT_8BIT, ip)), p
    return faiss.IndexFlatIP(dim), p


def kind_of(index: faiss.Index) -> str:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw_sq8"
    if isinstance(inner, faiss.IndexRefine):
        return "ivf_pq_sq8"
    return "flat"


def build_vector_index(
    xb: np.ndarray,
    ids: np.ndarray,
    plan: IndexPlan | None = None,
    target_recall: float = 0.95,
    seed: int = 0,
    xq_tune: np.ndarray | None = None,
    tuned_on: str | None = None,
    add: Adder | None = None,
) -> BuiltIndex:
    """Build, train and tune an index of `xb` (float32 or a float16 memmap) under `ids`.

    An ivf_pq_sq8 index is trained here and, given `add`, filled by it (in shards on workers, then merged: the
    same lists, codes and ids as a single process fills, so the same results); other kinds ignore `add`: an HNSW
    graph links each vector to those added before it, so shards built apart cannot be merged into one graph.

    The tuning queries are `xq_tune` (described by `tuned_on` in the manifest), or else up to TUNE_QUERIES seeded
    rows of `xb` held out: they are added only after tuning, so they are measured as unseen queries (a stored row
    finds its own graph neighbours too easily: leave-one-out tuning overstated HNSW recall by ~0.015 in
    `bench_scale`).
    """
    start = time.perf_counter()
    n, dim = xb.shape
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    plan = plan or plan_index(n, dim)
    inner, params = _make(plan, dim, n)
    rng = np.random.default_rng(seed)
    if not inner.is_trained:
        size = min(n, 50 * int(params["nlist"]) if plan.kind == "ivf_pq_sq8" else _BLOCK)
        sample = np.sort(rng.choice(n, size=size, replace=False))
        inner.train(np.ascontiguousarray(xb[sample], dtype=np.float32))
    index: faiss.Index = faiss.IndexIDMap2(inner)
    tune = plan.kind != "flat" and n > 0
    held = np.zeros(n, dtype=bool)
    if tune and xq_tune is None:
        held[rng.choice(n, size=min(TUNE_QUERIES, n // 10), replace=False)] = True
    if add is not None and plan.kind == "ivf_pq_sq8":
        index = add(index, xb, ids, np.flatnonzero(~held))
    else:
        for first, block in _blocks(xb):
            keep = ~held[first : first + len(block)]
            index.add_with_ids(np.ascontiguousarray(block[keep]), ids[first : first + len(block)][keep])
    recall: float | None = 1.0
    nq = 0
    if tune:
        xq = np.ascontiguousarray(xq_tune if xq_tune is not None else xb[held], dtype=np.float32)
        _, rows = exact_knn(xq, xb, 10, skip=held)
        params, recall = _tune(index, plan.kind, params, xq, np.where(rows >= 0, ids[rows], -1), target_recall)
        nq = len(xq)
        set_search_params(index, params)
    if held.any():
        index.add_with_ids(np.ascontiguousarray(xb[held], dtype=np.float32), ids[held])
    size = faiss.serialize_index(index).size
    target = target_recall if tune else None
    if not tune:
        source = None
    elif xq_tune is not None:
        source = tuned_on or "given queries"
    else:
        source = "passages held out of the index"
    seconds = time.perf_counter() - start
    return BuiltIndex(index, plan.kind, params, recall, seconds, size / max(n, 1), target, nq, source)


def merge_ivf_shards(shards: list[faiss.Index]) -> faiss.Index:
    """One ivf_pq_sq8 index holding the shards' vectors in shard order; the shards share one trained template.

    FAISS merges IVF lists (`merge_from`, as autofaiss merges its shards) and flat codes, but not an
    `IndexRefine` nor the id map above it: those are joined here. The base index's ids are positions into the
    refine codes, so each shard's are shifted by the vectors before it.
    """
    merged: Any = shards[0]
    refine: Any = faiss.downcast_index(merged.index)
    base: Any = faiss.extract_index_ivf(refine.base_index)
    id_maps = [faiss.vector_to_array(merged.id_map)]
    for shard in shards[1:]:
        other: Any = faiss.downcast_index(shard.index)  # type: ignore[attr-defined]
        base.merge_from(faiss.extract_index_ivf(other.base_index), refine.ntotal)
        faiss.downcast_index(refine.refine_index).merge_from(faiss.downcast_index(other.refine_index), 0)
        refine.ntotal += other.ntotal
        id_maps.append(faiss.vector_to_array(shard.id_map))  # type: ignore[attr-defined]
    faiss.copy_array_to_vector(np.concatenate(id_maps).astype(np.int64), merged.id_map)
    merged.ntotal = refine.ntotal
    merged.construct_rev_map()
    return merged


def _tune(
    index: faiss.Index, kind: str, params: dict[str, Any], xq: np.ndarray, truth: np.ndarray, target: float, k: int = 10
) -> tuple[dict[str, Any], float]:
    """The lowest efSearch / nprobe on the ladder whose recall@k reaches target + TUNE_MARGIN, by bisection
    (recall grows with either), or the top of the ladder with the recall it reached."""
    if kind == "hnsw_sq8":
        ladder = [{"efSearch": ef} for ef in _EF_LADDER]
    else:
        ladder = [{"nprobe": p, "k_factor": K_FACTOR} for p in _NPROBE_LADDER if p <= params["nlist"]]
    measured: dict[int, float] = {}
    lo, hi = 0, len(ladder) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        _, found = search(index, xq, k, {**params, **ladder[mid]})
        measured[mid] = recall_at_k(found, truth, k)
        log.debug("tuning %s %s: recall@%d %.4f", kind, ladder[mid], k, measured[mid])
        if measured[mid] >= target + TUNE_MARGIN:
            hi = mid - 1
        else:
            lo = mid + 1
    chosen = min(lo, len(ladder) - 1)
    if chosen not in measured:
        _, found = search(index, xq, k, {**params, **ladder[chosen]})
        measured[chosen] = recall_at_k(found, truth, k)
    if measured[chosen] < target:
        log.warning("%s reached recall@%d %.4f at most (target %.2f)", kind, k, measured[chosen], target)
    return {**params, **ladder[chosen]}, round(measured[chosen], 4)


def set_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    """Apply the tuned efSearch / nprobe / k_factor to a loaded index (for callers of plain `index.search`)."""
    kind = kind_of(index)
    inner: Any = faiss.downcast_index(index.index)  # type: ignore[attr-defined]
    if kind == "hnsw_sq8":
        inner.hnsw.efSearch = int(params["efSearch"])
    elif kind == "ivf_pq_sq8":
        inner.k_factor = float(params["k_factor"])
        faiss.extract_index_ivf(inner.base_index).nprobe = int(params["nprobe"])


def exact_subset_max(n: int) -> int:
    """The largest filter (allowed ids) of an index of n vectors that is scored exactly rather than searched."""
    return max(2000, int(EXACT_SUBSET_FACTOR * math.sqrt(n)))


def search(
    index: faiss.Index, xq: np.ndarray, k: int, params: dict[str, Any], selector_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and ids (-1 where fewer than k) for each row of xq, optionally only among `selector_ids`.

    A filter that keeps few ids (`exact_subset_max`) is answered exactly over their decoded vectors; a wider one
    searches with efSearch / nprobe scaled up by the share of ids it removes, so about as many allowed candidates
    are seen.
    One query runs on one thread: FAISS splits work by query, so more threads only add wake-up latency (tens of
    ms on a loaded machine in `bench_scale`). OpenMP thread counts are per calling thread, so this is thread-safe.
    """
    xq = np.ascontiguousarray(xq.reshape(-1, index.d), dtype=np.float32)
    if len(xq) > 1:
        return _search(index, xq, k, params, selector_ids)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return _search(index, xq, k, params, selector_ids)
    finally:
        faiss.omp_set_num_threads(threads)


def _search(
    index: faiss.Index, xq: np.ndarray, k: int, params: dict[str, Any], selector_ids: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    kind = kind_of(index)
    fraction = 1.0
    sel: Any = None
    if selector_ids is not None:
        allowed = np.unique(np.asarray(selector_ids, dtype=np.int64))
        if kind != "flat" and len(allowed) <= exact_subset_max(index.ntotal):
            return _exact_subset(index, xq, k, allowed)
        fraction = len(allowed) / max(index.ntotal, 1)
        sel = faiss.IDSelectorBatch(allowed)
    if kind == "hnsw_sq8":
        sp: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        sp.efSearch = min(_EF_MAX, max(k, math.ceil(int(params["efSearch"]) / fraction)))
        sp.sel = sel
        return index.search(xq, k, params=sp)
    if kind == "ivf_pq_sq8":
        base: Any = faiss.SearchParametersIVF()
        base.nprobe = min(faiss.extract_index_ivf(index).nlist, math.ceil(int(params["nprobe"]) / fraction))
        # IndexIDMap2 translates only a top-level selector; the IVF below IndexRefine needs its own translation.
        id_map = index.id_map  # type: ignore[attr-defined]
        translated = faiss.IDSelectorTranslated(id_map, sel) if sel is not None else None
        base.sel = translated
        sp = faiss.IndexRefineSearchParameters()
        sp.k_factor = float(params["k_factor"])
        sp.base_index_params = base
        return index.search(xq, k, params=sp)
    sp = faiss.SearchParameters()
    sp.sel = sel
    return index.search(xq, k, params=sp if sel is not None else None)


def _exact_subset(index: faiss.Index, xq: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of the allowed ids' SQ8 codes, gathered into a small index of their own."""
    inner: Any = faiss.downcast_index(index.index)  # type: ignore[attr-defined]
    storage: Any = faiss.downcast_index(inner.storage if isinstance(inner, faiss.IndexHNSW) else inner.refine_index)
    positions = _positions(index)
    allowed = allowed[(allowed >= 0) & (allowed < len(positions))]
    allowed = allowed[positions[allowed] >= 0]  # ids the index does not hold cannot be found
    n, size = storage.ntotal, storage.code_size
    codes = faiss.rev_swig_ptr(storage.codes.data(), n * size).reshape(n, size)
    subset = faiss.IndexScalarQuantizer(index.d, _QT_8BIT, faiss.METRIC_INNER_PRODUCT)
    subset.sq = storage.sq
    subset.is_trained = True
    subset.add_sa_codes(np.ascontiguousarray(codes[positions[allowed]]))
    scores, found = subset.search(xq, k)
    return scores, np.where(found >= 0, np.append(allowed, -1)[found], -1)


_POSITIONS: weakref.WeakKeyDictionary[Any, tuple[int, np.ndarray]] = weakref.WeakKeyDictionary()


def _positions(index: Any) -> np.ndarray:
    """id -> position in the index, -1 where absent (ids are passage rows: dense), cached per index object."""
    n = index.ntotal
    cached = _POSITIONS.get(index)
    if cached is None or cached[0] != n:
        id_map = faiss.rev_swig_ptr(index.id_map.data(), n) if n else np.zeros(0, dtype=np.int64)
        positions = np.full(int(id_map.max(initial=-1)) + 1, -1, dtype=np.int64)
        positions[id_map] = np.arange(n)
        cached = _POSITIONS[index] = (n, positions)
    return cached[1]


def save_raw_f16(path: Path, xb: np.ndarray) -> None:
    """Write vectors as a float16 .npy, block by block (half the size of float32; enough to rebuild an index)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=xb.shape)
    for start in range(0, len(xb), _BLOCK):
        out[start : start + _BLOCK] = xb[start : start + _BLOCK]
    out.flush()
    del out


def load_raw_f16(path: Path) -> np.memmap[Any, np.dtype[np.float16]]:
    """The float16 vectors as a read-only memmap: pages load on demand, so a rebuild streams them."""
    raw = np.load(path, mmap_mode="r")
    if not isinstance(raw, np.memmap) or raw.dtype != np.float16 or raw.ndim != 2:
        raise IndexCorrupt(f"{path}: expected a 2-d float16 .npy array; rebuild the index")
    return raw
