"""`python -m benchmarks.bench_segments`: what a write costs on a large index, what segments cost a search, and
whether a compacted index answers as a fresh full build does (issue 19's targets).

Three parts, each on its own temporary index:

- **Writes at scale** (`--base` passages, 100k by default): a base build written as `search index` writes one
  (`store.write_build` + `publish`: BM25, SQLite, an approximate vector index tuned as a build tunes it) from
  synthetic passages (random words of XQuAD's English text) and seeded clustered vectors (`bench_scale.clustered`),
  recorded under the default model's fingerprint, so the real model can write on top of it. Then, through
  `SearchService.upsert_article` with that real model, 10-paragraph articles (XQuAD English paragraphs, never in
  the embedding cache: every passage is embedded): total seconds, the stages, the time in fsync, and the total
  minus the embedding (target < 1 s); the rank at which a question about the new article finds it, dense and hybrid,
  right after the write. One more upsert goes through a real HTTP `PUT /articles/{id}` (`create_app` in process,
  Starlette's TestClient). `DELETE`: `SearchService.remove_articles` of a base article (target < 200 ms).
- **Segments at scale**: with merges off, upserts until the index has `--segments` segments; then a snapshot of it
  (hard links) is merged into one segment (`prepare_merge` + `commit_merge`, the background merge's path, timed);
  both are loaded side by side and the same questions (XQuAD English, distinct) alternate between them, dense and
  hybrid: p50 with the query encode (each question's first search) and without it (its second, from the query LRU:
  the retrieval alone, where segments cost). Target: within 1.2x.
- **Compaction equals a full build**: XQuAD en+zh paragraphs (one article each) written by the real model in
  batches of `--batch` articles (`upsert_articles`, merges inline as a command runs them), then `compact`; against
  the same corpus built at once. The share of identical top-10 lists (passage ids in order), dense and hybrid, over
  XQuAD questions in both languages. Embeddings come through a shared cache (`<out>/embeddings.sqlite`).

Prints markdown with the load average (`uptime`) before and after each part, and writes JSON to
`<out>/segments.json`. `--quick` is a smoke test (a small flat base, two segments, a few paragraphs).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_durable import SyncClock, article_of
from benchmarks.bench_scale import clustered
from benchmarks.machine import load_average, machine_info, machine_markdown
from benchmarks.xquad import Question, load, write_jsonl
from search.config import Settings
from search.index.build import BuildSummary, build_manifest, read_articles
from search.index.centering import Centering
from search.index.segments import commit_merge, prepare_merge
from search.index.snapshot import take_snapshot
from search.index.store import VectorIndexOptions, new_build_id, publish, write_build
from search.ingest.language import LanguageDetector
from search.model.embedders import Embedder, embedder_for
from search.records import Article, Mode, Passage, SearchQuery
from search.service import SearchService

log = logging.getLogger("benchmarks.bench_segments")

PUT_TARGET_S = 1.0
DELETE_TARGET_S = 0.2
SEGMENTS_TARGET = 1.2
PARAGRAPHS = 10  # per upserted article
MODES: tuple[Mode, Mode] = ("dense", "hybrid")


def uptime() -> str:
    one, five, fifteen = load_average()
    return f"load average {one}, {five}, {fifteen}"


# --- the base build --------------------------------------------------------------------------------------------------


def synthetic_base(n: int, words: Sequence[str], seed: int = 0) -> tuple[list[Article], list[Passage], np.ndarray]:
    """`n` English passages of 50-70 words drawn from `words`, in 10-passage articles, with clustered unit vectors."""
    rng = np.random.default_rng(seed)
    vocab = np.asarray(words)
    articles, passages = [], []
    for a in range(0, n, PARAGRAPHS):
        texts = [" ".join(rng.choice(vocab, int(rng.integers(50, 71)))) + "." for _ in range(min(PARAGRAPHS, n - a))]
        article, found = article_of(f"base-{a // PARAGRAPHS:06d}", texts)
        articles.append(article)
        passages.extend(found)
    return articles, passages, clustered(rng, n)


def write_base(svc: SearchService, n: int, words: Sequence[str]) -> dict[str, Any]:
    """Write and publish a base build of `n` synthetic passages, recorded as built by `svc`'s model and settings
    (what `search index` writes, minus the embedding), so that the service can write on top of it."""
    s, embedder = svc.settings, svc.embedder
    articles, passages, raw = synthetic_base(n, words)
    bank = svc.mean_bank
    langs = [p.lang for p in passages]
    means = Centering.fit(
        raw, langs, s.centering_min_passages, enabled=s.centering, bank=bank.means,
        query_offsets=bank.query_offsets(),
    )  # fmt: skip
    options = VectorIndexOptions(s.flat_max, s.memory_budget_mb, s.target_recall)
    manifest = build_manifest(embedder, "fp32", articles, passages, s.centering_min_passages, bank, options)
    start = time.perf_counter()
    folder = write_build(s.index_dir, new_build_id(), articles, passages, raw, means, manifest, options)
    publish(s.index_dir, folder)
    seconds = time.perf_counter() - start
    store = svc.load()
    return {"passages": store.size, "articles": len(articles), "seconds": round(seconds, 1), **_kind(svc)}


def _kind(svc: SearchService) -> dict[str, Any]:
    vi = svc.store.segments[0].vector_index
    return {"vector_index": vi.get("kind"), "params": vi.get("params")}


# --- writes ----------------------------------------------------------------------------------------------------------


def new_articles(paragraphs: Sequence[Any], count: int) -> list[tuple[Article, list[str]]]:
    """`count` articles of PARAGRAPHS consecutive XQuAD paragraphs each; with each, nothing else yet."""
    out = []
    for i in range(count):
        chunk = paragraphs[i * PARAGRAPHS : (i + 1) * PARAGRAPHS]
        text = "\n\n".join(p.text for p in chunk)
        out.append((Article(f"new-{i:03d}", chunk[0].title, text, "api"), [str(p.index) for p in chunk]))
    return out


def rank_of(svc: SearchService, question: str, article_id: str, mode: Mode) -> int | None:
    """The rank (1-based) of the article's first passage in the top 10 for `question`, or None."""
    hits = svc.search(SearchQuery(question, k=10, mode=mode)).hits
    return next((h.rank for h in hits if h.passage.article_id == article_id), None)


def upsert(svc: SearchService, article: Article, question: str) -> dict[str, Any]:
    with SyncClock() as clock:
        start = time.perf_counter()
        summary = svc.upsert_article(article)
        total = time.perf_counter() - start
    embed = summary.stages.get("embed", 0.0)
    return {
        "article": article.id,
        "embedded": summary.embedded,
        "total_s": round(total, 3),
        "embed_s": round(embed, 3),
        "without_embed_s": round(total - embed, 3),
        "fsync_s": round(clock.seconds, 3),
        "stages": {k: round(v, 3) for k, v in summary.stages.items()},
        # what the service does around the segment write: the writer lock, loading the new build (its segment)
        "outside_stages_s": round(total - sum(summary.stages.values()), 3),
        "found_rank": {mode: rank_of(svc, question, article.id, mode) for mode in MODES},
    }


def put_over_http(svc: SearchService, article: Article, question: str) -> dict[str, Any]:
    """One upsert through `PUT /articles/{id}` on the app in process (its lifespan warms the service up)."""
    from fastapi.testclient import TestClient

    from search.serve.app import create_app

    with TestClient(create_app(service=svc)) as client:
        start = time.perf_counter()
        r = client.put(f"/articles/{article.id}", json={"title": article.title, "text": article.text})
        total = time.perf_counter() - start
        r.raise_for_status()
        found = client.get("/search", params={"q": question, "k": 10, "mode": "hybrid"}).json()
    ranks = [h["rank"] for h in found["hits"] if h["article_id"] == article.id]
    svc.background_merges = False
    return {
        "article": article.id,
        "embedded": r.json()["embedded"],
        "total_s": round(total, 3),
        "found_rank_hybrid": ranks[0] if ranks else None,
    }


def delete(svc: SearchService, article_id: str) -> dict[str, Any]:
    with SyncClock() as clock:
        start = time.perf_counter()
        summary = svc.remove_articles([article_id])
        total = time.perf_counter() - start
    gone = not any(a.article_id == article_id for a in svc.articles())
    return {"article": article_id, "total_s": round(total, 3), "fsync_s": round(clock.seconds, 3), "gone": gone} | {
        "stages": {k: round(v, 3) for k, v in summary.stages.items()}
    }


# --- searches --------------------------------------------------------------------------------------------------------


def p50_ms(samples: Sequence[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def alternating(services: dict[str, SearchService], questions: Sequence[str]) -> dict[str, Any]:
    """Questions in turn dense and hybrid (each question in one mode only, so its first search encodes it), each
    asked of every service in turn, twice: the first search with its encode, the second from the query LRU (the
    retrieval alone); p50s by service and mode."""
    times: dict[tuple[str, str, str], list[float]] = {}
    for i, q in enumerate(questions):
        mode = MODES[i % 2]
        names = list(services) if (i // 2) % 2 == 0 else list(reversed(services))
        for name in names:
            for pass_ in ("with_encode", "retrieval"):
                start = time.perf_counter()
                services[name].search(SearchQuery(q, k=10, mode=mode))
                times.setdefault((name, mode, pass_), []).append(time.perf_counter() - start)
    out: dict[str, Any] = {}
    for (name, asked, pass_), samples in sorted(times.items()):
        out.setdefault(name, {}).setdefault(asked, {"queries": len(samples)})[f"{pass_}_p50_ms"] = p50_ms(samples)
    return out


@contextmanager
def loaded_copy(svc: SearchService, folder: Path) -> Iterator[SearchService]:
    """A second service on a snapshot of `svc`'s index (hard links), sharing its model and detector."""
    take_snapshot(svc.settings.index_dir, folder)
    other = SearchService(svc.settings.model_copy(update={"index_dir": folder}), svc.embedder, svc.detector)
    other.load()
    try:
        yield other
    finally:
        other.close()


def merge_all(svc: SearchService) -> float:
    """Merge every segment of `svc`'s index into one, as a background merge does (no probes: the approximate
    index is tuned on held-out passages, as the base was); seconds."""
    s, store = svc.settings, svc.store
    start = time.perf_counter()
    options = VectorIndexOptions(s.flat_max, s.memory_budget_mb, s.target_recall)
    ids = [e["id"] for e in store.entries]
    prepared, started = prepare_merge(s.index_dir, store, ids, options=options, zh_tokenizer=s.zh_tokenizer)
    commit_merge(s.index_dir, store, prepared, started)
    svc.reload()
    return time.perf_counter() - start


# --- the parts -------------------------------------------------------------------------------------------------------


def part_scale(args: argparse.Namespace, embedder: Embedder, detector: LanguageDetector, tmp: Path) -> dict[str, Any]:
    xq = load(["en"])
    paragraphs = xq.paragraphs["en"]
    words = [w for p in paragraphs for w in p.text.split()]
    fresh = new_articles(paragraphs, args.segments + 1)
    question_of = _question_per_article(xq.questions["en"], fresh)
    settings = Settings(
        index_dir=tmp / "index", embedding_cache=tmp / "embeddings.sqlite", merges="off", watch_seconds=0,
        writes=True, flat_max=args.flat_max,
    )  # fmt: skip
    svc = SearchService(settings, embedder, detector)
    out: dict[str, Any] = {"load_before": uptime()}
    log.info("writing the base build of %d passages", args.base)
    out["base"] = write_base(svc, args.base, words)
    svc.warm_up()
    log.info("base: %s", out["base"])
    out["upserts"] = []
    for article, _ in fresh[: args.upserts]:
        out["upserts"].append(upsert(svc, article, question_of[article.id]))
        log.info("upsert: %s", out["upserts"][-1])
    article, _ = fresh[args.upserts]
    out["http_put"] = put_over_http(svc, article, question_of[article.id])
    log.info("PUT: %s", out["http_put"])
    out["deletes"] = [delete(svc, f"base-{i:06d}") for i in range(args.deletes)]
    log.info("deletes: %s", out["deletes"])
    for article, _ in fresh[args.upserts + 1 :]:
        if len(svc.store.segments) >= args.segments:
            break
        svc.upsert_article(article)
    out["segments"] = len(svc.store.segments)
    asked = list(dict.fromkeys(q.text for q in xq.questions["en"]))[: args.queries]
    with loaded_copy(svc, tmp / "merged") as one:
        out["merge_s"] = round(merge_all(one), 1)
        out["merged"] = _kind(one)
        assert len(one.store.segments) == 1 and one.store.size == svc.store.size
        for s in (svc, one):
            s.warm_up()
        out["search"] = alternating({"segments": svc, "one": one}, asked)
    out["queries"] = len(asked)
    out["ratios"] = {
        mode: {
            key: round(out["search"]["segments"][mode][key] / out["search"]["one"][mode][key], 3)
            for key in ("with_encode_p50_ms", "retrieval_p50_ms")
        }
        for mode in ("dense", "hybrid")
    }
    svc.close()
    out["load_after"] = uptime()
    return out


def _question_per_article(questions: Sequence[Question], fresh: Sequence[tuple[Article, list[str]]]) -> dict[str, str]:
    out = {}
    for article, indexes in fresh:
        held = {int(i) for i in indexes}
        out[article.id] = next(q.text for q in questions if q.paragraphs & held)
    return out


def part_compaction(
    args: argparse.Namespace, embedder: Embedder, detector: LanguageDetector, tmp: Path, cache: Path
) -> dict[str, Any]:
    xq = load(["en", "zh"], limit=args.paragraphs)
    paragraphs = [p for lang in ("en", "zh") for p in xq.paragraphs[lang]]
    corpus = write_jsonl(paragraphs, tmp / "corpus.jsonl")
    articles = read_articles([corpus], BuildSummary())
    base = Settings(embedding_cache=cache, watch_seconds=0, merges="inline")
    out: dict[str, Any] = {"load_before": uptime(), "articles": len(articles), "batch": args.batch}

    full = SearchService(base.model_copy(update={"index_dir": tmp / "full"}), embedder, detector)
    start = time.perf_counter()
    full.build([corpus])
    full.load()
    out["full_build_s"] = round(time.perf_counter() - start, 1)

    written = SearchService(base.model_copy(update={"index_dir": tmp / "written"}), embedder, detector)
    first = write_jsonl(paragraphs[:1], tmp / "first.jsonl")
    start = time.perf_counter()
    written.build([first])
    written.load()
    rest = articles[1:]
    batches = [rest[i : i + args.batch] for i in range(0, len(rest), args.batch)]
    segments = []
    for batch in batches:
        written.upsert_articles(batch)
        segments.append(len(written.store.segments))
    out["writes"] = 1 + len(batches)
    out["write_s"] = round(time.perf_counter() - start, 1)
    out["segments_after_writes"] = segments[-1] if segments else 1
    out["most_segments"] = max(segments, default=1)
    start = time.perf_counter()
    written.compact()
    out["compact_s"] = round(time.perf_counter() - start, 1)
    assert len(written.store.segments) == 1 and written.store.size == full.store.size

    questions = [q.text for lang in ("en", "zh") for q in xq.questions[lang]][: args.questions]
    out["questions"] = len(questions)
    out["identical_top10"] = {}
    for mode in MODES:
        same = 0
        for q in questions:
            a, b = (
                [h.passage.passage_id for h in s.search(SearchQuery(q, k=10, mode=mode)).hits] for s in (written, full)
            )
            same += a == b
        out["identical_top10"][mode] = round(same / max(len(questions), 1), 4)
    for s in (written, full):
        s.close()
    out["load_after"] = uptime()
    return out


# --- report ----------------------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    lines = [machine_markdown(result["machine"]), ""]
    sc = result.get("scale")
    if sc:
        b = sc["base"]
        lines += [
            f"### Writes on a {b['passages']:,}-passage index ({b['vector_index']}, base written in {b['seconds']} s)",
            "",
            f"Load: {sc['load_before']} before, {sc['load_after']} after.",
            "",
            "| write | passages embedded | total s | embed s | total minus embed s | fsync s | stages s "
            "| outside stages s | found at rank (dense / hybrid) |",
            "|---|---:|---:|---:|---:|---:|---|---:|---|",
        ]
        for u in sc["upserts"]:
            stages = ", ".join(f"{k} {v}" for k, v in u["stages"].items())
            r = u["found_rank"]
            lines.append(
                f"| upsert {u['article']} | {u['embedded']} | {u['total_s']} | {u['embed_s']} | "
                f"**{u['without_embed_s']}** | {u['fsync_s']} | {stages} | {u['outside_stages_s']} | "
                f"{r['dense']} / {r['hybrid']} |"
            )
        h = sc["http_put"]
        lines.append(
            f"| HTTP PUT {h['article']} | {h['embedded']} | {h['total_s']} | | | | | | – / {h['found_rank_hybrid']} |"
        )
        for d in sc["deletes"]:
            stages = ", ".join(f"{k} {v}" for k, v in d["stages"].items())
            lines.append(
                f"| delete {d['article']} | 0 | **{d['total_s']}** | | | {d['fsync_s']} | {stages} | | "
                f"gone: {d['gone']} |"
            )
        med = result["summary"]
        lines += [
            "",
            f"Median upsert minus its embedding: {med['upsert_without_embed_s']} s (target < {PUT_TARGET_S} s); "
            f"median delete: {med['delete_s']} s (target < {DELETE_TARGET_S} s).",
            "",
            f"### Search with {sc['segments']} segments vs the same passages merged into one "
            f"({sc['merged']['vector_index']}, merged in {sc['merge_s']} s), {sc['queries']} questions alternating "
            "(half dense, half hybrid)",
            "",
            "| mode | p50 ms with encode: segments / one (ratio) | p50 ms retrieval only: segments / one (ratio) |",
            "|---|---|---|",
        ]
        for mode in ("dense", "hybrid"):
            seg, one, ratio = sc["search"]["segments"][mode], sc["search"]["one"][mode], sc["ratios"][mode]
            lines.append(
                f"| {mode} | {seg['with_encode_p50_ms']} / {one['with_encode_p50_ms']} "
                f"({ratio['with_encode_p50_ms']}x) | {seg['retrieval_p50_ms']} / {one['retrieval_p50_ms']} "
                f"({ratio['retrieval_p50_ms']}x) |"
            )
        lines.append("")
    co = result.get("compaction")
    if co:
        lines += [
            f"### Written in {co['writes']} writes of {co['batch']} articles, compacted, vs built at once "
            f"(XQuAD en+zh, {co['articles']} articles)",
            "",
            f"Load: {co['load_before']} before, {co['load_after']} after. Writes {co['write_s']} s "
            f"(at most {co['most_segments']} segments, {co['segments_after_writes']} at the end), compaction "
            f"{co['compact_s']} s, full build {co['full_build_s']} s.",
            "",
            f"| mode | identical top-10 lists ({co['questions']} questions, en+zh) |",
            "|---|---:|",
        ]
        for mode, share in co["identical_top10"].items():
            lines.append(f"| {mode} | {share:.1%} |")
        lines.append("")
    return "\n".join(lines)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    sc = result.get("scale")
    if not sc:
        return {}
    return {
        "upsert_without_embed_s": round(statistics.median(u["without_embed_s"] for u in sc["upserts"]), 3),
        "upsert_total_s": round(statistics.median(u["total_s"] for u in sc["upserts"]), 3),
        "delete_s": round(statistics.median(d["total_s"] for d in sc["deletes"]), 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=100_000, help="passages of the base build")
    parser.add_argument("--upserts", type=int, default=3, help="timed upserts through the service")
    parser.add_argument("--deletes", type=int, default=3, help="timed deletes")
    parser.add_argument("--segments", type=int, default=10, help="segments the searches are timed on")
    parser.add_argument("--queries", type=int, default=400, help="questions timed on each index (half per mode)")
    parser.add_argument("--paragraphs", type=int, default=None, help="XQuAD paragraphs per language (compaction)")
    parser.add_argument("--batch", type=int, default=10, help="articles per write (compaction)")
    parser.add_argument("--questions", type=int, default=None, help="questions compared (compaction; all)")
    parser.add_argument("--flat-max", type=int, default=Settings().flat_max, help="SEARCH_FLAT_MAX for the base")
    parser.add_argument("--parts", default="scale,compaction", help="scale, compaction, or both")
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.base, args.upserts, args.deletes, args.segments, args.queries = 2_000, 1, 1, 3, 8
        args.paragraphs, args.batch, args.questions = 6, 3, 12
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # a line per ground-truth search while tuning
    parts = set(args.parts.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine_info(), "config": {k: str(v) for k, v in vars(args).items()}}
    embedder = embedder_for(Settings())
    detector = LanguageDetector(Settings().languages)
    runs: list[tuple[str, Callable[[Path], dict[str, Any]]]] = [
        ("scale", lambda tmp: part_scale(args, embedder, detector, tmp)),
        ("compaction", lambda tmp: part_compaction(args, embedder, detector, tmp, args.out / "embeddings.sqlite")),
    ]
    for name, run in runs:
        if name in parts:
            with tempfile.TemporaryDirectory(prefix=f"segbench-{name}-") as tmp:
                result[name] = run(Path(tmp))
    result["summary"] = summarize(result)
    result["machine"]["load_average_at_end"] = load_average()
    text = markdown(result)
    (args.out / "segments.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    (args.out / "segments.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
