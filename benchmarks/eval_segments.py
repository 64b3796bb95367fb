"""`python -m benchmarks.eval_segments`: retrieval quality under writes, against a full rebuild (issue 19).

Between full builds the centering means are frozen (every segment is centered with the build's means) and BM25
statistics are per segment. This measures what that costs when a new language arrives as small writes: XQuAD
paragraphs of the base languages (en, zh: the first `--base-paragraphs` of each) are built at once, then the new
language's paragraphs (ru, in order, so the first ones translate base paragraphs and the later ones are new topics)
are written through `SearchService.upsert_articles` (the code behind `PUT /articles`), `--per-write` paragraphs
(articles) per write, until they are 10%, 30% and 50% of the live passages: the share `refresh_due` weighs against
SEARCH_REFRESH_SHARE. At each of those points every variant is asked the same questions as a full rebuild of the
same corpus (`search index --full`):

- `frozen`: merges off: one segment per write, means and BM25 statistics frozen since the base build;
- `merged`: the default tiered merges, inline, with the refresh disabled (merged segments refit their BM25
  statistics; the means stay frozen);
- `product`: the default merges with the refresh as configured (a due merge becomes a compaction once writes
  outgrew SEARCH_REFRESH_SHARE or a language has no mean of its own).

Each variant runs twice: with the mean bank as shipped (it knows the new language: the new language's passages and
queries are centered with a borrowed mean) and with a bank without the new language (they fall back on the global
mean). Tasks: questions in Q with a search restricted to the passages of language T (`langs=[T]`: the cross-lingual
matrix within the one index), and unrestricted over the whole index with every translation relevant (`Q->all`, the
mixed pool). Dense and hybrid. The embedding cache and the question vectors (`queries.npz`) are kept in `--out`, so a
rerun embeds nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.eval import QueryMemo
from benchmarks.ir_metrics import distinct, score
from benchmarks.machine import load_average, machine_info, machine_markdown
from benchmarks.xquad import Question, load, write_jsonl
from search import service as service_module
from search.config import Settings
from search.index.build import BuildSummary, read_articles
from search.index.meanbank import MeanBank, find_bank
from search.records import Article, Mode, SearchQuery
from search.service import SearchService

log = logging.getLogger("benchmarks.eval_segments")

K_FETCH = 30
VARIANTS = ("frozen", "merged", "product")
BANKS = ("known", "unknown")
ALL = "all"


@dataclass(frozen=True)
class Task:
    """Questions in `query_lang` asked of the passages in `target` (a language, or every language: "all")."""

    query_lang: str
    target: str

    @property
    def name(self) -> str:
        return f"{self.query_lang}->{self.target}"


@dataclass
class Variant:
    """One index folder taking the writes, and how it merges."""

    name: str
    bank: str
    svc: SearchService

    @property
    def refresh(self) -> bool:
        return self.name == "product"


@contextmanager
def refresh_off(off: bool) -> Iterator[None]:
    """No setting turns the refresh off (it is what bounds the drift); the `merged` variant measures merges
    without it, so its rule is replaced here, for this benchmark only."""
    if not off:
        yield
        return
    with (
        mock.patch.object(service_module, "refresh_due", lambda *args, **kwargs: ""),
        mock.patch.object(service_module, "refit_now", lambda *args, **kwargs: []),
    ):
        yield


def bank_without(bank: MeanBank, lang: str, path: Path) -> Path:
    """The bank less one language (passage and query means), saved for SEARCH_MEAN_BANK."""
    MeanBank(
        {k: v for k, v in bank.means.items() if k != lang},
        {k: v for k, v in bank.counts.items() if k != lang},
        f"{bank.source} without {lang}",
        {k: v for k, v in bank.query_means.items() if k != lang},
        {k: v for k, v in bank.query_counts.items() if k != lang},
        bank.query_source,
    ).save(path)
    return path


def pick(questions: Sequence[Question], present: set[int], n: int) -> list[Question]:
    """At most `n` of the questions about paragraphs present, spread evenly over them (the same at every point)."""
    about = [q for q in questions if q.paragraphs & present]
    step = max(1, len(about) // n) if n else 1
    return about[::step][:n] if n else about


def evaluate(
    svc: SearchService,
    tasks: Sequence[Task],
    questions: dict[str, list[Question]],
    present: dict[str, set[int]],
    limit: int,
    modes: Sequence[Mode],
    batch: int = 64,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Scores by mode and task: nDCG@10 and the others of benchmarks.ir_metrics, with the per-question nDCG kept
    out (the tables need means only)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for mode in modes:
        out[mode] = {}
        for task in tasks:
            langs = sorted(present) if task.target == ALL else [task.target]
            here = set().union(*(present[lang] for lang in langs))
            qs = pick(questions[task.query_lang], here, limit)
            restrict = () if task.target == ALL else (task.target,)
            rankings: list[list[str]] = []
            for start in range(0, len(qs), batch):
                chunk = qs[start : start + batch]
                found = svc.search_many([SearchQuery(q.text, k=K_FETCH, mode=mode, langs=restrict) for q in chunk])
                rankings.extend(distinct((h.passage.article_id for h in r.hits), 10) for r in found)
            relevant = [{f"{lang}/{i:03d}" for lang in langs for i in q.paragraphs if i in present[lang]} for q in qs]
            out[mode][task.name] = score(rankings, relevant).as_dict()
    return out


def new_share(svc: SearchService, lang: str) -> float:
    """The new language's share of the live passages (by article id: language ID may label a passage otherwise),
    which is the written share `refresh_due` weighs until a refresh resets it."""
    passages = svc.store.all_passages()
    return sum(p.article_id.startswith(f"{lang}/") for p in passages) / max(len(passages), 1)


def written_share(svc: SearchService) -> dict[str, Any]:
    """What the published build says: passages written since the means were fit, over live passages; segments."""
    store = svc.store
    written = int(store.manifest.get("written_since_fit", 0))
    return {
        "live_passages": store.size,
        "written_since_fit": written,
        "written_share": round(written / max(store.size, 1), 4),
        "segments": len(store.segments),
        "languages": dict((store.manifest.get("counts") or {}).get("languages") or {}),
    }


def run(
    base_langs: Sequence[str],
    new_lang: str,
    out: Path,
    *,
    base_paragraphs: int = 120,
    new_paragraphs: int = 240,
    per_write: int = 8,
    shares: Sequence[float] = (0.1, 0.3, 0.5),
    questions: int = 300,
    modes: Sequence[Mode] = ("dense", "hybrid"),
    variants: Sequence[str] = VARIANTS,
    banks: Sequence[str] = BANKS,
) -> dict[str, Any]:
    started = time.perf_counter()
    info = machine_info()
    langs = [*base_langs, new_lang]
    xq = load(langs)
    base_files = [
        write_jsonl(xq.paragraphs[lang][:base_paragraphs], out / "corpus" / f"{lang}.jsonl") for lang in base_langs
    ]
    new_file = write_jsonl(xq.paragraphs[new_lang][:new_paragraphs], out / "corpus" / f"{new_lang}-all.jsonl")
    new_articles: list[Article] = read_articles([new_file], BuildSummary())
    cache = out / "embeddings.sqlite"
    boot = SearchService(Settings(embedding_cache=cache))
    memo, detector = QueryMemo(boot.embedder, out / "queries.npz"), boot.detector
    shipped = find_bank(boot.settings.mean_bank, memo.fingerprint, boot.settings.cache_dir)
    if new_lang not in shipped.means:
        raise SystemExit(f"the mean bank has no {new_lang} mean: the 'known' variant needs one (SEARCH_MEAN_BANK)")
    without = bank_without(shipped, new_lang, out / f"bank-without-{new_lang}.npz")
    bank_settings = {"known": boot.settings.mean_bank, "unknown": str(without)}

    def service(name: str, bank: str, merges: str) -> SearchService:
        settings = Settings(
            index_dir=out / "indexes" / f"{name}-{bank}",
            embedding_cache=cache,
            mean_bank=bank_settings[bank],
            merges=merges,
        )
        return SearchService(settings, embedder=memo, detector=detector)

    runs = [
        Variant(name, bank, service(name, bank, "off" if name == "frozen" else "inline"))
        for bank in banks
        for name in variants
    ]
    rebuilds = {bank: service("rebuild", bank, "off") for bank in banks}
    for v in runs:
        v.svc.build(base_files, full=True)
    tasks = [Task(q, t) for q in langs for t in [*langs, ALL]]
    present = {lang: set(range(base_paragraphs)) for lang in base_langs}
    points: list[dict[str, Any]] = []
    written = 0
    for share in sorted(shares):
        # Write until the new language's passages are `share` of the live passages (or it runs out).
        while written < len(new_articles) and new_share(runs[0].svc, new_lang) < share:
            batch = new_articles[written : written + per_write]
            for v in runs:
                with refresh_off(not v.refresh):
                    v.svc.upsert_articles(batch, f"eval write of {len(batch)} articles")
            written += len(batch)
        present[new_lang] = set(range(written))
        stage_file = write_jsonl(xq.paragraphs[new_lang][:written], out / "corpus" / f"{new_lang}-{written}.jsonl")
        point: dict[str, Any] = {"target_share": share, "new_paragraphs": written, "results": []}
        for bank, svc in rebuilds.items():
            summary = svc.build([*base_files, stage_file], full=True)
            svc.load()
            scores = evaluate(svc, tasks, xq.questions, present, questions, modes)
            point["results"].append({"variant": "rebuild", "bank": bank, **written_share(svc), "scores": scores})
            log.info("share %.0f%% rebuild (%s bank): %d passages", share * 100, bank, summary.passages)
        for v in runs:
            scores = evaluate(v.svc, tasks, xq.questions, present, questions, modes)
            point["results"].append({"variant": v.name, "bank": v.bank, **written_share(v.svc), "scores": scores})
            log.info("share %.0f%% %s (%s bank) evaluated", share * 100, v.name, v.bank)
        points.append(point)
    memo.save()
    info["load_average_at_end"] = load_average()
    return {
        "machine": info,
        "config": {
            "base_langs": list(base_langs),
            "new_lang": new_lang,
            "base_paragraphs": base_paragraphs,
            "new_paragraphs": new_paragraphs,
            "per_write": per_write,
            "shares": list(shares),
            "questions_per_task": questions,
            "modes": list(modes),
            "k_fetch": K_FETCH,
            "refresh_share": boot.settings.refresh_share,
            "merge_factor": boot.settings.merge_factor,
            "centering_min_passages": boot.settings.centering_min_passages,
            "model": boot.settings.model,
        },
        "tasks": [t.name for t in tasks],
        "points": points,
        "seconds": round(time.perf_counter() - started, 1),
    }


def drift(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per point, variant, bank and mode: nDCG@10 minus the rebuild's (same bank), per task, and the worst."""
    rows = []
    for point in results["points"]:
        ref = {r["bank"]: r["scores"] for r in point["results"] if r["variant"] == "rebuild"}
        for r in point["results"]:
            if r["variant"] == "rebuild":
                continue
            for mode, by_task in r["scores"].items():
                deltas = {
                    t: round(100 * (s["ndcg_at_10"] - ref[r["bank"]][mode][t]["ndcg_at_10"]), 2)
                    for t, s in by_task.items()
                }
                rows.append(
                    {
                        "new_paragraphs": point["new_paragraphs"],
                        "written_share": r["written_share"],
                        "variant": r["variant"],
                        "bank": r["bank"],
                        "segments": r["segments"],
                        "mode": mode,
                        "deltas": deltas,
                        "worst": min(deltas.values()),
                    }
                )
    return rows


def render(results: dict[str, Any]) -> str:
    c = results["config"]
    tasks = results["tasks"]
    lines = [
        f"# Quality under writes: {'+'.join(c['base_langs'])} built at once ({c['base_paragraphs']} paragraphs "
        f"each), {c['new_lang']} written {c['per_write']} articles per write",
        "",
        f"nDCG@10 in percent; up to {c['questions_per_task']} questions per task; Q->T: questions in Q, search "
        "restricted to language T; Q->all: the whole index, every translation relevant. Drift = variant minus a "
        "full rebuild of the same corpus (same bank), in points.",
        f"{machine_markdown(results['machine'])} {results['seconds']} s.",
        "",
        "## nDCG@10 of the full rebuild",
        "",
        "| new paragraphs | bank | mode | " + " | ".join(tasks) + " |",
        "|---|---|---|" + "---|" * len(tasks),
    ]
    for point in results["points"]:
        for r in point["results"]:
            if r["variant"] != "rebuild":
                continue
            for mode, by_task in r["scores"].items():
                cells = " | ".join(f"{100 * by_task[t]['ndcg_at_10']:.1f}" for t in tasks)
                lines.append(f"| {point['new_paragraphs']} | {r['bank']} | {mode} | {cells} |")
    rows = drift(results)
    lines += [
        "",
        "## Worst drift per point (the lowest task's nDCG@10 minus the rebuild's, in points)",
        "",
        "| written share | variant | bank | segments | " + " | ".join(f"worst, {mode}" for mode in c["modes"]) + " |",
        "|---|---|---|---|" + "---|" * len(c["modes"]),
    ]
    for key in dict.fromkeys((r["written_share"], r["new_paragraphs"], r["variant"], r["bank"]) for r in rows):
        same = {r["mode"]: r for r in rows if (r["written_share"], r["new_paragraphs"], r["variant"], r["bank"]) == key}
        first = next(iter(same.values()))
        worst = " | ".join(f"{same[mode]['worst']:+.1f} ({_worst_task(same[mode])})" for mode in c["modes"])
        lines.append(f"| {key[0]:.0%} ({key[1]} paragraphs) | {key[2]} | {key[3]} | {first['segments']} | {worst} |")
    lines += [
        "",
        "## Drift against the rebuild (points of nDCG@10)",
        "",
        "| written share | variant | bank | segments | mode | worst | " + " | ".join(tasks) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(tasks),
    ]
    for row in rows:
        cells = " | ".join(f"{row['deltas'][t]:+.1f}" for t in tasks)
        lines.append(
            f"| {row['written_share']:.0%} ({row['new_paragraphs']} paragraphs) | {row['variant']} | {row['bank']} "
            f"| {row['segments']} | {row['mode']} | **{row['worst']:+.1f}** | {cells} |"
        )
    return "\n".join(lines) + "\n"


def _worst_task(row: dict[str, Any]) -> str:
    """The task that lost most, or "none" when no task lost."""
    return min(row["deltas"], key=row["deltas"].__getitem__) if row["worst"] < 0 else "none"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_segments", description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="en,zh", help="languages built at once [default: %(default)s]")
    parser.add_argument("--new", default="ru", help="the language that arrives as writes [default: %(default)s]")
    parser.add_argument(
        "--base-paragraphs", type=int, default=120, help="paragraphs per base language [default: %(default)s]"
    )
    parser.add_argument(
        "--new-paragraphs", type=int, default=240, help="at most this many new paragraphs [default: %(default)s]"
    )
    parser.add_argument("--per-write", type=int, default=8, help="articles per write [default: %(default)s]")
    parser.add_argument("--shares", default="0.1,0.3,0.5", help="written shares measured at [default: %(default)s]")
    parser.add_argument("--questions", type=int, default=300, help="questions per task, 0: all [default: %(default)s]")
    parser.add_argument("--modes", default="dense,hybrid", help="rankings [default: %(default)s]")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="[default: %(default)s]")
    parser.add_argument("--banks", default=",".join(BANKS), help="[default: %(default)s]")
    parser.add_argument(
        "--out", type=Path, default=Path("eval-results/writes"), help="output folder [default: %(default)s]"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)

    def listed(text: str) -> list[str]:
        return [x.strip() for x in text.split(",") if x.strip()]

    args.out.mkdir(parents=True, exist_ok=True)
    results = run(
        listed(args.base),
        args.new,
        args.out,
        base_paragraphs=args.base_paragraphs,
        new_paragraphs=args.new_paragraphs,
        per_write=args.per_write,
        shares=[float(s) for s in listed(args.shares)],
        questions=args.questions,
        modes=listed(args.modes),  # type: ignore[arg-type]
        variants=listed(args.variants),
        banks=listed(args.banks),
    )
    (args.out / "eval-segments.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    markdown = render(results)
    (args.out / "eval-segments.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
