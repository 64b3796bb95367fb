"""`python -m benchmarks.bench`: indexing speed, query latency and memory, and the vector index alone.

Figures, not pass/fail: every raw baseline (sentence-transformers on the same model folder, with the same prompts)
runs in the same process and run as the product figure it is compared with. `--quick` shrinks everything for the
smoke test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.bench_index import alternating, bench_indexing, raw_model
from benchmarks.bench_query import (
    distinct_questions,
    first_question,
    in_process,
    over_http,
    raw_query_encode,
    targets,
    targets_markdown,
)
from benchmarks.bench_report import render
from benchmarks.bench_vectors import bench_vectors
from benchmarks.machine import load_average, machine_info, rss_mb
from search.config import Settings
from search.model.embedders import limit_threads
from search.service import SearchService
from tools._server import free_port

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
    alternating_paragraphs: int  # per language, 12 languages
    alternating_rounds: int
    vector_data: str  # benchmarks.bench_vectors: xquad (real questions) or uniform


WARM_UP = 12
# The vector index at 100k: 1M takes an hour of building on two cores (`python -m benchmarks.bench_scale`).
FULL = Plan(None, 200, 256, {1: 100, 4: 200, 16: 400}, (100_000,), 1000, 200, 20, 3, "xquad")
QUICK = Plan(1, 8, 16, {1: 4, 4: 8, 16: 16}, (1_000, 5_000), 100, 20, 1, 3, "uniform")
PARTS = ("index", "query", "vectors")


def run(
    plan: Plan,
    out: Path,
    parts: Sequence[str] = PARTS,
    kinds: list[str] | None = None,
    index_dir: Path | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    # The product's thread settings for this process too (and the server it starts): raw sentence-transformers is
    # then timed under the same OpenMP and torch settings as the product, not under faster or slower ones.
    settings = Settings()
    limit_threads(settings.threads, settings.interop_threads)
    result: dict[str, Any] = {"machine": machine_info(), "plan": plan.__dict__ | {"http": plan.http}}
    result["machine"]["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
    if index_dir is not None and "query" in parts:
        # Queries against an index built before (by an earlier bench run): no hour of indexing first.
        raw = raw_model(Settings())
        svc = SearchService(Settings(index_dir=index_dir))
        svc.load()
    elif "index" in parts or "query" in parts:
        log.info("indexing")
        raw = raw_model(Settings())
        indexing, svc = bench_indexing(out, plan.paragraphs_per_lang)
        result["indexing"] = indexing
        if "index" in parts:
            log.info("indexing, alternating with raw sentence-transformers and the packed pass")
            indexing["alternating"] = alternating(
                out, plan.alternating_paragraphs, plan.alternating_rounds, raw, loaded=svc
            )
    if "query" in parts:
        questions = distinct_questions()
        warm, questions = questions[:WARM_UP], questions[WARM_UP:]
        single = questions[: plan.single_queries]
        rest = questions[plan.single_queries :]
        batched, rest = rest[: plan.batched_queries], rest[plan.batched_queries :]
        first = first_question(rest)
        rest = [q for q in rest if q != first]
        log.info("queries in process")
        prompt = getattr(svc.embedder, "query_prompt", "query: ")
        result["queries"] = {
            "index_passages": svc.store.size,
            "in_process": in_process(svc, warm, single, batched, 64),
            "raw_encode_one_query": raw_query_encode(raw, warm, single, prompt),
            "bench_process_rss_mb": rss_mb(),
        }
        log.info("queries over HTTP")
        index_dir = svc.settings.index_dir
        result["queries"]["http"] = over_http(
            index_dir, warm, rest, plan.http, free_port(), out / "server.log",
            lambda q: raw.encode([q], prompt=prompt, normalize_embeddings=True), first,
        )  # fmt: skip
        result["queries"]["targets"] = targets(result["queries"])
    if "vectors" in parts:
        log.info("vector index")
        result["vectors"] = bench_vectors(
            list(plan.vector_sizes), plan.vector_queries, plan.vector_single, kinds,
            data=plan.vector_data, cache=out / "xquad-embeddings.sqlite",
        )  # fmt: skip
    result["machine"]["load_average_at_end"] = load_average()
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs, for the smoke test")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder [default: %(default)s]")
    parser.add_argument("--parts", default=",".join(PARTS), help="what to run [default: %(default)s]")
    parser.add_argument("--kinds", default=None, help="vector index kinds [default: all in search.index.vectors.KINDS]")
    parser.add_argument("--sizes", default=None, help="vector counts, e.g. 100000,1000000 [default: by plan]")
    parser.add_argument(
        "--index", type=Path, default=None, help="query an index built before (e.g. bench-results/index), no indexing"
    )
    parser.add_argument("--single", type=int, default=None, help="in-process one-by-one queries [default: by plan]")
    parser.add_argument("--batched", type=int, default=None, help="in-process batched queries [default: by plan]")
    parser.add_argument(
        "--http", default=None, help="clients:queries per HTTP level, e.g. 1:60,4:120,16:240 [default: by plan]"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.sizes:
        plan = replace(plan, vector_sizes=tuple(int(x) for x in args.sizes.split(",")))
    if args.single:
        plan = replace(plan, single_queries=args.single)
    if args.batched:
        plan = replace(plan, batched_queries=args.batched)
    if args.http:
        levels = (level.split(":") for level in args.http.split(","))
        plan = replace(plan, http={int(c): int(n) for c, n in levels})
    kinds = args.kinds.split(",") if args.kinds else None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(plan, args.out, args.parts.split(","), kinds, args.index)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    markdown = render(result)
    if result.get("queries", {}).get("targets"):
        markdown += "\n" + targets_markdown(result["queries"]["targets"]) + "\n"
    (args.out / "bench.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
