"""`python -m benchmarks.bench_scale`: the vector index kinds of `search/index/vectors.py` at scale, on seeded data.

For each data set, size and index kind: build seconds (wall and CPU), bytes per vector (serialized), recall@10
against exact search on held-out queries, one query's latency one by one (one thread and default threads; wall and
thread CPU time, which other load on the machine inflates less), batched throughput, and filtered searches (10% and
1% of the rows allowed). Also the flat-vs-approximate crossover: one flat query's latency as the index grows.

Data: `xquad` (the main case, the default) is real: XQuAD questions over XQuAD paragraphs in six languages, through
the product's model and centering, enlarged to the size with fillers of the paragraphs' own structure
(`benchmarks/query_like.py`). Each index is tuned as `search index` tunes it, on query-prompted build probes, and
again as before on passages held out of the index; recall@10 is measured on the real questions for both.
`clustered` is a seeded gaussian mixture: 2000 unit centers with Zipf-like weights, plus anisotropic noise (a random
rotation of a power-law spectrum, ~26 effective dimensions) as large as the center, normalized; its queries are held
out points of the same mixture, so passage-like, not query-like. `uniform` (normalized gaussian vectors, queries
next to database vectors) has no structure and is the worst case for approximate search.

Prints markdown and writes JSON to `bench-results/scale.json`. `--quick` is a smoke test on 10k vectors.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.bench_vectors import normalized, queries_near
from benchmarks.machine import load_average, machine_info, machine_markdown
from benchmarks.query_like import LANGS, RealVectors, enlarged, real_vectors
from search.index import vectors as vi

log = logging.getLogger("benchmarks.bench_scale")

DIM = 384
K = 10
SLO_MS = 3.0


def clustered(rng: np.random.Generator, n: int, d: int = DIM, centers: int = 2000, block: int = 100_000) -> np.ndarray:
    c = normalized(rng, centers, d)
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spectrum = np.arange(1, d + 1) ** -0.5
    basis = ((rotation * spectrum).T / np.sqrt((spectrum**2).sum())).astype(np.float32)
    weights = np.minimum(rng.zipf(1.3, centers), 50).astype(np.float64)
    weights /= weights.sum()
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, block):
        m = min(block, n - start)
        x = c[rng.choice(centers, size=m, p=weights)] + rng.standard_normal((m, d), dtype=np.float32) @ basis
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def dataset(
    name: str, n: int, nq: int, seed: int = 0, real: RealVectors | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Database vectors, queries (never in the index) and the build probes to tune on (None: held-out rows)."""
    rng = np.random.default_rng(seed)
    if name == "xquad":
        assert real is not None
        xb, probes = enlarged(real, n, seed)
        return xb, real.questions, probes
    if name == "clustered":
        x = clustered(rng, n + nq)
        return x[:n], x[n:], None
    xb = normalized(rng, n, DIM)
    return xb, queries_near(rng, xb, nq), None


def _pcts(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


def one_by_one(run: Callable[[np.ndarray], Any], xq: np.ndarray, threads: int | None) -> dict[str, Any]:
    """Latency of single queries; `threads` None keeps FAISS's default thread count."""
    default = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads or default)
    try:
        run(xq[:1])
        wall, cpu = [], []
        for row in xq:
            t, c = time.perf_counter(), time.thread_time()
            run(row.reshape(1, -1))
            cpu.append((time.thread_time() - c) * 1000)
            wall.append((time.perf_counter() - t) * 1000)
    finally:
        faiss.omp_set_num_threads(default)
    return {"threads": threads or default, "n": len(xq), "wall_ms": _pcts(wall), "cpu_ms": _pcts(cpu)}


def crossover(sizes: list[int], single: int) -> list[dict[str, Any]]:
    """One flat query's latency as the index grows: where exact search stops fitting in a few milliseconds."""
    out = []
    for n in sizes:
        xb, xq, _ = dataset("clustered", n, single)
        index = faiss.IndexFlatIP(DIM)
        index.add(xb)
        row: dict[str, Any] = {"vectors": n}
        for name, threads in (("one_thread", 1), ("default_threads", None)):
            row[name] = one_by_one(lambda q: index.search(q, K), xq, threads)  # noqa: B023 (called at once)
        out.append(row)
        log.info("crossover %s", row)
    return out


def filtered(built: vi.BuiltIndex, xb: np.ndarray, xq: np.ndarray, share: float, seed: int = 1) -> dict[str, Any]:
    """Recall@10 and one-thread latency when only `share` of the rows (at random) are allowed."""
    rng = np.random.default_rng(seed)
    allowed = np.sort(rng.choice(len(xb), size=max(K, int(share * len(xb))), replace=False))
    skip = np.ones(len(xb), dtype=bool)
    skip[allowed] = False
    _, truth = vi.exact_knn(xq, xb, K, skip=skip)
    _, found = vi.search(built.index, xq, K, built.params, allowed)
    timing = one_by_one(lambda q: vi.search(built.index, q, K, built.params, allowed), xq, 1)
    only_allowed = bool(np.isin(found[found >= 0], allowed).all())
    return {"share": share, "allowed": len(allowed), "recall_at_10": round(vi.recall_at_k(found, truth, K), 4)} | {
        "only_allowed": only_allowed,
        "one_thread": timing,
    }


def on_passages(kind: str, xb: np.ndarray, xq: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """The same kind tuned as builds did before the probes, on passages held out, measured on the queries."""
    built = vi.build_vector_index(xb, np.arange(len(xb), dtype=np.int64), vi.default_plan(kind, len(xb), DIM))
    _, found = vi.search(built.index, xq, K, built.params)
    tuned = {k: v for k, v in built.params.items() if k in ("efSearch", "nprobe")}
    return {
        "params": tuned,
        "recall_at_10_tuning": built.recall_at_10,
        "recall_at_10": round(vi.recall_at_k(found, truth), 4),
    }


def bench_kind(
    kind: str,
    xb: np.ndarray,
    xq: np.ndarray,
    truth: np.ndarray,
    single: int,
    probes: np.ndarray | None = None,
    compare: bool = True,
) -> dict[str, Any]:
    n = len(xb)
    load_before = load_average()
    cpu = time.process_time()
    built = vi.build_vector_index(
        xb, np.arange(n, dtype=np.int64), vi.default_plan(kind, n, DIM), xq_tune=probes, tuned_on="build probes"
    )
    build_cpu = time.process_time() - cpu
    log.info("%s at %d built in %.1f s: %s", kind, n, built.build_seconds, built.params)
    start = time.perf_counter()
    _, found = vi.search(built.index, xq, K, built.params)
    batched = time.perf_counter() - start

    def one(q: np.ndarray) -> Any:
        return vi.search(built.index, q, K, built.params)

    result = {
        "index": kind,
        "vectors": n,
        "params": built.params,
        "build_s": round(built.build_seconds, 1),
        "build_cpu_s": round(build_cpu, 1),
        "bytes_per_vector": round(built.bytes_per_vector, 1),
        "recall_at_10_tuning": built.recall_at_10,
        "tuned_on": built.tuned_on,
        "recall_at_10": round(vi.recall_at_k(found, truth, K), 4),
        "one_thread": one_by_one(one, xq[:single], 1),
        # `vi.search` runs one query on one thread; plain `index.search` shows what FAISS's default threads give.
        "default_threads": one_by_one(lambda q: built.index.search(q, K), xq[:single], None),
        "batched": {"n": len(xq), "ms_per_query": round(batched * 1000 / len(xq), 3), "qps": round(len(xq) / batched)},
        "filtered": [filtered(built, xb, xq[:single], share) for share in (0.1, 0.01)],
        "load_average": {"before": load_before, "after": load_average()},
    }
    if compare and probes is not None and kind != "flat":
        result["tuned_on_passages"] = on_passages(kind, xb, xq, truth)
    log.info("%s", result)
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [machine_markdown(result["machine"]), "", "### Flat search, one query (crossover)", ""]
    lines += [
        "| vectors | 1 thread p50 / p95 ms | 1 thread CPU p50 ms | default threads p50 / p95 ms |",
        "|---|---|---|---|",
    ]
    for row in result["crossover"]:
        one, dflt = row["one_thread"], row["default_threads"]
        lines.append(
            f"| {row['vectors']:,} | {one['wall_ms']['p50']} / {one['wall_ms']['p95']} | {one['cpu_ms']['p50']} "
            f"| {dflt['wall_ms']['p50']} / {dflt['wall_ms']['p95']} |"
        )
    lines += ["", f"Crossover (first size whose flat one-thread p50 > {SLO_MS} ms): {result['crossover_at']}", ""]
    lines += [
        "Recall@10 against exact search: *tune* on the queries the index was tuned on (build probes for xquad, "
        "held-out rows otherwise), *queries* on the benchmark's queries (real XQuAD questions for xquad); the last "
        "column is the same kind tuned on held-out passages instead, as builds did before the probes.",
        "",
        "| data | vectors | index | tuned params | build s (CPU s) | B/vector | recall@10 tune / queries "
        "| 1 thread p50 / p95 ms (CPU p50) | default threads (index.search) p50 / p95 ms | batched ms/q (q/s) "
        "| 10% filter recall, p50 ms | 1% filter recall, p50 ms "
        "| tuned on passages: params, recall@10 tune / queries |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        tuned = {k: v for k, v in r["params"].items() if k in ("efSearch", "nprobe", "k_factor", "M", "nlist")}
        one, dflt, b = r["one_thread"], r["default_threads"], r["batched"]
        filt = [f"{f['recall_at_10']}, {f['one_thread']['wall_ms']['p50']}" for f in r["filtered"]]
        old = r.get("tuned_on_passages")
        before = f"{old['params']}, {old['recall_at_10_tuning']} / {old['recall_at_10']}" if old else ""
        lines.append(
            f"| {r['data']} | {r['vectors']:,} | {r['index']} | {tuned} | {r['build_s']} ({r['build_cpu_s']}) "
            f"| {r['bytes_per_vector']} | {r['recall_at_10_tuning']} / {r['recall_at_10']} "
            f"| {one['wall_ms']['p50']} / {one['wall_ms']['p95']} ({one['cpu_ms']['p50']}) "
            f"| {dflt['wall_ms']['p50']} / {dflt['wall_ms']['p95']} | {b['ms_per_query']} ({b['qps']}) "
            f"| {filt[0]} | {filt[1]} | {before} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated database sizes")
    parser.add_argument("--kinds", default=",".join(vi.KINDS), help="comma-separated index kinds")
    parser.add_argument("--data", default="xquad", help="comma-separated: xquad, clustered, uniform")
    parser.add_argument("--langs", default=",".join(LANGS), help="XQuAD languages of the xquad data")
    parser.add_argument(
        "--cache", type=Path, default=Path("bench-results/xquad-embeddings.sqlite"), help="embedding cache (xquad)"
    )
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries for recall and batching")
    parser.add_argument(
        "--compare", action=argparse.BooleanOptionalAction, default=True,
        help="xquad: also build each approximate kind tuned on held-out passages [default: on]",
    )  # fmt: skip
    parser.add_argument("--single", type=int, default=200, help="queries timed one by one")
    parser.add_argument("--flat-single", type=int, default=50, help="queries timed one by one on the flat index")
    parser.add_argument("--crossover", default="5000,10000,20000,50000,100000,200000", help='flat sizes; "": none')
    parser.add_argument("--quick", action="store_true", help="10k vectors, fewer queries: a smoke test")
    parser.add_argument("--out", type=Path, default=Path("bench-results/scale.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        args.sizes, args.queries, args.single, args.crossover = "10000", 200, 50, "1000,5000,10000"
    result: dict[str, Any] = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}}
    result["crossover"] = crossover([int(s) for s in args.crossover.split(",") if s], args.single)
    slow = [r["vectors"] for r in result["crossover"] if r["one_thread"]["wall_ms"]["p50"] > SLO_MS]
    result["crossover_at"] = slow[0] if slow else None
    result["runs"] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    datasets = args.data.split(",")
    real = real_vectors(tuple(args.langs.split(",")), args.queries, args.cache) if "xquad" in datasets else None
    for data in datasets:
        for n in (int(s) for s in args.sizes.split(",")):
            xb, xq, probes = dataset(data, n, args.queries, real=real)
            _, truth = vi.exact_knn(xq, xb, K)
            for kind in args.kinds.split(","):
                # Exact search at 1M costs ~0.2 s a query: time fewer of them (its recall is 1 by construction).
                single = min(args.single, args.flat_single) if kind == "flat" else args.single
                run = bench_kind(kind, xb, xq, truth, single, probes, args.compare)
                result["runs"].append({"data": data, **run})
                args.out.write_text(json.dumps(result, indent=2))
            del xb
    result["machine"]["load_average_at_end"] = load_average()
    args.out.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
