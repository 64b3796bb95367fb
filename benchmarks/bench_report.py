"""Markdown tables of a bench run (`bench.json`)."""

from __future__ import annotations

from typing import Any

from benchmarks.eval_report import table
from benchmarks.machine import machine_markdown


def _ms(d: dict[str, Any]) -> list[str]:
    return [f"{d[k]:.1f}" if k in d else "" for k in ("p50_ms", "p95_ms", "p99_ms")]


def _qps(d: dict[str, Any]) -> str:
    return f"{d['queries_per_s']:.1f}" if "queries_per_s" in d else ""


def _rss(d: dict[str, Any] | None) -> str:
    return f"{d.get('VmRSS', 0):.0f} (peak {d.get('VmHWM', 0):.0f})" if d else ""


def indexing(ix: dict[str, Any]) -> str:
    rates = [
        [
            "pipeline end to end (read, chunk, language ID, embed, center, write)",
            f"{ix['pipeline_paragraphs_per_s']:.1f} paragraphs/s = {ix['pipeline_passages_per_s']:.1f} passages/s",
        ],
        ["its embed stage alone", f"{ix['embed_stage_passages_per_s']:.1f} passages/s"],
    ]
    stages = [[name, f"{secs:.2f}"] for name, secs in ix["stages"].items()]
    stages += [[f"of write: {k} (timed again, apart)", f"{v:.2f}"] for k, v in ix["substages"].items()]
    stages.append(["**total, end to end**", f"{ix['pipeline_seconds']:.2f}"])
    parts = [
        f"## Indexing: {ix['paragraphs']} XQuAD paragraphs in {ix['languages']} languages ({ix['passages']} passages)",
        table(["figure", "value"], rates),
        "Stages as the product's build reports them (`search index --json`), in seconds:",
        table(["stage", "seconds"], stages),
    ]
    if "alternating" in ix:
        parts.append(alternating(ix["alternating"]))
    return "\n\n".join(parts)


_METHOD = {
    "product": "the product's indexing path (`SearchService.build`: read, chunk, language ID, embed, center, write)",
    "raw": "raw sentence-transformers `encode` (same prompt and batch size)",
    "packed": "the product's embedder alone (packed forward pass)",
}


def alternating(alt: dict[str, Any]) -> str:
    rows = [
        [_METHOD[m], " / ".join(f"{x:.1f}" for x in alt["wall_seconds"][m]),
         " / ".join(f"{x:.1f}" for x in alt["cpu_seconds"][m]), f"{alt['passages_per_s'][m]:.1f}"]
        for m in alt["wall_seconds"]
    ]  # fmt: skip
    return "\n\n".join(
        [
            f"### Indexing against raw sentence-transformers: {alt['paragraphs']} paragraphs ({alt['passages']} "
            f"passages), {alt['rounds']} rounds alternating in one process",
            table(["method", "wall s per round", "process CPU s per round", "passages/s (median round)"], rows),
            f"Throughput ratios of the median rounds: **product / raw {alt['ratio_product_to_raw']:.3f}**, "
            f"packed pass / raw {alt['ratio_packed_to_raw']:.3f}, product / packed pass "
            f"{alt['ratio_product_to_packed']:.3f}; in process CPU time: product / raw "
            f"{alt['cpu_ratio_product_to_raw']:.3f}, packed / raw {alt['cpu_ratio_packed_to_raw']:.3f}.",
        ]
    )


def queries(q: dict[str, Any]) -> str:
    ip = q["in_process"]
    one, lru, raw = ip["one_by_one"], ip["repeated_query_lru_hit"], q["raw_encode_one_query"]
    rows = [
        ["in process, `search` one by one", str(one["n"]), *_ms(one), _qps(one), ""],
        ["in process, repeated query (LRU hit)", str(lru["n"]), *_ms(lru), "", ""],
        [f"in process, `search_many` in batches of {ip['batched']['batch']}", str(ip["batched"]["n"]), "", "", "",
         _qps(ip["batched"]), ""],
        ["raw sentence-transformers `encode`, one query", str(raw["n"]), *_ms(raw), "", ""],
    ]  # fmt: skip
    if "first_search_ms" in q["http"]:
        first = f"{q['http']['first_search_ms']:.1f}"
        rows.append(["HTTP GET /search, the first one, as soon as /health answers 200", "1", first, "", "", "", ""])
    for level in q["http"]["levels"]:
        label = f"HTTP GET /search, {level['clients']} concurrent client{'s' if level['clients'] > 1 else ''}"
        rows.append([label, str(level["n"]), *_ms(level), _qps(level), _rss(level["server_rss_mb"])])
    return "\n\n".join(
        [
            f"## Queries: {q['index_passages']} passages, distinct XQuAD questions in 12 languages, k=10",
            f"Server: `python -m search serve` in its own process on loopback; RSS after start "
            f"{_rss(q['http']['server_rss_mb_idle'])} MB. Benchmark process (product service and raw model): "
            f"{_rss(q['bench_process_rss_mb'])} MB.",
            table(["what", "n", "p50 ms", "p95 ms", "p99 ms", "queries/s", "server RSS MB"], rows),
        ]
    )


def vectors(vec: list[dict[str, Any]]) -> str:
    header = ["vectors", "index (search/index/vectors.py)", "build s (incl. training and tuning)", "one-by-one p50 ms",
              "p95 ms", "p99 ms", "batched ms/query", "batched queries/s", "bytes/vector (file)",
              "recall@10 vs exact, queries", "tuned on: recall@10"]  # fmt: skip
    rows = [
        [f"{v['vectors']:,}", v["index"], f"{v['build_s']:.2f}", *_ms(v["one_by_one"]),
         f"{v['batched']['ms_per_query']:.3f}", f"{v['batched']['queries_per_s']:.0f}",
         f"{v['bytes_per_vector']:.0f}", f"{v['recall_at_10']:.4f}",
         f"{v['tuned_on']}: {v['recall_at_10_tuning']}" if v.get("tuned_on") else ""]
        for v in vec
    ]  # fmt: skip
    if vec and vec[0].get("data") == "xquad":
        title = (
            "## Vector index alone: real XQuAD questions (en, zh, ru, de, es, ar) over XQuAD paragraphs enlarged "
            "with fillers of their own structure (`benchmarks/query_like.py`), k=10"
        )
    else:
        title = "## Vector index alone: seeded normalized 384-d float32 vectors, queries near database vectors, k=10"
    return "\n\n".join([title, table(header, rows)])


def render(r: dict[str, Any]) -> str:
    parts = ["# Speed, load and memory", machine_markdown(r["machine"]) + f" Whole run {r['seconds']} s."]
    if "indexing" in r:
        parts.append(indexing(r["indexing"]))
    if "queries" in r:
        parts.append(queries(r["queries"]))
    if "vectors" in r:
        parts.append(vectors(r["vectors"]))
    return "\n\n".join(parts) + "\n"
