"""A report's kNN stage on Ray: the query rows split into blocks, each searched by a Ray task against every
language's vectors, put together in row order: the same `Neighbours` as `compute.knn_by_lang`.

The vectors go through Ray's object store (`ray.put`, once), not a path every node reads: they are the selection's
centered vectors, computed on the driver from the index's float16 raw vectors (centered, filtered by --articles and
--langs, ordered by language), so they exist on no disk, and an index folder is on the driver's disk, which other
nodes need not see. A node fetches the object once and every task on it reads it in place (a read-only numpy view
of shared memory). That holds 1.5 GB per million passages (384 float32): fine for a report's archive, while a
billion would need the shared-path design (docs/scaling.md).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from search.errors import ClusterUnavailable
from search.index.cluster import connect
from search.index.translations import LangTable, Neighbours, knn_block, lang_tables
from search.timing import Progress, no_progress

# A language's table as shipped: (language code, its rows, neighbours asked for, serialized IVF index or None).
_Spec = tuple[int, np.ndarray, int, np.ndarray | None]


def _tables(x: np.ndarray, specs: list[_Spec]) -> list[LangTable]:
    tables = []
    for li, rows, kk, blob in specs:
        if blob is not None:
            tables.append(LangTable(li, rows, kk, None, faiss.deserialize_index(blob)))
            continue
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        tables.append(LangTable(li, rows, kk, x[rows[0] : rows[-1] + 1] if contiguous else x[rows]))
    return tables


def _search_block(
    x: np.ndarray,
    group: np.ndarray,
    specs: list[_Spec],
    n_langs: int,
    k: int,
    start: int,
    stop: int,
    exclude_group: bool,
) -> tuple[int, np.ndarray, np.ndarray]:
    """On a worker: one query block's neighbours (`x` and `group` are the object store's shared copies)."""
    ids, scores = knn_block(x, group, _tables(x, specs), n_langs, k, start, stop, exclude_group)
    return start, ids, scores


def knn_on_ray(
    address: str,
    x: np.ndarray,
    lang: np.ndarray,
    n_langs: int,
    group: np.ndarray,
    k: int,
    batch: int = 2048,
    exclude_group: bool = True,
    approximate: bool = False,
    progress: Progress = no_progress,
) -> Neighbours:
    """`compute.knn_by_lang` with its query blocks run as Ray tasks on the cluster at `address`."""
    ray = connect(address)
    n = len(x)
    # Planned on the driver: an approximate report's IVF indexes are trained once, and their recall measured here.
    tables, recall = lang_tables(x, lang, n_langs, group, k, exclude_group, approximate)
    specs: list[_Spec] = [
        (t.li, t.rows, t.kk, None if t.index is None else faiss.serialize_index(t.index)) for t in tables
    ]
    x_ref, group_ref, specs_ref = ray.put(np.ascontiguousarray(x)), ray.put(group), ray.put(specs)
    remote: Any = ray.remote(num_cpus=1, max_retries=3)(_search_block)
    pending = [
        remote.remote(x_ref, group_ref, specs_ref, n_langs, k, s, min(s + batch, n), exclude_group)
        for s in range(0, n, batch)
    ]
    ids = np.full((n, n_langs, k), -1, dtype=np.int64)
    scores = np.full((n, n_langs, k), -np.inf, dtype=np.float32)
    done = 0
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            start, block_ids, block_scores = ray.get(ready[0])
            ids[start : start + len(block_ids)], scores[start : start + len(block_ids)] = block_ids, block_scores
            done += len(block_ids)
            progress("knn", done, n)
    except ray.exceptions.RayError as exc:
        raise ClusterUnavailable(
            f"the report's kNN on Ray failed: {str(exc).strip().splitlines()[0]}; run it without --ray"
        ) from None
    return Neighbours(ids, scores, recall)
