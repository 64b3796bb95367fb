"""Search as MCP tools (the official `mcp` SDK, streamable HTTP), mounted in the same app at /mcp."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from search.errors import SearchError
from search.service import SearchQuery

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from search.service import SearchService

_INSTRUCTIONS = (
    "Multilingual semantic search over a corpus of articles. Ask in any language: a question in Chinese finds "
    "English evidence and the other way round. Use search_passages for evidence, get_passage to read a passage "
    "by id, and similar_passages for more like a passage (translations and related text in any language)."
)


def _passage(p: Any) -> dict[str, Any]:
    return dict(p.__dict__)


def create_mcp(get_service: Callable[[], SearchService]) -> MCPServer:
    """An MCP server whose tools call the app's one `SearchService`."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("search", instructions=_INSTRUCTIONS)

    def run(fn: Callable[[SearchService], dict[str, Any]]) -> dict[str, Any]:
        # A tool error must come back as a message the model can act on, not as a server failure.
        try:
            return fn(get_service())
        except SearchError as exc:
            return {"error": {"code": exc.code, "message": str(exc)}}

    @server.tool(
        description="Search the articles for passages that answer a question, in any language. Returns ranked "
        "passages with passage_id, article_id, title, paragraph, language, score and text; context=N adds the N "
        "paragraphs around each hit; lang restricts passage languages (ISO 639-1 codes such as en, zh, ru)."
    )
    def search_passages(
        query: str, k: int = 5, lang: list[str] | None = None, mode: str | None = None, context: int = 0
    ) -> dict[str, Any]:
        def go(svc: SearchService) -> dict[str, Any]:
            r = svc.search(SearchQuery(query, k, lang or (), (), mode, context=context, highlight=True))
            hits = [
                {
                    "rank": h.rank,
                    "score": round(h.score, 4),
                    **_passage(h.passage),
                    "highlights": [hl.text for hl in h.highlights],
                    "context": [{"position": pos, **_passage(p)} for pos, p in h.context],
                }
                for h in r.hits
            ]
            return {"query": r.query, "query_lang": r.query_lang, "mode": r.mode, "hits": hits}

        return run(go)

    @server.tool(description="Read one passage by its passage_id (ids are stable across index rebuilds).")
    def get_passage(passage_id: str) -> dict[str, Any]:
        return run(lambda svc: _passage(svc.passage(passage_id)))

    @server.tool(
        description="Passages most similar to a given passage, in any language: translations, near-duplicates "
        "and related text. exclude_same_article=true leaves out the passage's own article."
    )
    def similar_passages(passage_id: str, k: int = 5, exclude_same_article: bool = True) -> dict[str, Any]:
        def go(svc: SearchService) -> dict[str, Any]:
            hits = svc.similar_passages(passage_id, k, exclude_same_article)
            return {
                "passage_id": passage_id,
                "hits": [{"rank": h.rank, "score": round(h.score, 4), **_passage(h.passage)} for h in hits],
            }

        return run(go)

    return server
