"""The cost of Ray as the engine, on this machine: passages/s of a local build against `--ray` with 1 and 2 embedding
actors on the same cores, and a report's kNN stage local against Ray tasks.

    python -m benchmarks.bench_cluster [--paragraphs 60] [--knn-n 40000] [--cpus 2] [--out bench-results/]

Each build embeds XQuAD paragraphs (en, zh, ru, de, es, ar) into a fresh index folder (so no vector comes from the
cache); passages/s is the build's `embed` stage: for Ray it includes the actors' start and model load, which a
long build pays once. The Ray runs use a local Ray limited to `--cpus` CPUs, the cores the local build uses too
(SEARCH_THREADS): 1 actor with that many threads, or that many actors of one thread. The kNN compares
`compute.knn_by_lang` with `distributed.knn_on_ray` (query blocks as tasks, one CPU each) on seeded random unit
vectors in two languages. Writes bench-results/cluster.json and cluster.md and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import load_average, machine_info, machine_markdown
from benchmarks.xquad import EVAL_LANGS, load, write_jsonl
from search.config import Settings
from search.reports.compute import knn_by_lang
from search.reports.distributed import knn_on_ray
from search.service import SearchService


def _build(corpus: Path, folder: Path, settings: Settings, service: SearchService) -> dict[str, Any]:
    svc = SearchService(settings.model_copy(update={"index_dir": folder}), service.embedder, service.detector)
    summary = svc.build([corpus])
    embed = summary.stages["embed"]
    return {
        "passages": summary.embedded,
        "embed_s": round(embed, 2),
        "passages_per_s": round(summary.embedded / embed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=60, help="XQuAD paragraphs per language")
    parser.add_argument("--knn-n", type=int, default=40_000, help="vectors in the kNN comparison")
    parser.add_argument("--cpus", type=int, default=2, help="cores for each side (local threads, Ray CPUs)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import ray

    start = time.perf_counter()
    loads = [load_average()]
    settings = Settings(threads=args.cpus)
    local = SearchService(settings)
    t = time.perf_counter()
    local.embedder  # noqa: B018 - loaded before any clock starts
    model_load = round(time.perf_counter() - t, 1)  # what each Ray actor pays again inside its embed stage
    xq = load(EVAL_LANGS, limit=args.paragraphs)
    results: dict[str, Any] = {
        "machine": machine_info(), "cpus": args.cpus, "model_load_s": model_load, "builds": {}, "knn": {}
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_jsonl([p for lang in EVAL_LANGS for p in xq.paragraphs[lang]], Path(tmp) / "xq.jsonl")
        results["builds"]["local"] = _build(corpus, Path(tmp) / "local", settings, local)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            for actors in (1, args.cpus):
                on_ray = settings.model_copy(
                    update={"ray_address": "auto", "ray_concurrency": actors, "ray_threads": args.cpus // actors}
                )
                results["builds"][f"ray, {actors} actor(s)"] = _build(corpus, Path(tmp) / f"ray{actors}", on_ray, local)
                loads.append(load_average())
            rng = np.random.default_rng(0)
            x = rng.standard_normal((args.knn_n, 384)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            lang = np.repeat(np.arange(2), [args.knn_n // 2, args.knn_n - args.knn_n // 2])
            group = np.arange(args.knn_n) // 4
            t = time.perf_counter()
            a = knn_by_lang(x, lang, 2, group, 10)
            results["knn"]["local"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            b = knn_on_ray("auto", x, lang, 2, group, 10)
            results["knn"]["ray"] = round(time.perf_counter() - t, 2)
            # Not bit-equal: a task's one BLAS thread sums in another order than the driver's two, which swaps
            # neighbours whose scores tie to the last bits (random vectors have many near ties).
            results["knn"]["same_ids_share"] = round(float(np.mean(a.ids == b.ids)), 5)
            results["knn"]["max_score_diff"] = float(np.max(np.abs(a.scores - b.scores)))
        finally:
            ray.shutdown()
    loads.append(load_average())
    results["load_average"] = loads
    results["seconds"] = round(time.perf_counter() - start, 1)
    base = results["builds"]["local"]["passages_per_s"]
    rows = [
        f"| {name} | {r['passages']} | {r['embed_s']} | {r['passages_per_s']} | {r['passages_per_s'] / base:.2f}x |"
        for name, r in results["builds"].items()
    ]
    md = "\n".join(
        [
            "# Ray as the engine: build and report on this machine",
            machine_markdown(results["machine"]) + f" Load average during the run: {loads}.",
            "",
            f"Builds ({args.cpus} cores each side; `embed` stage, Ray's including actor start and model load, which "
            f"took {model_load} s in this process):",
            "",
            "| build | passages | embed s | passages/s | vs local |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Report kNN, {args.knn_n} vectors x 384, 2 languages, k=10: local {results['knn']['local']} s, Ray "
            f"{results['knn']['ray']} s (same neighbour at {results['knn']['same_ids_share']:.2%} of the slots, "
            f"scores within {results['knn']['max_score_diff']:.1e}).",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (args.out / "cluster.md").write_text(md + "\n", encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
