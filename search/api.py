"""The HTTP API: `create_app(...)`, a FastAPI factory over one `SearchService`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from search import __version__
from search.config import Settings
from search.errors import SearchError
from search.records import Hit as HitRecord
from search.records import Passage as PassageRecord
from search.service import SearchQuery, SearchResult, SearchService

log = logging.getLogger(__name__)


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


class HitOut(PassageOut):
    rank: int
    score: float = Field(description="cosine similarity of the centered query and passage vectors; higher is better")

    @classmethod
    def of_hit(cls, h: HitRecord) -> HitOut:
        return cls(rank=h.rank, score=round(h.score, 6), **h.passage.__dict__)


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"query": "普京如何看待俄美关系?", "k": 5, "lang": ["en"]}]}
    )
    query: str = Field(description="the question or text to search for, in any language")
    k: int = Field(10, description="number of hits, 1..100")
    lang: list[str] = Field(default_factory=list, description="only passages in these languages")
    article: list[str] = Field(default_factory=list, description="only passages of these articles")


class SearchResponse(BaseModel):
    query: str
    query_lang: str = Field(description="detected language of the query")
    took_ms: float
    hits: list[HitOut]

    @classmethod
    def of(cls, r: SearchResult) -> SearchResponse:
        return cls(
            query=r.query,
            query_lang=r.query_lang,
            took_ms=round(r.took_ms, 2),
            hits=[HitOut.of_hit(h) for h in r.hits],
        )


class ArticleOut(BaseModel):
    article_id: str
    title: str
    languages: list[str]
    passages: int
    metadata: dict[str, Any]


class HealthOut(BaseModel):
    status: str
    model: str | None
    index_size: int
    build_id: str
    built_at: str | None
    centering: dict[str, Any] | None


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error kind")
    message: str = Field(description="what is wrong and what to do")


class ErrorOut(BaseModel):
    """Every error answers in this one shape."""

    error: ErrorBody


def get_service(request: Request) -> SearchService:
    service: SearchService = request.app.state.service
    return service


ServiceDep = Annotated[SearchService, Depends(get_service)]
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut} for s in (404, 422, 503)}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def create_app(service: SearchService | None = None, settings: Settings | None = None) -> FastAPI:
    """The app; the index and the model load once, in the lifespan, unless a ready service is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or SearchService(settings)
        svc.store  # noqa: B018 - load the index (and the model, which checks it) before serving
        svc.detector  # noqa: B018
        app.state.service = svc
        yield

    app = FastAPI(
        title="search",
        version=__version__,
        description="Multilingual semantic search over articles: ranked passages across languages.",
        lifespan=lifespan,
    )

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
    ) -> SearchResponse:
        result = svc.search(SearchQuery(q, k, lang or (), article or ()))
        return SearchResponse.of(result)

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, summary="Search passages (POST)")
    def search_post(svc: ServiceDep, body: SearchRequest) -> SearchResponse:
        return SearchResponse.of(svc.search(SearchQuery(body.query, body.k, body.lang, body.article)))

    @app.get("/passages/{passage_id}", response_model=PassageOut, responses=_ERRORS)
    def get_passage(svc: ServiceDep, passage_id: str) -> PassageOut:
        return PassageOut.of(svc.passage(passage_id))

    @app.get("/articles", response_model=list[ArticleOut])
    def list_articles(svc: ServiceDep) -> list[ArticleOut]:
        return [ArticleOut(**a.__dict__) for a in svc.articles()]

    @app.get("/health", response_model=HealthOut)
    def health(svc: ServiceDep) -> HealthOut:
        return HealthOut(**svc.health())

    return app
