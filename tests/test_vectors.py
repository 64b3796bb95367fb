"""The vector index kinds (`search/index/vectors.py`) on small seeded data: recall against exact search, ids, filters,
persistence, plans."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from search.errors import BadInput, IndexCorrupt
from search.index import vectors as vi

N, DIM, NQ, K = 6000, 96, 200, 10
APPROXIMATE = [kind for kind in vi.KINDS if kind != "flat"]


def clustered(rng: np.random.Generator, n: int, d: int = DIM, centers: int = 60) -> np.ndarray:
    """Normalized points around seeded centers, as real embeddings cluster (not uniform noise)."""
    c = rng.standard_normal((centers, d)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] / np.sqrt(d) * 2 + rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = clustered(np.random.default_rng(0), N + NQ)
    xb, xq = x[:N], x[N:]
    return xb, xq, np.arange(N, dtype=np.int64) * 7 + 3  # ids that are not the row numbers


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, vi.BuiltIndex]:
    xb, _, ids = data
    return {kind: vi.build_vector_index(xb, ids, vi.default_plan(kind, N, DIM), seed=0) for kind in vi.KINDS}


def exact_ids(xb: np.ndarray, xq: np.ndarray, ids: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    skip = None if allowed is None else ~np.isin(ids, allowed)
    _, rows = vi.exact_knn(xq, xb, K, skip=skip)
    return ids[rows]


@pytest.mark.parametrize("kind", APPROXIMATE)
def test_each_kind_is_tuned_to_the_target_recall_on_unseen_queries(
    kind: str, data: tuple[np.ndarray, np.ndarray, np.ndarray], built: dict[str, vi.BuiltIndex]
) -> None:
    xb, xq, ids = data
    b = built[kind]
    assert b.kind == kind and b.tune_queries > 0
    assert b.recall_at_10 is not None and b.recall_at_10 >= 0.95
    assert {"efSearch"} <= b.params.keys() if kind == "hnsw_sq8" else {"nprobe", "k_factor"} <= b.params.keys()
    _, found = vi.search(b.index, xq, K, b.params)
    # The tuning queries were held out rows; these are new points: allow the sampling noise of 200 queries.
    assert vi.recall_at_k(found, exact_ids(xb, xq, ids), K) >= 0.93
    assert b.index.ntotal == N and 0 < b.bytes_per_vector < 4 * DIM


def test_flat_is_exact(data: tuple[np.ndarray, np.ndarray, np.ndarray], built: dict[str, vi.BuiltIndex]) -> None:
    xb, xq, ids = data
    b = built["flat"]
    scores, found = vi.search(b.index, xq, K, b.params)
    np.testing.assert_array_equal(found, exact_ids(xb, xq, ids))
    assert b.recall_at_10 == 1.0 and np.all(np.diff(scores, axis=1) <= 1e-6)


@pytest.mark.parametrize("kind", vi.KINDS)
def test_ids_map_back_to_rows(
    kind: str, data: tuple[np.ndarray, np.ndarray, np.ndarray], built: dict[str, vi.BuiltIndex]
) -> None:
    xb, _, ids = data
    rows = np.array([0, 17, 999, N - 1])
    _, found = vi.search(built[kind].index, xb[rows], K, built[kind].params)
    np.testing.assert_array_equal(found[:, 0], ids[rows])  # a stored vector is its own best match
    one_score, one = vi.search(built[kind].index, xb[rows[1]], K, built[kind].params)  # a single 1-d query
    assert one.shape == (1, K) and one[0, 0] == ids[rows[1]] and one_score[0, 0] == pytest.approx(1, abs=0.02)


@pytest.mark.parametrize("kind", vi.KINDS)
@pytest.mark.parametrize("share", [0.005, 0.8])  # one article (exact path), most languages (scaled search)
def test_filters_return_only_allowed_ids(
    kind: str, share: float, data: tuple[np.ndarray, np.ndarray, np.ndarray], built: dict[str, vi.BuiltIndex]
) -> None:
    xb, xq, ids = data
    rng = np.random.default_rng(1)
    allowed = rng.choice(ids, size=int(share * N), replace=False)
    assert (len(allowed) <= vi.exact_subset_max(N)) == (share < 0.5)  # both paths are exercised
    _, found = vi.search(built[kind].index, xq[:50], K, built[kind].params, selector_ids=allowed)
    assert np.isin(found[found >= 0], allowed).all()
    assert (found >= 0).all()
    assert vi.recall_at_k(found, exact_ids(xb, xq[:50], ids, allowed), K) >= 0.9
    _, none = vi.search(built[kind].index, xq[:2], K, built[kind].params, selector_ids=np.array([], dtype=np.int64))
    assert (none == -1).all()


@pytest.mark.parametrize("kind", vi.KINDS)
def test_params_survive_write_and_read(
    kind: str, tmp_path: Path, data: tuple[np.ndarray, np.ndarray, np.ndarray], built: dict[str, vi.BuiltIndex]
) -> None:
    _, xq, _ = data
    b = built[kind]
    faiss.write_index(b.index, str(tmp_path / "vectors.faiss"))
    loaded = faiss.read_index(str(tmp_path / "vectors.faiss"))
    vi.set_search_params(loaded, b.params)
    assert vi.kind_of(loaded) == kind
    before = vi.search(b.index, xq, K, b.params)
    after = vi.search(loaded, xq, K, b.params)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], rtol=1e-5)
    plain = loaded.search(xq, K)  # the tuned parameters are on the index too, for callers of index.search
    np.testing.assert_array_equal(plain[1], after[1])


def test_raw_vectors_roundtrip_through_float16_and_rebuild(tmp_path: Path) -> None:
    xb = clustered(np.random.default_rng(2), 3000)
    vi.save_raw_f16(tmp_path / "raw.npy", xb)
    raw = vi.load_raw_f16(tmp_path / "raw.npy")
    assert isinstance(raw, np.memmap) and raw.dtype == np.float16 and raw.shape == xb.shape
    assert float(np.abs(raw.astype(np.float32) - xb).max()) < 1e-3
    b = vi.build_vector_index(raw, np.arange(len(raw)), vi.default_plan("hnsw_sq8", len(raw), DIM))
    assert b.index.ntotal == len(xb) and b.recall_at_10 is not None and b.recall_at_10 >= 0.95
    np.save(tmp_path / "f32.npy", xb)
    with pytest.raises(IndexCorrupt, match="float16"):
        vi.load_raw_f16(tmp_path / "f32.npy")


def test_plan_is_flat_below_the_crossover_and_approximate_above() -> None:
    assert vi.plan_index(1000, 384).kind == "flat"
    assert vi.plan_index(vi.FLAT_MAX, 384).kind == "flat"
    assert vi.plan_index(vi.FLAT_MAX + 1, 384).kind == "hnsw_sq8"
    assert vi.plan_index(5000, 384, flat_max=1000).kind == "hnsw_sq8"
    assert vi.plan_index(vi.APPROX_MIN - 1, 384, memory_budget_bytes=1, flat_max=0).kind == "flat"  # too few to tune
    assert vi.plan_index(vi.IVF_MIN, 384).kind == "ivf_pq_sq8"
    n = 1_000_000
    assert vi.plan_index(n, 384).kind == "ivf_pq_sq8"
    assert vi.estimated_bytes_per_vector(vi.default_plan("hnsw_sq8", n, 384), 384, n) <= 700
    assert vi.estimated_bytes_per_vector(vi.plan_index(n, 384), 384, n) <= 520
    assert vi.plan_index(100_000, 384, memory_budget_bytes=600 * 100_000).kind == "ivf_pq_sq8"  # hnsw won't fit
    assert vi.plan_index(1000, 384, memory_budget_bytes=1000 * 1000).kind == "hnsw_sq8"  # flat would not fit
    with pytest.raises(BadInput, match="raise the memory budget"):
        vi.plan_index(n, 384, memory_budget_bytes=100 * n)


def test_describe_is_what_the_manifest_records(built: dict[str, vi.BuiltIndex]) -> None:
    d = built["hnsw_sq8"].describe()
    assert d["kind"] == "hnsw_sq8" and d["metric"] == "inner_product" and d["exact"] is False
    assert d["type"] == "IndexIDMap2(IndexHNSWSQ(QT_8bit))"
    assert d["params"]["efSearch"] >= 16 and d["recall_at_10"] >= 0.95 and d["target_recall"] == 0.95
    assert d["tuned_on"] == "passages held out of the index" and built["flat"].describe()["tuned_on"] is None


def displaced(rng: np.random.Generator, xb: np.ndarray, n: int, offset: np.ndarray) -> np.ndarray:
    """Query-like vectors: next to database rows, but all moved the same way (as the `query: ` prompt moves real
    queries) and farther from their row than rows are from each other."""
    x = xb[rng.choice(len(xb), size=n, replace=False)] + offset + rng.standard_normal((n, DIM)) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_tuning_on_query_like_probes_reaches_the_target_where_passages_would_not(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    xb, _, ids = data
    rng = np.random.default_rng(1)
    offset = rng.standard_normal(DIM)
    offset /= np.linalg.norm(offset)
    probes, unseen = displaced(rng, xb, 1000, offset), displaced(rng, xb, 1000, offset)
    plan = vi.default_plan("hnsw_sq8", N, DIM)
    truth = exact_ids(xb, unseen, ids)

    on_passages = vi.build_vector_index(xb, ids, plan, seed=0)
    on_probes = vi.build_vector_index(xb, ids, plan, seed=0, xq_tune=probes, tuned_on="test probes")

    # The setting: held-out passages say the target is met, while queries like these find much less.
    assert on_passages.recall_at_10 is not None and on_passages.recall_at_10 >= 0.95
    assert vi.recall_at_k(vi.search(on_passages.index, unseen, K, on_passages.params)[1], truth) < 0.92
    # Tuned on the probes, the index widens its search until the probes reach the target, and other queries drawn
    # the same way do too (within the sampling noise of 1000 queries).
    assert on_probes.params["efSearch"] > on_passages.params["efSearch"]
    assert on_probes.recall_at_10 is not None and on_probes.recall_at_10 >= 0.95
    assert on_probes.tune_queries == 1000 and on_probes.describe()["tuned_on"] == "test probes"
    assert vi.recall_at_k(vi.search(on_probes.index, unseen, K, on_probes.params)[1], truth) >= 0.94
    assert on_probes.index.ntotal == N  # probes are not added to the index
