"""`search report`: a batch similarity report from the command line, with a progress bar and the seconds per stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


class _Bars:
    """One tqdm bar per report stage, on stderr."""

    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: tqdm[None] | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = self._tqdm(total=total, desc=stage, disable=not self.enabled, leave=False)
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def report(
    out: Annotated[Path, typer.Option("--out", help="folder for pairs.csv, groups.json, articles.csv, report.html")],
    index: Annotated[
        Path | None, typer.Option("--index", help="index folder [default: SEARCH_INDEX_DIR or index/]")
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            help="cosine for 'related' pairs: 0.5 for every language pair or en-zh=0.45 for one (repeatable) "
            "[default: calibrated per language pair]",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="nearest neighbours per passage and language")] = 10,
    articles: Annotated[
        list[str] | None, typer.Option("--articles", "--article", help="only these article ids (repeatable)")
    ] = None,
    langs: Annotated[
        list[str] | None, typer.Option("--langs", "--lang", help="only these languages (repeatable)")
    ] = None,
    align: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--align",
            help="align two articles paragraph by paragraph: ARTICLE or ARTICLE@LANG, e.g. --align story@en story@zh",
        ),
    ] = None,
    within_article: Annotated[
        bool | None,
        typer.Option(
            "--within-article/--across-articles",
            help="also pair passages of the same article [default: only when the selection holds one article]",
        ),
    ] = None,
    fdr: Annotated[float, typer.Option(help="target false discovery rate of 'translation' labels")] = 0.05,
    related_quantile: Annotated[
        float, typer.Option(help="calibrated 'related' threshold: this quantile of random-pair cosines")
    ] = 0.999,
    dup_threshold: Annotated[float, typer.Option(help="cosine for 'near-duplicate' (same language)")] = 0.9,
    length_ratio: Annotated[float, typer.Option(help="translations' length ratio tolerance (x the usual ratio)")] = 2.0,
    approximate: Annotated[
        bool, typer.Option("--approximate", help="IVF search per language (states its measured recall)")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="query passages per batch (bounds memory)")] = 2048,
    top: Annotated[int, typer.Option(help="pairs per label listed in report.html")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print summary.json as the last line")] = False,
) -> None:
    """Near-duplicates, translations and related passages across articles and languages: CSV, JSON and HTML."""
    from search.config import Settings
    from search.index.store import Store, read_manifest
    from search.reports.run import ReportOptions, run_report

    options = ReportOptions(
        k=k,
        thresholds=tuple(threshold or ()),
        articles=tuple(articles or ()),
        langs=tuple(langs or ()),
        within_article=within_article,
        align=align,
        related_quantile=related_quantile,
        dup_threshold=dup_threshold,
        fdr=fdr,
        length_ratio=length_ratio,
        batch_size=batch_size,
        approximate=approximate,
        top=top,
    )
    options.validate()
    index_dir = index if index is not None else Settings().index_dir
    store = Store(*read_manifest(index_dir))
    bars = _Bars(sys.stderr.isatty() or not as_json)
    try:
        summary = run_report(store, options, out, progress=bars)
    finally:
        bars.close()
        store.close()
    counts = ", ".join(f"{v} {k}" for k, v in summary.pairs.items())
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in summary.stages.items())
    typer.echo(
        f"report on {summary.passages} passages in {summary.articles} article(s): {counts} pairs, "
        f"{summary.groups} groups, {summary.article_pairs} article pairs in {summary.seconds:.1f}s [{stages}] "
        f"-> {out}/report.html",
        err=as_json,
    )
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
