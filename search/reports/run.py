"""Running a similarity report over an index: selection, timed stages, and the files written to the output folder.

Files: `pairs.csv`, `groups.json`, `articles.csv` (the article matrix, long format, with each article's related
articles ranked), `alignment.csv` (with `align`), `summary.json` (counts, calibration, timings) and `report.html`.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from search.errors import BadInput
from search.index.store import Store
from search.records import Passage
from search.reports import compute as rp
from search.reports.html import write_html
from search.reports.results import ReportData, ReportSummary
from search.timing import Progress, no_progress, stage

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("a_passage_id", "a_article_id", "a_lang", "a_text", "b_passage_id", "b_article_id", "b_lang", "b_text")
_MAX_ALIGN_CELLS = 25_000_000


def parse_thresholds(specs: Sequence[str]) -> dict[str, float]:
    """'0.5' (every language pair) or 'en-zh=0.45' (one pair, either order) -> {'*' or 'en-zh': value}."""
    out: dict[str, float] = {}
    for spec in specs:
        key, _, value = spec.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise BadInput(f"threshold {spec!r}: expected a number like 0.5 or a pair like en-zh=0.45") from None
        if key and key.count("-") != 1:
            raise BadInput(f"threshold {spec!r}: name the language pair as LANG-LANG, e.g. en-zh=0.45")
        out["-".join(sorted(key.split("-"))) if key else "*"] = number
    return out


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ReportOptions:
    """What to compare and how: the one list of report options, with their defaults and help, which the command
    line (`search report`) and the API (`POST /reports`) read."""

    k: int = _option(10, "nearest neighbours per passage and language, 2..100")
    thresholds: tuple[str, ...] = _option(
        (),
        "cosine for 'related' pairs: 0.5 for every language pair or en-zh=0.45 for one (repeatable); "
        "none: calibrated per language pair",
    )
    articles: tuple[str, ...] = _option((), "only these article ids (repeatable)")
    langs: tuple[str, ...] = _option((), "only these languages (repeatable)")
    within_article: bool | None = _option(
        None, "also pair passages of the same article; default: only when the selection holds one article"
    )
    align: tuple[str, str] | None = _option(
        None, "align two articles paragraph by paragraph: ARTICLE or ARTICLE@LANG, e.g. story@en story@zh"
    )
    related_quantile: float = _option(0.999, "calibrated 'related' threshold: this quantile of random-pair cosines")
    dup_threshold: float = _option(0.9, "cosine for 'near-duplicate' (same language)")
    fdr: float = _option(0.05, "target false discovery rate of 'translation' labels")
    length_ratio: float = _option(2.0, "translations' length ratio tolerance (x the usual ratio)")
    batch_size: int = _option(2048, "query passages per batch (bounds memory)")
    approximate: bool = _option(False, "IVF search per language (the summary states its measured recall)")
    top: int = _option(100, "pairs per label listed in report.html")

    @classmethod
    def default(cls, name: str) -> Any:
        return {f.name: f.default for f in fields(cls)}[name]

    @classmethod
    def help(cls, name: str) -> str:
        return str({f.name: f.metadata["help"] for f in fields(cls)}[name])

    def validate(self) -> None:
        checks = (
            (2 <= self.k <= 100, f"k: {self.k} is outside 2..100"),
            (0 < self.related_quantile < 1, f"related_quantile: {self.related_quantile} is outside (0, 1)"),
            (0 < self.dup_threshold <= 1, f"dup_threshold: {self.dup_threshold} is outside (0, 1]"),
            (0 < self.fdr < 1, f"fdr: {self.fdr} is outside (0, 1)"),
            (self.length_ratio >= 1, f"length_ratio: {self.length_ratio} must be at least 1"),
            (self.batch_size >= 1, f"batch_size: {self.batch_size} must be at least 1"),
            (self.top >= 0, f"top: {self.top} must not be negative"),
        )
        for ok, message in checks:
            if not ok:
                raise BadInput(message)
        parse_thresholds(self.thresholds)


def centered_vectors(store: Store, rows: np.ndarray, batch: int = 8192) -> np.ndarray:
    """The index's centered, normalized vectors of `rows` (positions in `store.all_passages()`), copied batch by
    batch (the raw ones, re-centered, if the index cannot give its vectors back)."""
    out = np.empty((len(rows), store.dimension), dtype=np.float32)
    live = store.live_rows()
    if len(store.segments) > 1 or len(live) != store.segments[0].size:  # segments, or deletions: row by row
        for s in range(0, len(rows), batch):
            out[s : s + batch] = store.vectors_at(live[rows[s : s + batch]])
        return out
    index = store.segments[0].index
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if isinstance(inner, faiss.IndexFlat):
        xb = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d).reshape(inner.ntotal, inner.d)
        for s in range(0, len(rows), batch):
            out[s : s + batch] = xb[rows[s : s + batch]]
        return out
    raw = store.raw_vectors()
    langs = [p.lang for p in store.all_passages()]
    for s in range(0, len(rows), batch):
        chunk = rows[s : s + batch]
        out[s : s + batch] = store.centering.passages(raw[chunk], [langs[r] for r in chunk])
    return out


def _select(passages: Sequence[Passage], options: ReportOptions) -> np.ndarray:
    """Rows of the selected passages, ordered by language then row (so each language's vectors are contiguous)."""
    known_articles = {p.article_id for p in passages}
    known_langs = Counter(p.lang for p in passages)
    missing = [a for a in options.articles if a not in known_articles]
    if missing:
        raise BadInput(f"articles not in the index: {', '.join(missing[:5])}; list them with GET /articles")
    absent = [lang for lang in options.langs if lang not in known_langs]
    if absent:
        have = ", ".join(f"{k} ({v})" for k, v in sorted(known_langs.items()))
        raise BadInput(f"no passages in language {', '.join(absent)}; the index has {have}")
    arts, langs = set(options.articles), set(options.langs)
    rows = [
        i
        for i, p in enumerate(passages)
        if (not arts or p.article_id in arts) and (not langs or p.lang in langs) and p.text.strip()
    ]
    if len(rows) < 2:
        raise BadInput("the selection holds fewer than 2 passages: widen --articles / --langs or index more text")
    return np.array(sorted(rows, key=lambda r: (passages[r].lang, r)), dtype=np.int64)


def _codes(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    names = sorted(set(values))
    index = {v: i for i, v in enumerate(names)}
    return np.array([index[v] for v in values], dtype=np.int64), names


def _align_rows(spec: str, selected: Sequence[Passage]) -> list[int]:
    """Positions in the selection of 'ARTICLE' or 'ARTICLE@LANG', in reading order."""
    article, lang = spec, None
    if not any(p.article_id == spec for p in selected) and "@" in spec:
        article, lang = spec.rsplit("@", 1)
    found = [i for i, p in enumerate(selected) if p.article_id == article and (lang is None or p.lang == lang)]
    if not found:
        raise BadInput(f"align: {spec!r} names no selected passages; give ARTICLE or ARTICLE@LANG from GET /articles")
    return sorted(found, key=lambda i: (selected[i].paragraph, selected[i].part))


def alignment(
    x: np.ndarray, rows_a: list[int], rows_b: list[int], threshold: float
) -> list[tuple[list[int], list[int], float | None, str]]:
    """Aligned groups and unaligned rows of two passage sequences in reading order: (rows A, rows B, score, kind)."""
    if len(rows_a) * len(rows_b) > _MAX_ALIGN_CELLS:
        raise BadInput(f"align: {len(rows_a)} x {len(rows_b)} passages is too many; align smaller articles")
    groups = rp.align(x[rows_a] @ x[rows_b].T, threshold)
    out: list[tuple[list[int], list[int], float | None, str]] = []
    i = j = 0
    for ga, gb, score in [*groups, ([len(rows_a)], [len(rows_b)], 0.0)]:
        out += [([rows_a[r]], [], None, "only A") for r in range(i, ga[0])]
        out += [([], [rows_b[r]], None, "only B") for r in range(j, gb[0])]
        if ga[0] < len(rows_a):
            out.append(([rows_a[r] for r in ga], [rows_b[r] for r in gb], score, f"{len(ga)}-{len(gb)}"))
        i, j = ga[-1] + 1, gb[-1] + 1
    return out


# The kNN stage: `compute.knn_by_lang`'s signature; `search.reports.distributed.knn_on_ray` runs it on Ray.
Knn = Callable[..., rp.Neighbours]


def run_report(
    store: Store, options: ReportOptions, out_dir: Path, progress: Progress = no_progress, knn: Knn | None = None
) -> ReportSummary:
    """Compute a report over the index of `store` and write its files into `out_dir`; the kNN stage by `knn`
    (default: here, `compute.knn_by_lang`)."""
    options.validate()
    start, stages = time.perf_counter(), dict[str, float]()
    all_passages = store.all_passages()
    rows = _select(all_passages, options)
    ps = [all_passages[r] for r in rows]
    lang, lang_names = _codes([p.lang for p in ps])
    article, article_names = _codes([p.article_id for p in ps])
    unit, _ = _codes([f"{p.article_id}\x1f{p.paragraph:09d}" for p in ps])
    within = options.within_article if options.within_article is not None else len(article_names) == 1
    align_rows = [_align_rows(s, ps) for s in options.align] if options.align else None
    with stage(stages, "vectors", progress):
        x = centered_vectors(store, rows)
    with stage(stages, "knn", progress):
        nb = (knn or rp.knn_by_lang)(
            x, lang, len(lang_names), article, options.k, options.batch_size, not within, options.approximate, progress
        )
    with stage(stages, "label", progress):
        label_options = rp.LabelOptions(
            parse_thresholds(options.thresholds),
            options.related_quantile,
            options.dup_threshold,
            options.fdr,
            options.length_ratio,
            exclude_group=not within,
        )
        lengths = np.array([len(p.text) for p in ps])
        pairs = rp.label_pairs(x, nb, lang, lang_names, article, lengths, label_options)
    with stage(stages, "groups", progress):
        groups = rp.groups(pairs, len(ps))
    with stage(stages, "articles", progress):
        matrix = rp.article_matrix(nb, pairs, article, unit, within)
    aligned = None
    if align_rows is not None:
        with stage(stages, "align", progress):
            la, lb = lang_names[lang[align_rows[0][0]]], lang_names[lang[align_rows[1][0]]]
            cal = next(c for c in pairs.calibration if {c.lang_a, c.lang_b} == {la, lb})
            aligned = alignment(x, align_rows[0], align_rows[1], cal.background.get("q0.99", cal.related))
    by_langs: dict[str, Counter[str]] = {}
    for a, b, lab in zip(lang[pairs.a], lang[pairs.b], pairs.label, strict=True):
        key = "-".join(sorted((lang_names[a], lang_names[b])))
        by_langs.setdefault(key, Counter())[rp.LABELS[lab]] += 1
    summary = ReportSummary(
        out_dir=str(out_dir),
        passages=len(ps),
        articles=len(article_names),
        languages={name: int((lang == i).sum()) for i, name in enumerate(lang_names)},
        within_article=within,
        k=options.k,
        search=(
            "exact (every inner product computed, recall 1.0)"
            if nb.recall is None
            else f"approximate (IVF per language), recall@{options.k} {nb.recall:.3f} measured against exact search"
        ),
        recall=nb.recall,
        pairs={name: int((pairs.label == i).sum()) for i, name in enumerate(rp.LABELS)},
        pairs_by_languages={k: dict(v) for k, v in sorted(by_langs.items())},
        groups=len(groups),
        article_pairs=len(matrix.a),
        aligned=None if aligned is None else sum(1 for g in aligned if g[2] is not None),
        calibration=[asdict(c) for c in pairs.calibration],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with stage(stages, "write", progress):
        data = ReportData(ps, article_names, lang, lang_names, nb, pairs, groups, matrix, aligned)
        summary.files = write_tables(out_dir, data)
    with stage(stages, "render", progress):
        summary.stages, summary.seconds = stages, time.perf_counter() - start
        summary.files += write_html(out_dir, data, summary, options.top)
    summary.stages, summary.seconds = stages, time.perf_counter() - start
    summary.files.append("summary.json")
    (out_dir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2, ensure_ascii=False), "utf-8")
    return summary


def write_tables(out_dir: Path, data: ReportData) -> list[str]:
    """pairs.csv, groups.json, articles.csv and (if aligned) alignment.csv; returns the file names."""
    ps, pairs, m = data.passages, data.pairs, data.matrix

    def side(p: Passage) -> list[str]:
        return [p.passage_id, p.article_id, p.lang, p.text]

    order = np.lexsort((-pairs.score, pairs.label))
    with (out_dir / "pairs.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*PAIR_COLUMNS, "score", "label"])
        for i in order:
            a, b = ps[pairs.a[i]], ps[pairs.b[i]]
            w.writerow([*side(a), *side(b), f"{pairs.score[i]:.4f}", rp.LABELS[pairs.label[i]]])
    group_of = np.full(len(ps), -1)
    for gid, members in enumerate(data.groups):
        group_of[members] = gid
    strong = (pairs.label != rp.RELATED) & (group_of[pairs.a] >= 0)
    labels: list[Counter[str]] = [Counter() for _ in data.groups]
    for gid, lab in zip(group_of[pairs.a[strong]], pairs.label[strong], strict=True):
        labels[gid][rp.LABELS[lab]] += 1
    groups = [
        {
            "group_id": gid + 1,
            "size": len(members),
            "languages": sorted({ps[r].lang for r in members}),
            "articles": sorted({ps[r].article_id for r in members}),
            "labels": dict(labels[gid]),
            "members": [
                {k: getattr(ps[r], k) for k in ("passage_id", "article_id", "lang", "paragraph", "text")}
                for r in members
            ],
        }
        for gid, members in enumerate(data.groups)
    ]
    (out_dir / "groups.json").write_text(
        json.dumps({"count": len(groups), "groups": groups}, indent=1, ensure_ascii=False), "utf-8"
    )
    names = data.article_names
    with (out_dir / "articles.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["a_article_id", "b_article_id", "a_paragraphs", "matched_paragraphs", "share", "mean_best_score",
                    "pairs", "rank"])  # fmt: skip
        for i in np.lexsort((m.rank, m.a)):
            w.writerow([names[m.a[i]], names[m.b[i]], m.paragraphs[i], m.matched[i], f"{m.share[i]:.4f}",
                        f"{m.mean_best[i]:.4f}", m.pairs[i], m.rank[i]])  # fmt: skip
    files = ["pairs.csv", "groups.json", "articles.csv"]
    if data.alignment is not None:
        with (out_dir / "alignment.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["a_paragraphs", "a_passage_ids", "a_text", "b_paragraphs", "b_passage_ids", "b_text",
                        "score", "kind"])  # fmt: skip
            for ra, rb, score, kind in data.alignment:
                cells = []
                for rows in (ra, rb):
                    cells += [" ".join(str(ps[r].paragraph) for r in rows), " ".join(ps[r].passage_id for r in rows),
                              "\n".join(ps[r].text for r in rows)]  # fmt: skip
                w.writerow([*cells, "" if score is None else f"{score:.4f}", kind])
        files.append("alignment.csv")
    return files
