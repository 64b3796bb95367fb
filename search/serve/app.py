"""The HTTP API: `create_app(...)`, a FastAPI factory over one `SearchService`."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from search import __version__
from search.config import Settings, load_settings
from search.errors import BadInput, Forbidden, SearchError
from search.records import Article, GroupBy, Mode, Translations
from search.serve.guards import install_guards
from search.serve.mcp import create_mcp
from search.serve.reports import router as report_router
from search.serve.schemas import (
    ArticleIn,
    ArticleMatchOut,
    ArticleOut,
    BatchRequest,
    BatchResponse,
    EmbeddingOut,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
    ErrorOut,
    HealthOut,
    HitOut,
    PassageDetailOut,
    ReloadOut,
    SearchRequest,
    SearchResponse,
    SimilarArticlesOut,
    SimilarPassagesOut,
    SnapshotIn,
    SnapshotOut,
    WriteOut,
    written,
)
from search.service import SearchService

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"


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
# A write also answers 409 index_busy when another writer holds the index folder past SEARCH_WRITE_LOCK_TIMEOUT.
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {**_ERRORS, 409: {"model": ErrorOut}}
# A snapshot answers 403 forbidden when SEARCH_SNAPSHOT_DIR is unset (snapshots over HTTP are off).
_SNAPSHOT_ERRORS: dict[int | str, dict[str, Any]] = {**_ERRORS, 403: {"model": ErrorOut}}


def _error(status: int, code: str, message: str) -> JSONResponse:
    # The message may quote the request (a field name, a metadata key), which may hold a lone surrogate.
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": _encodable(message)}})


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: numbers, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _encodable(text: str) -> str:
    """`text` with lone surrogates written as \\udXXX escapes, so that the response can be encoded as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def _watch(svc: SearchService) -> None:
    """Hot reload: serve a newly published index (`search index` swapping `current`) without a restart."""
    while True:
        await asyncio.sleep(svc.settings.watch_seconds)
        try:
            if await run_in_threadpool(svc.reload):
                log.info("now serving build %s", svc.store.build_id)
        except SearchError as exc:
            log.error("new index not loaded, still serving build %s: %s", svc.store.build_id, exc)


def create_app(
    service: SearchService | None = None, settings: Settings | None = None, replica: str = "local"
) -> FastAPI:
    """The app; the index and the model load once, in the lifespan, unless a ready service is given.

    `replica` names the process that answers, in the `X-Search-Replica` header and the `search_replica` metric:
    a Ray Serve replica's id (search/serve/replicas.py), else "local".
    """
    settings = service.settings if service is not None else settings or load_settings()

    mcp = create_mcp(lambda: app.state.service)
    mcp_app = mcp.streamable_http_app(streamable_http_path="/", stateless_http=True, json_response=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or SearchService(settings)
        svc.background_merges = True  # a write answers before the merge it may call for
        # The index, the model (which checks it), the language detector and what a first search would load
        # lazily (jieba's dictionary, the model's first forward pass): /health answers once a search is as fast
        # as any other.
        svc.warm_up()
        app.state.service = svc
        svc.encoder.hook = guard.metrics.observe_encode
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
    guard = install_guards(app, settings, replica=replica)

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
        published_after: Annotated[str | None, Query(description="YYYY-MM-DD, inclusive")] = None,
        published_before: Annotated[str | None, Query(description="YYYY-MM-DD, inclusive")] = None,
        meta: Annotated[list[str] | None, Query(description="metadata equality, as field:value")] = None,
        context: Annotated[int, Query(description="paragraphs of context before and after, 0..10")] = 0,
        highlight: Annotated[bool, Query(description="add the best-matching sentences")] = False,
        group_by: Annotated[GroupBy | None, Query(description="one hit per article")] = None,
        translations: Annotated[
            Translations | None,
            Query(description="collapse (one hit per translation group), together or off [default: the server's]"),
        ] = None,
        diversity: Annotated[
            float, Query(description="0..1: trade relevance for hits unlike those above them (MMR); 0: relevance only")
        ] = 0.0,
    ) -> SearchResponse:
        metadata = {}
        for item in meta or []:
            key, sep, value = item.partition(":")
            if not sep or not key:
                raise BadInput(f"meta: {item!r} should be field:value, e.g. meta=source:Reuters")
            metadata[key] = value
        request = SearchRequest(
            query=q,
            k=k,
            lang=lang or [],
            article=article or [],
            mode=mode,
            offset=offset,
            min_score=min_score,
            published_after=published_after,
            published_before=published_before,
            metadata=metadata,
            context=context,
            highlight=highlight,
            group_by=group_by,
            translations=translations,
            diversity=diversity,
        )
        return SearchResponse.of(svc.search(request.to_query()))

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, summary="Search passages (POST)")
    def search_post(svc: ServiceDep, body: SearchRequest) -> SearchResponse:
        return SearchResponse.of(svc.search(body.to_query()))

    @app.post("/search/batch", response_model=BatchResponse, responses=_ERRORS, summary="Many searches, one call")
    def search_batch(svc: ServiceDep, body: BatchRequest) -> BatchResponse:
        """Up to 256 searches, each with its own k, filters and mode; the queries are encoded in one model call."""
        results = svc.search_many([r.to_query() for r in body.queries])
        return BatchResponse(results=[SearchResponse.of(r) for r in results])

    @app.post("/v1/embeddings", response_model=EmbeddingsResponse, responses=_ERRORS, summary="Embed texts (OpenAI)")
    def embeddings(svc: ServiceDep, body: EmbeddingsRequest) -> EmbeddingsResponse:
        """The model's vectors in OpenAI's shape, for the `openai` client, LangChain and LlamaIndex; the same API
        keys (read scope), body limit and error shape as search."""
        texts = [body.input] if isinstance(body.input, str) else body.input
        vectors, tokens = svc.embed(texts, query=body.input_type == "query", dimensions=body.dimensions)
        data = [EmbeddingOut(index=i, embedding=_encoded(v, body.encoding_format)) for i, v in enumerate(vectors)]
        usage = EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens)
        return EmbeddingsResponse(data=data, model=svc.settings.model, usage=usage)

    @app.get("/passages/{passage_id}/similar", response_model=SimilarPassagesOut, responses=_ERRORS)
    def similar_passages(
        svc: ServiceDep,
        passage_id: str,
        k: Annotated[int, Query(description="number of hits, 1..100")] = 10,
        exclude_same_article: Annotated[bool, Query(description="leave out the passage's own article")] = True,
    ) -> SimilarPassagesOut:
        """More like this: the nearest passages to a passage, in any language."""
        hits = svc.similar_passages(passage_id, k, exclude_same_article)
        return SimilarPassagesOut(passage_id=passage_id, hits=[HitOut.model_validate(h.as_dict()) for h in hits])

    @app.get("/articles/{article_id:path}/similar", response_model=SimilarArticlesOut, responses=_ERRORS)
    def similar_articles(
        svc: ServiceDep,
        article_id: str,
        k: Annotated[int, Query(description="number of articles, 1..100")] = 10,
    ) -> SimilarArticlesOut:
        """Articles that share the most content with this one (a roll-up of paragraph neighbours)."""
        matches = svc.similar_articles(article_id, k)
        return SimilarArticlesOut(article_id=article_id, articles=[ArticleMatchOut(**m.__dict__) for m in matches])

    @app.get("/passages/{passage_id}", response_model=PassageDetailOut, responses=_ERRORS)
    def get_passage(svc: ServiceDep, passage_id: str) -> PassageDetailOut:
        """A passage by id, with the passages of the index that translate it."""
        return PassageDetailOut.model_validate(svc.passage_with_translations(passage_id))

    @app.get("/articles", response_model=list[ArticleOut])
    def list_articles(svc: ServiceDep) -> list[ArticleOut]:
        return [ArticleOut(**a.__dict__) for a in svc.articles()]

    @app.get("/health", response_model=HealthOut)
    def health(svc: ServiceDep) -> HealthOut:
        return HealthOut(**svc.health())

    @app.put("/articles/{article_id:path}", response_model=WriteOut, responses=_WRITE_ERRORS, summary="Add or replace")
    def put_article(svc: WriterDep, article_id: str, body: ArticleIn) -> WriteOut:
        """Upsert one article. The write is visible atomically, and synced to disk, when the call returns; searches
        never wait."""
        article = Article(article_id, body.title or article_id, body.text, "api", body.metadata)
        return written(svc.upsert_article(article))

    @app.delete("/articles/{article_id:path}", response_model=WriteOut, responses=_WRITE_ERRORS, summary="Delete")
    def delete_article(svc: WriterDep, article_id: str) -> WriteOut:
        return written(svc.remove_articles([article_id]))

    @app.post("/admin/reload", response_model=ReloadOut, responses=_ERRORS, summary="Serve the newest index")
    def reload(svc: WriterDep) -> ReloadOut:
        reloaded = svc.reload()
        return ReloadOut(reloaded=reloaded, build_id=svc.store.build_id)

    @app.post("/admin/compact", response_model=WriteOut, responses=_WRITE_ERRORS, summary="Merge all segments")
    def compact(svc: WriterDep) -> WriteOut:
        """Merge every segment into one, as a full build of the live articles (means, BM25 statistics and
        translation groups refit; no passage embedded again). Writes wait for it; searches do not."""
        return written(svc.compact())

    @app.post("/admin/snapshot", response_model=SnapshotOut, responses=_SNAPSHOT_ERRORS, summary="Snapshot the index")
    def snapshot(svc: WriterDep, body: SnapshotIn) -> SnapshotOut:
        """Copy the published build into SEARCH_SNAPSHOT_DIR/<name>, consistent (one build, checked against its
        manifest) and self-contained: an index folder `search serve --index` uses as is. Writes keep going."""
        return SnapshotOut(**svc.snapshot_named(body.name).as_dict())

    app.include_router(report_router)
    app.mount("/mcp", mcp_app)
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def web_page() -> FileResponse:
        """The search page for people (search/serve/web/); the API stays where it is."""
        return FileResponse(WEB / "index.html")

    return app
