"""`python -m benchmarks.eval`: retrieval quality on XQuAD through the product's own path.

Paragraphs are written as JSONL articles and indexed by `SearchService.build` (the code behind `search index`:
chunking, language ID, embedding, centering); questions go through `SearchService.search_many` (query language ID,
query centering, vector search). Each index is built twice, with centering off and on, from one shared embedding
cache, so every passage is embedded once per run (and never again on a rerun with the same `--out`, which also
keeps the questions' vectors in `queries.npz`). When the mean
bank has query means, each centered index is asked again with `query_means` the other way (same build, another
service), for the passage-means against query-means comparison; the main tables are the configured way.
`--limit 120 --every-question` (`make eval-quick`) is the held-out subset for it: the shipped bank's query means
come from the questions about paragraphs 120-239 only. `--query-means-folds 2` measures them on the full set without
leakage: each half's questions are asked of an index whose bank has query means from the other half's questions
(benchmarks.eval_folds), and the passage-means side is asked with passage means whatever the setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.eval_folds import Folds, ask_folds, fold_banks
from benchmarks.eval_report import render
from benchmarks.eval_translations import render_translations, run_translations
from benchmarks.ir_metrics import distinct, score
from benchmarks.machine import load_average, machine_info
from benchmarks.xquad import EVAL_LANGS, Question, XQuAD, lang_of, load, write_corpus
from search.config import Precision, Settings
from search.index.meanbank import find_bank
from search.model.embedders import Embedder
from search.records import MODES, Mode, SearchQuery, SearchResult
from search.service import SearchService

log = logging.getLogger("benchmarks.eval")

# Passages fetched per query: a paragraph is at most a few passages, so 30 leave at least 10 distinct paragraphs.
K_FETCH = 30
REFERENCE_POOL = ("en", "zh", "ru")


class QueryMemo:
    """The run's one embedder, remembering query vectors across services.

    A service keeps an LRU of query vectors, but each service its own, and this run asks every question of up to
    sixteen indexes (one per language and the mixed pools, centering off and on): the model is called once per
    question and every service still goes through its own search path. Passages pass straight through (the
    embedding cache is what saves them).
    """

    def __init__(self, inner: Embedder, saved: Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.fingerprint = inner.fingerprint
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens
        # The precision profile the build records in its manifest (search.index.build.precision_of).
        self.precision_choice = getattr(inner, "precision_choice", None)
        self._vectors: dict[str, np.ndarray] = {}
        self.saved = saved
        if saved is not None and saved.exists():  # a rerun with the same --out: the same model's query vectors
            with np.load(saved) as kept:
                if str(kept["fingerprint"]) == self.fingerprint:
                    self._vectors = dict(zip(kept["texts"].tolist(), kept["vectors"], strict=True))

    def save(self) -> None:
        """Keep the query vectors for a rerun (as the embedding cache keeps the passages')."""
        if self.saved is not None and self._vectors:
            texts = list(self._vectors)
            vectors = np.stack([self._vectors[t] for t in texts])
            np.savez(self.saved, fingerprint=self.fingerprint, texts=np.array(texts), vectors=vectors)

    def count_tokens(self, text: str, *, query: bool = False) -> int:
        return self.inner.count_tokens(text, query=query)

    def encode(self, texts: Sequence[str], *, query: bool, progress: bool = False) -> np.ndarray:
        if not query:
            return self.inner.encode(texts, query=False, progress=progress)
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.inner.encode(missing, query=True), strict=True))
        return np.stack([self._vectors[t] for t in texts])

    @property
    def queries_encoded(self) -> int:
        return len(self._vectors)


@dataclass(frozen=True)
class Pool:
    """One index: the paragraphs of `langs`, asked the questions of `query_langs`."""

    name: str
    langs: tuple[str, ...]
    query_langs: tuple[str, ...]

    @property
    def mixed(self) -> bool:
        return len(self.langs) > 1


def pools(langs: Sequence[str]) -> list[Pool]:
    """A pool per language (asked every language's questions: the cross-lingual matrix) and the mixed pools."""
    out = [Pool(p, (p,), tuple(langs)) for p in langs]
    if len(langs) > 1:
        out.append(Pool("mixed", tuple(langs), tuple(langs)))
    if set(REFERENCE_POOL) < set(langs):
        out.append(Pool("mixed-" + "+".join(REFERENCE_POOL), REFERENCE_POOL, REFERENCE_POOL))
    return out


def ask(svc: SearchService, questions: Sequence[Question], batch: int, mode: Mode | None) -> list[SearchResult]:
    results: list[SearchResult] = []
    for start in range(0, len(questions), batch):
        chunk = questions[start : start + batch]
        results.extend(svc.search_many([SearchQuery(q.text, k=K_FETCH, mode=mode) for q in chunk]))
    return results


def own_language_share(rankings: Sequence[Sequence[str]], lang: str) -> float:
    shares = [sum(lang_of(a) == lang for a in r) / len(r) for r in rankings if r]
    return sum(shares) / len(shares) if shares else 0.0


def evaluate_pool(
    asker: Callable[[Sequence[Question]], list[SearchResult]],
    pool: Pool,
    xq: XQuAD,
    centering: bool,
    query_langid: dict[str, float],
    query_means: bool = False,
    folds: int = 0,
) -> list[dict[str, Any]]:
    """Every query language's figures on one index; `asker` asks the questions (of one service, or of the
    query-means folds' services)."""
    rows = []
    sizes = {lang: len(xq.paragraphs[lang]) for lang in pool.langs}
    for qlang in pool.query_langs:
        questions = xq.questions[qlang]
        start = time.perf_counter()
        results = asker(questions)
        rankings = [distinct((h.passage.article_id for h in r.hits), 10) for r in results]
        scores = score(rankings, [q.relevant(pool.langs) for q in questions])
        row: dict[str, Any] = {
            "pool": pool.name,
            "passage_langs": list(pool.langs),
            "query_lang": qlang,
            "centering": centering,
            "query_means": query_means,
            **({"query_means_folds": folds} if folds else {}),
            **scores.as_dict(),
            "seconds": round(time.perf_counter() - start, 2),
        }
        if pool.mixed:
            row["own_lang_share_at_10"] = round(own_language_share(rankings, qlang), 4)
            row["language_blind_share"] = round(sizes.get(qlang, 0) / sum(sizes.values()), 4)
        rows.append(row)
        query_langid.setdefault(qlang, round(sum(r.query_lang == qlang for r in results) / max(1, len(results)), 4))
        log.info("%s", {k: row[k] for k in ("pool", "query_lang", "centering", "query_means", "ndcg_at_10")})
    return rows


def passage_langid(svc: SearchService) -> dict[str, Any]:
    """How often language ID gave a passage the language of its XQuAD file, and the usual mistakes."""
    passages = svc.store.all_passages()
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for p in passages:
        truth = lang_of(p.article_id)
        total[truth] += 1
        if p.lang == truth:
            right[truth] += 1
        else:
            wrong[f"{truth}->{p.lang}"] += 1
    return {
        "accuracy": {lang: round(right[lang] / n, 4) for lang, n in sorted(total.items())},
        "mistakes": dict(wrong.most_common(20)),
        "passages": len(passages),
        "paragraphs": len({p.article_id for p in passages}),
        "max_passages_per_paragraph": max(Counter(p.article_id for p in passages).values(), default=0),
    }


def run(
    langs: Sequence[str],
    limit: int | None,
    out: Path,
    batch: int = 64,
    mode: Mode | None = "dense",
    precision: Precision | None = None,
    only: str | None = None,
    every_question: bool = False,
    query_means_folds: int = 0,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Every task's figures; `precision` overrides SEARCH_PRECISION (benchmarks.bench_precision compares them);
    `only="translations"` runs the translations table alone; `query_means_folds` K measures query means
    cross-fitted (benchmarks.eval_folds) instead of with the bank's own; `embedder`, a ready one instead of the
    settings' (bench_precision's candidates outside torch)."""
    started = time.perf_counter()
    info = machine_info()
    xq = load(langs, limit, every_question=every_question)
    files = write_corpus(xq, out / "corpus")
    cache = out / "embeddings.sqlite"
    extra: dict[str, Any] = {} if precision is None else {"precision": precision}
    boot = SearchService(Settings(embedding_cache=cache, **extra), embedder=embedder)
    memo, detector = QueryMemo(boot.embedder, out / "queries.npz"), boot.detector
    builds: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    query_langid: dict[str, float] = {}
    passages_langid: dict[str, Any] = {}
    folds, fold_bank_paths = None, []
    if query_means_folds and only is None:
        folds = Folds(query_means_folds, len(next(iter(xq.paragraphs.values()))))
        bank = find_bank(boot.settings.mean_bank, memo.fingerprint, boot.settings.cache_dir)
        if not bank.query_means:
            raise SystemExit("--query-means-folds: the mean bank has no query means (SEARCH_MEAN_BANK)")
        # Every language of the bank: a question's translations must stay out of its fold's means too.
        trainers = load(sorted(bank.query_means), limit, every_question=True).questions
        fold_bank_paths = fold_banks(bank, folds, trainers, memo, out / "meanbanks")

    def asker(svc: SearchService) -> Callable[[Sequence[Question]], list[SearchResult]]:
        return lambda questions: ask(svc, questions, batch, mode)

    for pool in pools(langs) if only is None else []:
        for centering in (False, True):
            index_dir = out / "indexes" / f"{pool.name}-{'centered' if centering else 'raw'}"
            settings = Settings(index_dir=index_dir, centering=centering, embedding_cache=cache, **extra)
            if folds is not None:  # passage means here; query means only through the folds, never leaked
                settings = settings.model_copy(update={"query_means": False})
            svc = SearchService(settings, embedder=memo, detector=detector)
            summary = svc.build([files[lang] for lang in pool.langs])
            svc.load()
            builds.append({"pool": pool.name, "centering": centering, **summary.as_dict()})
            if pool.name == "mixed" or len(langs) == 1:
                passages_langid = passage_langid(svc)
            default = settings.query_means
            tasks.extend(evaluate_pool(asker(svc), pool, xq, centering, query_langid, default))
            if centering and folds is not None:
                fold_svcs = []
                for fold, path in enumerate(fold_bank_paths):
                    fold_settings = settings.model_copy(
                        update={
                            "index_dir": Path(f"{index_dir}-qfold{fold}"),
                            "mean_bank": str(path),
                            "query_means": True,
                        }
                    )
                    fold_svc = SearchService(fold_settings, embedder=memo, detector=detector)
                    summary = fold_svc.build([files[lang] for lang in pool.langs])
                    fold_svc.load()
                    builds.append({"pool": pool.name, "centering": centering, "fold": fold, **summary.as_dict()})
                    fold_svcs.append(fold_svc)

                def folded(questions: Sequence[Question], svcs: list[SearchService] = fold_svcs) -> list[SearchResult]:
                    return ask_folds(svcs, folds, questions, lambda s, qs: ask(s, qs, batch, mode))

                tasks.extend(evaluate_pool(folded, pool, xq, centering, query_langid, True, folds.k))
            elif centering and svc.store.centering.query_offsets:
                other = SearchService(
                    settings.model_copy(update={"query_means": not default}), embedder=memo, detector=detector
                )
                other.load()
                tasks.extend(evaluate_pool(asker(other), pool, xq, centering, query_langid, not default))
    translations = None
    if set(REFERENCE_POOL) <= set(langs):
        translations = run_translations(xq, files, cache, out, memo, detector, mode, batch)
    memo.save()
    info["load_average_at_end"] = load_average()
    return {
        "translations": translations,
        "machine": info,
        "config": {
            "langs": list(langs),
            "limit": limit,
            "every_question": every_question,
            "paragraphs_per_lang": {lang: len(ps) for lang, ps in xq.paragraphs.items()},
            "questions_per_lang": {lang: len(qs) for lang, qs in xq.questions.items()},
            "k_fetch": K_FETCH,
            "mode": mode or boot.settings.default_mode,
            "model": boot.settings.model,
            "precision": boot.settings.precision,
            "fingerprint": memo.fingerprint,
            "centering_min_passages": boot.settings.centering_min_passages,
            "query_means": boot.settings.query_means,
            "query_means_folds": query_means_folds,
            "detector_languages": boot.settings.languages,
        },
        "tasks": tasks,
        "language_id": {"queries": query_langid, "passages": passages_langid},
        "builds": builds,
        "queries_encoded": memo.queries_encoded,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--langs", default=",".join(EVAL_LANGS), help="XQuAD languages [default: %(default)s]")
    parser.add_argument("--limit", type=int, default=None, help="first N paragraphs and N questions per language")
    parser.add_argument(
        "--every-question",
        action="store_true",
        help="with --limit N: every question about the N paragraphs, not N of them (--limit 120: about 600 per "
        "language, none of them in the shipped bank's query means)",
    )
    parser.add_argument(
        "--query-means-folds",
        type=int,
        default=0,
        metavar="K",
        help="measure query means cross-fitted: K folds of paragraphs, each fold's questions centered with query "
        "means from the other folds' questions (2 on the full set: no leakage) [default: the bank's own]",
    )
    parser.add_argument("--out", type=Path, default=Path("eval-results"), help="output folder [default: %(default)s]")
    parser.add_argument(
        "--mode",
        default="dense",
        choices=[*MODES, "default"],
        help="ranking: dense (the embeddings, where centering acts), lexical, hybrid, or 'default' for the "
        "service's SEARCH_DEFAULT_MODE [default: %(default)s]",
    )
    parser.add_argument("--batch", type=int, default=64, help="queries per search_many call [default: %(default)s]")
    parser.add_argument(
        "--only",
        choices=["translations"],
        default=None,
        help="run one table: translations (the en+zh+ru pool with translations=off|together|collapse, the seed)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    mode: Mode | None = None if args.mode == "default" else args.mode
    results = run(
        langs,
        args.limit,
        args.out,
        args.batch,
        mode,
        only=args.only,
        every_question=args.every_question,
        query_means_folds=args.query_means_folds,
    )
    name = "eval" if args.only is None else f"eval-{args.only}"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    if args.only == "translations":
        markdown = render_translations(results["translations"]) + "\n"
        (args.out / f"{name}.md").write_text(markdown, encoding="utf-8")
        print(markdown)
        return 0
    markdown = render(results)
    (args.out / "eval.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
