"""Query speed: in-process and over HTTP (a real `search serve` process) at several concurrencies, and memory.

Every timed query is a distinct XQuAD question, so the service's LRU of query vectors never answers one (a repeated
query is timed apart, as such). A few other questions warm each process up first, untimed: the first calls of a
fresh process are slower.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from benchmarks.machine import rss_mb
from benchmarks.xquad import ALL_LANGS, load
from search.records import SearchQuery
from search.service import SearchService
from tools._server import running_server

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

T = TypeVar("T")


def distinct_questions() -> list[str]:
    """XQuAD questions of all languages, interleaved (en, then zh, ...), each text once."""
    per_lang = [[q.text for q in qs] for qs in load(ALL_LANGS).questions.values()]
    mixed = (q for group in zip_longest(*per_lang) for q in group if q is not None)
    return list(dict.fromkeys(mixed))


_KEYS = ("mean_ms", "p50_ms", "p95_ms", "p99_ms")


def percentiles(ms: Sequence[float]) -> dict[str, Any]:
    a = np.asarray(ms, dtype=np.float64)
    if not len(a):
        return {"n": 0}
    values = (a.mean(), *np.percentile(a, [50, 95, 99]))
    return {"n": len(a)} | {k: round(float(v), 2) for k, v in zip(_KEYS, values, strict=True)}


def timed(fn: Callable[[T], object], items: Sequence[T]) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1000)
    return out


def in_process(
    svc: SearchService, warm: Sequence[str], single: Sequence[str], batched: Sequence[str], batch: int
) -> dict[str, Any]:
    for q in warm:
        svc.search(SearchQuery(q, k=10))
    latencies = timed(lambda q: svc.search(SearchQuery(q, k=10)), single)
    repeated = timed(lambda q: svc.search(SearchQuery(q, k=10)), single[: max(1, len(single) // 4)])
    start = time.perf_counter()
    for i in range(0, len(batched), batch):
        svc.search_many([SearchQuery(q, k=10) for q in batched[i : i + batch]])
    batched_s = time.perf_counter() - start
    seq = percentiles(latencies)
    return {
        "one_by_one": seq | {"queries_per_s": round(1000 / seq["mean_ms"], 2)},
        "repeated_query_lru_hit": percentiles(repeated),
        "batched": {"batch": batch, "n": len(batched), "queries_per_s": round(len(batched) / batched_s, 2)},
    }


def raw_query_encode(
    model: SentenceTransformer, warm: Sequence[str], queries: Sequence[str], prompt: str
) -> dict[str, Any]:
    """sentence-transformers alone: one `encode` call per query, with the product's query prompt."""
    for q in warm:
        model.encode([q], prompt=prompt)
    return percentiles(timed(lambda q: model.encode([q], prompt=prompt, normalize_embeddings=True), queries))


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far, from /proc (Linux): contention barely changes CPU per query,
    while it can change wall time per query tenfold on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(
    url: str,
    queries: Sequence[str],
    clients: int,
    paired: Callable[[str], object] | None = None,
    pid: int | None = None,
) -> dict[str, Any]:
    """`clients` concurrent clients, each with its own connection, sending GET /search until the queries run out.

    The clients are tasks on one event loop (as in `tools/load.py`), not threads: on two cores shared with the
    server, sixteen client threads contending for this process's GIL cost the server measurable CPU.
    With `paired` (one client only), `paired(q)` runs and is timed just before each request: a baseline measured
    under the same load as the request, which on a shared machine can change by 10x within a minute.
    """
    import asyncio

    import httpx

    pending = iter(queries)
    latencies: list[float] = []
    errors: list[str] = []
    baseline: list[float] = []
    baseline_cpu: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        for q in pending:  # one shared iterator: each query goes to exactly one client
            if paired is not None:
                cpu = time.process_time()
                baseline.extend(timed(paired, [q]))
                baseline_cpu.append((time.process_time() - cpu) * 1000)
            start = time.perf_counter()
            r = await http.get("/search", params={"q": q, "k": 10})
            latencies.append((time.perf_counter() - start) * 1000)
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:200]}")

    async def run() -> float:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False, limits=limits) as http:
            start = time.perf_counter()
            await asyncio.gather(*(client(http) for _ in range(clients)))
            return time.perf_counter() - start

    cpu_before = cpu_seconds(pid) if pid is not None else 0.0
    wall = asyncio.run(run())
    server_cpu = cpu_seconds(pid) - cpu_before if pid is not None else None
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    out = {"clients": clients, **percentiles(latencies)}
    if server_cpu is not None:
        out["server_cpu_ms_per_query"] = round(server_cpu * 1000 / len(queries), 2)
    if paired is not None:
        out["paired_raw_encode"] = percentiles(baseline)
        out["paired_raw_encode_cpu_ms_per_query"] = round(sum(baseline_cpu) / max(1, len(baseline_cpu)), 2)
        out["wall_s_without_raw"] = round(wall - sum(baseline) / 1000, 2)
        wall -= sum(baseline) / 1000
    return out | {"queries_per_s": round(len(queries) / wall, 2)}


def first_question(questions: Sequence[str]) -> str:
    """A Chinese question: the lexical side of a first search in Chinese is what loaded lazily (jieba)."""
    return next((q for q in questions if any("\u4e00" <= c <= "\u9fff" for c in q)), questions[0])


def first_search(url: str, query: str) -> float:
    """Milliseconds of one GET /search, sent as soon as the server's /health has answered 200."""
    import httpx

    start = time.perf_counter()
    r = httpx.get(f"{url}/search", params={"q": query, "k": 10}, timeout=120, trust_env=False)
    ms = (time.perf_counter() - start) * 1000
    r.raise_for_status()
    return ms


def over_http(
    index_dir: Path,
    warm: Sequence[str],
    queries: Sequence[str],
    per_level: dict[int, int],
    port: int,
    log: Path,
    raw_encode: Callable[[str], object] | None = None,
    first: str | None = None,
) -> dict[str, Any]:
    """Each level of concurrency in turn against one server; at 1 client, `raw_encode(q)` alternates with requests.

    With `first`, that query is timed alone first, right after /health answered 200 (`running_server` yields
    then): a server is healthy only once a search takes as long as any other.
    """
    out: dict[str, Any] = {"levels": []}
    with running_server(index_dir, port=port, log_path=log) as served:
        url, pid = served.url, served.pid
        out["server_rss_mb_idle"] = rss_mb(pid)
        if first is not None:
            out["first_search_ms"] = round(first_search(url, first), 2)
        drive(url, warm, 1)
        used = 0
        for clients, n in per_level.items():
            level = drive(url, queries[used : used + n], clients, raw_encode if clients == 1 else None, pid)
            level["server_rss_mb"] = rss_mb(pid)
            out["levels"].append(level)
            used += n
        out["server_rss_mb_end"] = rss_mb(pid)
    return out


def targets(q: dict[str, Any]) -> dict[str, Any]:
    """Issue #3's two figures: HTTP p50 at 1 client over the raw encode p50, and the q/s of the most clients over 1."""
    levels = {level["clients"]: level for level in q["http"]["levels"]}
    out: dict[str, Any] = {}
    raw = q["raw_encode_one_query"].get("p50_ms")
    if 1 in levels and raw:
        out["http_p50_over_raw_encode"] = round(levels[1]["p50_ms"] / raw, 2)
    paired = levels.get(1, {}).get("paired_raw_encode", {}).get("p50_ms")
    if paired:
        out["http_p50_over_paired_raw_encode"] = round(levels[1]["p50_ms"] / paired, 2)
    raw_cpu = levels.get(1, {}).get("paired_raw_encode_cpu_ms_per_query")
    if raw_cpu and "server_cpu_ms_per_query" in levels[1]:
        out["server_cpu_over_raw_encode_cpu"] = round(levels[1]["server_cpu_ms_per_query"] / raw_cpu, 2)
    if len(levels) > 1 and all("server_cpu_ms_per_query" in v for v in levels.values()):
        most = max(levels)
        # On an idle machine throughput is about cores / CPU per query: the CPU-bound speed-up, free of contention.
        out["cpu_per_query_1_over_most_clients"] = round(
            levels[1]["server_cpu_ms_per_query"] / levels[most]["server_cpu_ms_per_query"], 2
        )
    if 1 in levels and "first_search_ms" in q["http"]:
        out["first_search_over_http_p50"] = round(q["http"]["first_search_ms"] / levels[1]["p50_ms"], 2)
    if 1 in levels and len(levels) > 1:
        most = max(levels)
        out["speedup_clients"] = most
        out["speedup_over_1_client"] = round(levels[most]["queries_per_s"] / levels[1]["queries_per_s"], 2)
    return out


def targets_markdown(t: dict[str, Any]) -> str:
    lines = []
    if "http_p50_over_raw_encode" in t:
        lines.append(f"HTTP p50 at 1 client / raw encode p50: **{t['http_p50_over_raw_encode']:.2f}** (target <= 1.3)")
    if "http_p50_over_paired_raw_encode" in t:
        lines.append(
            f"the same over a raw encode timed just before each request: **{t['http_p50_over_paired_raw_encode']:.2f}**"
        )
    if "first_search_over_http_p50" in t:
        lines.append(
            f"first search after /health 200 / HTTP p50 at 1 client: **{t['first_search_over_http_p50']:.2f}** "
            "(target <= 2)"
        )
    if "speedup_over_1_client" in t:
        most = t["speedup_clients"]
        lines.append(f"queries/s at {most} clients / at 1 client: **{t['speedup_over_1_client']:.2f}** (target >= 2)")
    if "server_cpu_over_raw_encode_cpu" in t:
        lines.append(f"server CPU per query at 1 client / raw encode CPU: {t['server_cpu_over_raw_encode_cpu']:.2f}")
    if "cpu_per_query_1_over_most_clients" in t:
        lines.append(
            f"server CPU per query at 1 client / at {t.get('speedup_clients')} clients: "
            f"{t['cpu_per_query_1_over_most_clients']:.2f}"
        )
    return "; ".join(lines) + "." if lines else ""
