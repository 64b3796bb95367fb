"""`python -m benchmarks.bench_precision`: the encoder's precision profiles (fp32, bf16, int8, int8-bf16) side by side.

All profiles run the packed forward pass in one process, taking turns on the same XQuAD paragraphs and questions
(so load from other work on a shared machine falls on all of them alike): passages/s over the whole set (encoded
as a build encodes them), one question per call (p50), eight questions per call (p50), the RSS each profile's
embedder added when it loaded, and the cosine of each profile's vectors to fp32's on short texts (questions), long
ones (paragraphs), mixed-language ones and texts over the model's window. `--ndcg` also runs `benchmarks.eval`
(dense, every task) once per profile and compares each task's nDCG@10 with fp32's. `--sensitivity` quantizes one
dense layer at a time and prints the cosine to fp32: how INT8_KEEP in search/model/precision.py was chosen.
`--runtimes` adds rows for candidates outside torch (benchmarks.precision_runtimes: ONNX Runtime int8 with or
without INT8_KEEP, OpenVINO), taking the same turns on the same texts, their cosines also to torch's fp32; with
`--ndcg` they are evaluated too, against torch's fp32.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast, get_args

import numpy as np

from benchmarks import eval as quality
from benchmarks.bench_backends import QUERY_BATCH, interleave
from benchmarks.bench_query import percentiles
from benchmarks.machine import load_average, machine_info, machine_markdown, rss_mb
from benchmarks.precision_runtimes import RUNTIMES, candidate
from benchmarks.xquad import EVAL_LANGS, load
from search.config import Precision, Settings
from search.model.embedders import Embedder, SentenceTransformerEmbedder, embedder_for
from search.model.packed import LINEAR_NAMES, PackedBert

log = logging.getLogger("benchmarks.bench_precision")

PROFILES: tuple[Precision, ...] = get_args(Precision)
LANGS = ("en", "zh", "ru")


def texts(langs: Sequence[str], n_queries: int, n_passages: int) -> dict[str, list[str]]:
    """The timed questions and paragraphs, and the four kinds of text the cosines are taken on."""
    xq = load(langs)
    questions = interleave([[q.text for q in xq.questions[lang]] for lang in langs], n_queries)
    paragraphs = interleave([[p.text for p in xq.paragraphs[lang]] for lang in langs], n_passages)
    by_lang = [[p.text for p in xq.paragraphs[lang]] for lang in langs]
    n = max(4, min(32, n_passages // 8))
    # One sentence of paragraph i in each language, as one text; five paragraphs in a row: over 512 tokens.
    mixed = [" ".join(ps[i].split(". ")[0] for ps in by_lang) for i in range(n)]
    over = [" ".join(by_lang[i % len(by_lang)][i : i + 5]) for i in range(max(2, n // 4))]
    return {"questions": questions, "paragraphs": paragraphs, "mixed": mixed, "over_window": over}


def cosines(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    c = (got * ref).sum(axis=1)
    return {"min": round(float(c.min()), 5), "mean": round(float(c.mean()), 5)}


def rotate(names: Sequence[str], i: int) -> list[str]:
    return [*names[i % len(names) :], *names[: i % len(names)]]


def run_speed(
    n_queries: int, n_passages: int, rounds: int, batch_size: int, runtimes: Sequence[str] = (), out: Path = Path()
) -> dict[str, Any]:
    data = texts(LANGS, n_queries, n_passages)
    settings = Settings()
    embedders: dict[str, Embedder] = {}
    rows: dict[str, dict[str, Any]] = {}
    for profile in PROFILES:
        before = rss_mb()["VmRSS"]
        start = time.perf_counter()
        e = embedder_for(settings.model_copy(update={"precision": profile, "batch_size": batch_size}))
        assert isinstance(e, SentenceTransformerEmbedder)
        embedders[profile] = e
        rows[profile] = {
            "profile": profile,
            "ran_as": e.precision,
            "fallback": e.precision_choice.reason,
            "fingerprint": e.fingerprint,
            "load_seconds": round(time.perf_counter() - start, 2),
            "rss_added_at_load_mb": round(rss_mb()["VmRSS"] - before, 1),
        }
        e.encode(data["paragraphs"][:batch_size], query=False)  # warm-up: first calls allocate
    for name in runtimes:
        before = rss_mb()["VmRSS"]
        start = time.perf_counter()
        extra = candidate(name, settings.model_copy(update={"batch_size": batch_size}), out / "precision-runtimes")
        embedders[name] = extra
        rows[name] = {
            "profile": name,
            "ran_as": extra.backend,
            "fallback": "",
            "fingerprint": extra.fingerprint,
            "load_seconds": round(time.perf_counter() - start, 2),
            "rss_added_at_load_mb": round(rss_mb()["VmRSS"] - before, 1),
        }
        extra.encode(data["paragraphs"][:batch_size], query=False)
    names: list[str] = list(embedders)
    single: dict[str, list[float]] = {p: [] for p in names}
    for i, q in enumerate(data["questions"]):
        for p in rotate(names, i):
            start = time.perf_counter()
            embedders[p].encode([q], query=True)
            single[p].append((time.perf_counter() - start) * 1000)
    batched: dict[str, list[float]] = {p: [] for p in names}
    groups = range(0, len(data["questions"]) - QUERY_BATCH + 1, QUERY_BATCH)
    for i, at in enumerate(groups):
        for p in rotate(names, i):
            start = time.perf_counter()
            embedders[p].encode(data["questions"][at : at + QUERY_BATCH], query=True)
            batched[p].append((time.perf_counter() - start) * 1000)
    seconds = dict.fromkeys(names, 0.0)
    vectors: dict[str, dict[str, list[np.ndarray]]] = {p: {"paragraphs": []} for p in names}
    paragraphs = data["paragraphs"]
    step = -(-len(paragraphs) // rounds)
    for r, at in enumerate(range(0, len(paragraphs), step)):
        for p in rotate(names, r):
            start = time.perf_counter()
            vectors[p]["paragraphs"].append(embedders[p].encode(paragraphs[at : at + step], query=False))
            seconds[p] += time.perf_counter() - start
    kinds = {"short": ("questions", True), "mixed": ("mixed", False), "over_window": ("over_window", False)}
    encoded = {p: {k: embedders[p].encode(data[src], query=q) for k, (src, q) in kinds.items()} for p in names}
    for p in names:
        encoded[p]["long"] = np.concatenate(vectors[p]["paragraphs"])
    for p in names:
        rows[p] |= {
            "passages_per_second": round(len(paragraphs) / seconds[p], 2),
            "query_ms": percentiles(single[p]),
            "query_batch_ms": percentiles(batched[p]),
            "cosine_to_fp32": {k: cosines(encoded[p][k], encoded["fp32"][k]) for k in encoded[p]},
        }
    tokens = [embedders["fp32"].count_tokens(t) for t in paragraphs]
    return {
        "config": {
            "langs": list(LANGS),
            "queries": len(data["questions"]),
            "passages": len(paragraphs),
            "passage_tokens_mean": round(float(np.mean(tokens)), 1),
            "texts_per_kind": {k: len(data[src]) for k, (src, _) in kinds.items()} | {"long": len(paragraphs)},
            "rounds": rounds,
            "batch_size": batch_size,
            "threads": settings.threads,
        },
        "profiles": list(rows.values()),
    }


def run_ndcg(
    limit: int | None,
    out: Path,
    profiles: Sequence[Precision],
    runtimes: Sequence[str] = (),
    graphs: Path = Path(),
    batch_size: int = 32,
) -> dict[str, Any]:
    """`benchmarks.eval` (dense, every task of `make eval`) once per profile and runtime candidate; each task's
    nDCG@10 minus torch fp32's. `graphs` holds the candidates' graphs (as in run_speed, made once)."""
    results: dict[str, dict[str, Any]] = {}
    for p in [*profiles, *runtimes]:
        log.info("eval with %s", p)
        if p in RUNTIMES:
            e = candidate(p, Settings().model_copy(update={"batch_size": batch_size}), graphs)
            results[p] = quality.run(EVAL_LANGS, limit, out / f"eval-{p}", embedder=e)
        else:
            results[p] = quality.run(EVAL_LANGS, limit, out / f"eval-{p}", precision=cast(Precision, p))
        (out / f"eval-{p}" / "eval.json").write_text(
            json.dumps(results[p], indent=2, ensure_ascii=False), encoding="utf-8"
        )
    return compare(results, limit)


def compare(results: dict[str, dict[str, Any]], limit: int | None) -> dict[str, Any]:
    """Each eval result's tasks against results["fp32"]'s: the deltas of nDCG@10, in percent."""
    # In percent, as docs/quality.md and the adoption rule ("within 0.5 nDCG@10") state them. A centered index is
    # asked with and without query means: two tasks, both kept.
    tasks = {
        p: {(t["pool"], t["query_lang"], t["centering"], t["query_means"]): 100 * t["ndcg_at_10"] for t in r["tasks"]}
        for p, r in results.items()
    }
    base = tasks["fp32"]
    summary = {}
    for p in results:
        deltas = {k: round(v - base[k], 2) for k, v in tasks[p].items()}
        worst = min(deltas, key=lambda k: deltas[k])
        summary[p] = {
            "tasks": len(deltas),
            "mean_delta": round(float(np.mean(list(deltas.values()))), 3),
            "worst_delta": deltas[worst],
            "worst_task": "/".join(str(x) for x in worst),
            "tasks_below_minus_0.5": sum(d < -0.5 for d in deltas.values()),
            "deltas": {"/".join(str(x) for x in k): d for k, d in deltas.items()},
            "mean_ndcg_at_10": round(float(np.mean(list(tasks[p].values()))), 2),
            "seconds": results[p]["seconds"],
        }
    return {"limit": limit, "profiles": summary}


def run_sensitivity(n_passages: int) -> list[dict[str, Any]]:
    """Each dense layer quantized to int8 alone (the rest fp32): the cosine of paragraph vectors to fp32."""
    e = embedder_for(Settings())
    assert isinstance(e, SentenceTransformerEmbedder) and e._packed is not None
    bert = e._model[0].auto_model
    paragraphs = texts(LANGS, 0, n_passages)["paragraphs"]
    ref = e.encode(paragraphs, query=False)
    names = [f"{i}.{n}" for i in range(len(bert.encoder.layer)) for n in LINEAR_NAMES]
    fp32 = e._packed
    rows = []
    try:
        for name in [*names, "all"]:
            e._packed = PackedBert(bert, "int8", [] if name == "all" else set(names) - {name})
            rows.append({"layer": name, **cosines(e.encode(paragraphs, query=False), ref)})
            log.info("%s", rows[-1])
    finally:
        e._packed = fp32
    return sorted(rows, key=lambda r: r["mean"])


def render(results: dict[str, Any]) -> str:
    lines = ["## Precision profiles: encode speed and agreement with fp32", "", machine_markdown(results["machine"])]
    if "speed" in results:
        lines += speed_lines(results["speed"])
    if "ndcg" in results:
        lines += ndcg_lines(results["ndcg"])
    if "sensitivity" in results:
        lines += ["", "int8 one layer at a time (the rest fp32), cosine to fp32 on paragraphs, worst first:", ""]
        lines += [f"- {r['layer']}: min {r['min']:.5f}, mean {r['mean']:.5f}" for r in results["sensitivity"][:12]]
    return "\n".join(lines) + "\n"


def speed_lines(speed: dict[str, Any]) -> list[str]:
    c = speed["config"]
    rows = {r["profile"]: r for r in speed["profiles"]}
    base = rows["fp32"]
    lines = [
        "",
        f"{c['queries']} XQuAD questions one per call and {QUERY_BATCH} per call; {c['passages']} paragraphs (mean "
        f"{c['passage_tokens_mean']} tokens) in batches of {c['batch_size']}, {c['rounds']} rounds, profiles taking "
        f"turns; {c['threads']} threads; cosines on {c['texts_per_kind']} texts.",
        "",
        "| profile (ran as) | passages/s | vs fp32 | query p50 ms | vs fp32 | 8 queries p50 ms | RSS added MB "
        "| cosine short min/mean | long | mixed | over window |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        cos = r["cosine_to_fp32"]
        cells = " | ".join(
            f"{cos[k]['min']:.4f} / {cos[k]['mean']:.4f}" for k in ("short", "long", "mixed", "over_window")
        )
        lines.append(
            f"| {name} ({r['ran_as']}) | {r['passages_per_second']} "
            f"| {r['passages_per_second'] / base['passages_per_second']:.2f}x | {r['query_ms']['p50_ms']} "
            f"| {r['query_ms']['p50_ms'] / base['query_ms']['p50_ms']:.2f}x | {r['query_batch_ms']['p50_ms']} "
            f"| {r['rss_added_at_load_mb']} | {cells} |"
        )
    return lines


def ndcg_lines(ndcg: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"nDCG@10 (percent) against fp32, dense, every `make eval` task (--limit {ndcg['limit']} paragraphs and "
        "questions per language):",
        "",
        "| profile | tasks | mean nDCG@10 | mean delta | worst delta (pool/query/centered/query means) "
        "| tasks below -0.5 |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in ndcg["profiles"].items():
        lines.append(
            f"| {name} | {s['tasks']} | {s['mean_ndcg_at_10']} | {s['mean_delta']:+.3f} "
            f"| {s['worst_delta']:+.2f} ({s['worst_task']}) | {s['tasks_below_minus_0.5']} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_precision", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few texts, for the smoke test (no nDCG)")
    parser.add_argument("--queries", type=int, default=200, help="questions timed one by one [default: %(default)s]")
    parser.add_argument("--passages", type=int, default=480, help="paragraphs encoded [default: %(default)s]")
    parser.add_argument(
        "--rounds", type=int, default=12, help="slices the profiles take turns on [default: %(default)s]"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="passages per model call [default: %(default)s]")
    parser.add_argument(
        "--ndcg", action="store_true", help="also run benchmarks.eval once per profile (and --runtimes candidate)"
    )
    parser.add_argument("--limit", type=int, default=None, help="--ndcg: first N paragraphs and questions per language")
    parser.add_argument(
        "--profiles", default=",".join(PROFILES), help="--ndcg: the profiles evaluated [default: %(default)s]"
    )
    parser.add_argument("--sensitivity", action="store_true", help="also quantize one dense layer at a time")
    parser.add_argument(
        "--runtimes",
        default="",
        help=f"extra rows outside torch, comma-separated, from {','.join(RUNTIMES)} (OpenVINO rows need "
        "`pip install openvino`) [default: none]",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder [default: %(default)s]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    if args.quick:
        args.queries, args.passages, args.rounds, args.ndcg = 16, 24, 2, False
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine_info()}
    runtimes = [r for r in args.runtimes.split(",") if r]
    if unknown := set(runtimes) - set(RUNTIMES):
        parser.error(f"--runtimes: unknown {', '.join(sorted(unknown))}; choose from {', '.join(RUNTIMES)}")
    if args.passages:
        results["speed"] = run_speed(args.queries, args.passages, args.rounds, args.batch_size, runtimes, args.out)
    if args.sensitivity:
        results["sensitivity"] = run_sensitivity(min(args.passages, 48))
    if args.ndcg:
        chosen = [p for p in PROFILES if p in args.profiles.split(",")]
        results["ndcg"] = run_ndcg(
            args.limit,
            args.out / "precision",
            ["fp32", *(p for p in chosen if p != "fp32")],
            runtimes,
            args.out / "precision-runtimes",
            args.batch_size,
        )
    results["machine"]["load_average_at_end"] = load_average()
    results["process_rss_mb"] = rss_mb()
    (args.out / "precision.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    markdown = render(results)
    (args.out / "precision.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
