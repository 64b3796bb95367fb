"""`python -m benchmarks.bench`: indexing speed, query latency and memory, and the vector index alone.

Figures, not pass/fail: every raw baseline (sentence-transformers on the same model folder, with the same prompts)
runs in the same process and run as the product figure it is compared with. `--quick` shrinks everything for the
smoke test.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_index import bench_indexing, raw_model
from benchmarks.bench_query import distinct_questions, in_process, over_http, raw_query_encode
from benchmarks.bench_report import render
from benchmarks.bench_vectors import bench_vectors
from benchmarks.machine import load_average, machine_info, rss_mb
from search.config import Settings

log = logging.getLogger("benchmarks.bench")


@dataclass(frozen=True)
class Plan:
    """How much of everything to run."""

    paragraphs_per_lang: int | None
    single_queries: int
    batched_queries: int
    http: dict[int, int]
    vector_sizes: tuple[int, ...]
    vector_queries: int
    vector_single: int


FULL = Plan(None, 200, 256, {1: 100, 4: 200, 16: 400}, (100_000, 1_000_000), 1000, 200)
QUICK = Plan(2, 8, 16, {1: 4, 4: 8, 16: 16}, (1_000, 10_000), 100, 20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(plan: Plan, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"machine": machine_info(), "plan": plan.__dict__ | {"http": plan.http}}
    log.info("indexing")
    raw = raw_model(Settings())
    indexing, svc = bench_indexing(out, plan.paragraphs_per_lang, raw)
    result["indexing"] = indexing
    questions = distinct_questions()
    single = questions[: plan.single_queries]
    rest = questions[plan.single_queries :]
    batched, rest = rest[: plan.batched_queries], rest[plan.batched_queries :]
    log.info("queries in process")
    prompt = getattr(svc.embedder, "query_prompt", "query: ")
    result["queries"] = {
        "index_passages": svc.store.size,
        "in_process": in_process(svc, single, batched, 64),
        "raw_encode_one_query": raw_query_encode(raw, single, prompt),
        "bench_process_rss_mb": rss_mb(),
    }
    log.info("queries over HTTP")
    result["queries"]["http"] = over_http(svc.settings.index_dir, rest, plan.http, free_port(), out / "server.log")
    del raw, svc
    log.info("vector index")
    result["vectors"] = bench_vectors(list(plan.vector_sizes), plan.vector_queries, plan.vector_single)
    result["machine"]["load_average_at_end"] = load_average()
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs, for the smoke test")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder [default: %(default)s]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(QUICK if args.quick else FULL, args.out)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    markdown = render(result)
    (args.out / "bench.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
