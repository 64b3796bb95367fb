"""The HTTP API: `create_app(...)`, a FastAPI factory over one `SearchService`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from search import __version__
from search.config import Settings
from search.errors import BadInput, Forbidden, SearchError
from search.index.build import BuildSummary
from search.records import Article
from search.records import Hit as HitRecord
from search.records import Passage as PassageRecord
from search.serve.guards import install_guards
from search.serve.mcp import create_mcp
from search.serve.reports import router as report_router
from search.service import SearchQuery, SearchResult, SearchService

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"


class PassageOut(BaseModel):
    passage_id: str = Field(description="stable across rebuilds of the same text in the same article")
    article_id: str
    title: str
    paragraph: int = Field(description="0-based paragraph number in the article")
    part: int = Field(description="0-based part of a paragraph too long for the model")
    start: int = Field(description="character offset of the passage in the article text")
    end: int
    lang: str = Field(description="ISO 639-1 code of the passage's language, 'und' if undetermined")
    section: str | None = Field(None, description="the heading the passage stands under, if any")
    text: str

    @classmethod
    def of(cls, p: PassageRecord) -> PassageOut:
        return cls(**p.__dict__)


class ContextOut(PassageOut):
    position: Literal["before", "after"] = Field(description="where this context passage stands relative to the hit")


class HighlightOut(BaseModel):
    start: int = Field(description="character offset of the sentence in the hit's text")
    end: int
    text: str
    score: float = Field(description="cosine similarity of the sentence to the query")


class HitOut(PassageOut):
    rank: int
    score: float = Field(
        description="dense: cosine of the centered query and passage vectors; lexical: BM25; "
        "hybrid: reciprocal rank fusion, sum of weight / (rrf_k + rank) over the lists. Higher is better."
    )
    ranks: dict[str, int] = Field(default_factory=dict, description="rank of the passage in each fused list")
    context: list[ContextOut] = Field(default_factory=list, description="neighbouring passages, when context > 0")
    highlights: list[HighlightOut] = Field(default_factory=list, description="best sentences, when highlight=true")
    article_matches: int | None = Field(None, description="candidates from the same article, with group_by=article")

    @classmethod
    def of_hit(cls, h: HitRecord) -> HitOut:
        return cls(
            rank=h.rank,
            score=round(h.score, 6),
            ranks=h.ranks,
            context=[ContextOut(position=pos, **p.__dict__) for pos, p in h.context],
            highlights=[HighlightOut(**hl.__dict__) for hl in h.highlights],
            article_matches=h.article_matches,
            **h.passage.__dict__,
        )


Mode = Literal["dense", "lexical", "hybrid"]


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"query": "普京如何看待俄美关系?", "k": 5, "lang": ["en"], "mode": "hybrid", "context": 1}]
        },
    )
    query: str = Field(description="the question or text to search for, in any language")
    k: int = Field(10, description="number of hits, 1..100")
    lang: list[str] = Field(default_factory=list, description="only passages in these languages")
    article: list[str] = Field(default_factory=list, description="only passages of these articles")
    mode: Mode | None = Field(None, description="dense, lexical or hybrid [default: the server's]")
    offset: int = Field(0, description="skip this many hits (stable pagination)")
    min_score: float | None = Field(None, description="drop hits scoring below this")
    published_after: str | None = Field(None, description="only articles published on or after (ISO date)")
    published_before: str | None = Field(None, description="only articles published on or before (ISO date)")
    metadata: dict[str, str] = Field(default_factory=dict, description="equality on article metadata fields")
    context: int = Field(0, description="paragraphs before and after each hit to include, 0..10")
    highlight: bool = Field(False, description="add the sentences most similar to the query")
    group_by: Literal["article"] | None = Field(None, description="one hit per article")

    def to_query(self) -> SearchQuery:
        return SearchQuery(
            self.query, self.k, self.lang, self.article, self.mode, self.offset, self.min_score,
            self.published_after, self.published_before, self.metadata, self.context, self.highlight, self.group_by,
        )  # fmt: skip


class SearchResponse(BaseModel):
    query: str
    query_lang: str = Field(description="detected language of the query")
    mode: str = Field(description="how the hits were ranked")
    took_ms: float
    hits: list[HitOut]

    @classmethod
    def of(cls, r: SearchResult) -> SearchResponse:
        return cls(
            query=r.query,
            query_lang=r.query_lang,
            mode=r.mode,
            took_ms=round(r.took_ms, 2),
            hits=[HitOut.of_hit(h) for h in r.hits],
        )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[SearchRequest] = Field(min_length=1, max_length=256, description="1..256 searches")


class BatchResponse(BaseModel):
    results: list[SearchResponse] = Field(description="one response per query, in order")


class SimilarPassagesOut(BaseModel):
    passage_id: str
    hits: list[HitOut]


class ArticleMatchOut(BaseModel):
    article_id: str
    title: str
    score: float = Field(description="mean over this article's passages of the best match in the other article")
    matched_passages: int = Field(description="this article's passages with a neighbour in the other article")


class SimilarArticlesOut(BaseModel):
    article_id: str
    articles: list[ArticleMatchOut]


class ArticleOut(BaseModel):
    article_id: str
    title: str
    languages: list[str]
    passages: int
    metadata: dict[str, Any]


class VectorIndexOut(BaseModel):
    type: str = Field(description="the FAISS index, e.g. IndexIDMap2(IndexHNSWSQ(QT_8bit))")
    kind: str = Field(description="flat (exact), hnsw_sq8 or ivf_pq_sq8 (approximate)")
    metric: str = "inner_product"
    exact: bool
    params: dict[str, Any] = Field(description="build parameters and the search parameters tuned at build time")
    recall_at_10: float | None = Field(description="recall@10 against exact search on held-out vectors at build")
    target_recall: float | None = Field(None, description="the recall@10 the search parameters were tuned to")
    tune_queries: int = Field(0, description="held-out vectors the recall was measured on")
    build_seconds: float | None = None
    bytes_per_vector: float | None = Field(None, description="serialized index size per vector")


class HealthOut(BaseModel):
    status: str
    model: str | None
    index_size: int
    build_id: str
    built_at: str | None
    centering: dict[str, Any] | None
    vector_index: VectorIndexOut | None = None


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error kind")
    message: str = Field(description="what is wrong and what to do")


class ErrorOut(BaseModel):
    """Every error answers in this one shape."""

    error: ErrorBody


async def get_service(request: Request) -> SearchService:
    # async: a sync dependency costs every request one more hop through the thread pool, for a dict lookup.
    service: SearchService = request.app.state.service
    return service


ServiceDep = Annotated[SearchService, Depends(get_service)]


async def writes_enabled(svc: ServiceDep) -> SearchService:
    if not svc.settings.writes:
        raise Forbidden("writes are off: start the server with `search serve --writes` (SEARCH_WRITES=true)")
    return svc


WriterDep = Annotated[SearchService, Depends(writes_enabled)]
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut} for s in (404, 422, 503)}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


async def _watch(svc: SearchService) -> None:
    """Hot reload: serve a newly published index (`search index` swapping `current`) without a restart."""
    while True:
        await asyncio.sleep(svc.settings.watch_seconds)
        try:
            if await run_in_threadpool(svc.reload):
                log.info("now serving build %s", svc.store.build_id)
        except SearchError as exc:
            log.error("new index not loaded, still serving build %s: %s", svc.store.build_id, exc)


class ArticleIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "First paragraph.\n\nSecond paragraph.", "title": "A title"}]},
    )
    text: str = Field(description="the article text; blank lines separate paragraphs")
    title: str | None = Field(None, description="[default: the article id]")
    metadata: dict[str, Any] = Field(default_factory=dict, description="url, published, source, lang, ...")


class WriteOut(BaseModel):
    build_id: str
    articles: int
    passages: int
    embedded: int = Field(description="passages sent to the model")
    reused: int = Field(description="passages whose vectors came from the embedding cache")
    removed: int = Field(description="passages of the previous build that are gone")


class ReloadOut(BaseModel):
    reloaded: bool
    build_id: str


def _written(summary: BuildSummary) -> WriteOut:
    return WriteOut(**{k: getattr(summary, k) for k in WriteOut.model_fields})


def create_app(service: SearchService | None = None, settings: Settings | None = None) -> FastAPI:
    """The app; the index and the model load once, in the lifespan, unless a ready service is given."""
    settings = service.settings if service is not None else settings or Settings()

    mcp = create_mcp(lambda: app.state.service)
    mcp_app = mcp.streamable_http_app(streamable_http_path="/", stateless_http=True, json_response=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or SearchService(settings)
        svc.store  # noqa: B018 - load the index (and the model, which checks it) before serving
        svc.detector  # noqa: B018
        app.state.service = svc
        svc.encode_hook = guard.metrics.observe_encode
        watcher = asyncio.create_task(_watch(svc)) if svc.settings.watch_seconds > 0 else None
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            if watcher is not None:
                watcher.cancel()
            svc.close()  # the micro-batching worker: queued encodes fail at once instead of hanging

    app = FastAPI(
        title="search",
        version=__version__,
        description="Multilingual semantic search over articles: ranked passages across languages.",
        lifespan=lifespan,
    )
    guard = install_guards(app, settings)

    @app.exception_handler(SearchError)
    async def on_search_error(request: Request, exc: SearchError) -> JSONResponse:
        return _error(exc.http_status, exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return _error(422, "bad_input", "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.get("/search", response_model=SearchResponse, responses=_ERRORS, summary="Search passages (GET)")
    def search_get(
        svc: ServiceDep,
        q: Annotated[str, Query(description="the query, any language", examples=["普京如何看待俄美关系?"])],
        k: Annotated[int, Query(description="number of hits, 1..100")] = 10,
        lang: Annotated[list[str] | None, Query(description="only these passage languages")] = None,
        article: Annotated[list[str] | None, Query(description="only these article ids")] = None,
        mode: Annotated[Mode | None, Query(description="dense, lexical or hybrid")] = None,
        offset: Annotated[int, Query(description="skip this many hits")] = 0,
        min_score: Annotated[float | None, Query(description="drop hits scoring below this")] = None,
        published_after: Annotated[str | None, Query(description="ISO date, inclusive")] = None,
        published_before: Annotated[str | None, Query(description="ISO date, inclusive")] = None,
        meta: Annotated[list[str] | None, Query(description="metadata equality, as field:value")] = None,
        context: Annotated[int, Query(description="paragraphs of context before and after, 0..10")] = 0,
        highlight: Annotated[bool, Query(description="add the best-matching sentences")] = False,
        group_by: Annotated[Literal["article"] | None, Query(description="one hit per article")] = None,
    ) -> SearchResponse:
        metadata = {}
        for item in meta or []:
            key, sep, value = item.partition(":")
            if not sep or not key:
                raise BadInput(f"meta: {item!r} should be field:value, e.g. meta=source:Reuters")
            metadata[key] = value
        query = SearchQuery(
            q, k, lang or (), article or (), mode, offset, min_score, published_after, published_before, metadata,
            context, highlight, group_by,
        )  # fmt: skip
        return SearchResponse.of(svc.search(query))

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, summary="Search passages (POST)")
    def search_post(svc: ServiceDep, body: SearchRequest) -> SearchResponse:
        return SearchResponse.of(svc.search(body.to_query()))

    @app.post("/search/batch", response_model=BatchResponse, responses=_ERRORS, summary="Many searches, one call")
    def search_batch(svc: ServiceDep, body: BatchRequest) -> BatchResponse:
        """Up to 256 searches, each with its own k, filters and mode; the queries are encoded in one model call."""
        results = svc.search_many([r.to_query() for r in body.queries])
        return BatchResponse(results=[SearchResponse.of(r) for r in results])

    @app.get("/passages/{passage_id}/similar", response_model=SimilarPassagesOut, responses=_ERRORS)
    def similar_passages(
        svc: ServiceDep,
        passage_id: str,
        k: Annotated[int, Query(description="number of hits, 1..100")] = 10,
        exclude_same_article: Annotated[bool, Query(description="leave out the passage's own article")] = True,
    ) -> SimilarPassagesOut:
        """More like this: the nearest passages to a passage, in any language."""
        hits = svc.similar_passages(passage_id, k, exclude_same_article)
        return SimilarPassagesOut(passage_id=passage_id, hits=[HitOut.of_hit(h) for h in hits])

    @app.get("/articles/{article_id:path}/similar", response_model=SimilarArticlesOut, responses=_ERRORS)
    def similar_articles(
        svc: ServiceDep,
        article_id: str,
        k: Annotated[int, Query(description="number of articles, 1..100")] = 10,
    ) -> SimilarArticlesOut:
        """Articles that share the most content with this one (a roll-up of paragraph neighbours)."""
        matches = svc.similar_articles(article_id, k)
        return SimilarArticlesOut(article_id=article_id, articles=[ArticleMatchOut(**m.__dict__) for m in matches])

    @app.get("/passages/{passage_id}", response_model=PassageOut, responses=_ERRORS)
    def get_passage(svc: ServiceDep, passage_id: str) -> PassageOut:
        return PassageOut.of(svc.passage(passage_id))

    @app.get("/articles", response_model=list[ArticleOut])
    def list_articles(svc: ServiceDep) -> list[ArticleOut]:
        return [ArticleOut(**a.__dict__) for a in svc.articles()]

    @app.get("/health", response_model=HealthOut)
    def health(svc: ServiceDep) -> HealthOut:
        return HealthOut(**svc.health())

    @app.put("/articles/{article_id:path}", response_model=WriteOut, responses=_ERRORS, summary="Add or replace")
    def put_article(svc: WriterDep, article_id: str, body: ArticleIn) -> WriteOut:
        """Upsert one article. The write is visible atomically when the call returns; searches never wait."""
        article = Article(article_id, body.title or article_id, body.text, "api", body.metadata)
        return _written(svc.upsert_article(article))

    @app.delete("/articles/{article_id:path}", response_model=WriteOut, responses=_ERRORS, summary="Delete")
    def delete_article(svc: WriterDep, article_id: str) -> WriteOut:
        return _written(svc.remove_articles([article_id]))

    @app.post("/admin/reload", response_model=ReloadOut, responses=_ERRORS, summary="Serve the newest index")
    def reload(svc: WriterDep) -> ReloadOut:
        reloaded = svc.reload()
        return ReloadOut(reloaded=reloaded, build_id=svc.store.build_id)

    app.include_router(report_router)
    app.mount("/mcp", mcp_app)
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def web_page() -> FileResponse:
        """The search page for people (search/serve/web/); the API stays where it is."""
        return FileResponse(WEB / "index.html")

    return app
