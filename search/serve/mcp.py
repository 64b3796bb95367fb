"""Search as MCP tools (the official `mcp` SDK, streamable HTTP), mounted in the same app at /mcp."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer

from search.errors import SearchError
from search.records import Mode, Translations
from search.serve.schemas import SearchRequest
from search.service import SearchService

_INSTRUCTIONS = (
    "Multilingual semantic search over a corpus of articles. Ask in any language: a question in Chinese finds "
    "English evidence and the other way round. Use search_passages for evidence, get_passage to read a passage "
    "by id, and similar_passages for more like a passage (translations and related text in any language)."
)


def create_mcp(get_service: Callable[[], SearchService]) -> MCPServer:
    """An MCP server whose tools call the app's one `SearchService`; hits have the HTTP API's shape."""
    server = MCPServer("search", instructions=_INSTRUCTIONS)

    def run(fn: Callable[[SearchService], dict[str, Any]]) -> dict[str, Any]:
        # A tool error must come back as a message the model can act on, not as a server failure.
        try:
            return fn(get_service())
        except SearchError as exc:
            return {"error": {"code": exc.code, "message": str(exc)}}

    @server.tool(
        description="Search the articles for passages that answer a question, in any language. Returns ranked "
        "passages with passage_id, article_id, title, paragraph, page (PDFs), language, score and text; context=N "
        "adds the N paragraphs around each hit; lang restricts passage languages (ISO 639-1 codes such as en, zh, ru); "
        "diversity (0..1, e.g. 0.5) keeps near-duplicates and translations of one passage from filling the k slots. "
        "translations=collapse returns a passage and its translations in the corpus as one hit, in the question's "
        "language where one exists, the others listed under translations; together returns each translation as a "
        "hit, next to each other; off (the server's default unless set otherwise) ignores them."
    )
    def search_passages(
        query: str,
        k: int = 5,
        lang: list[str] | None = None,
        mode: Mode | None = None,
        context: int = 0,
        translations: Translations | None = None,
        diversity: float = 0.0,
    ) -> dict[str, Any]:
        request = SearchRequest(
            query=query,
            k=k,
            lang=lang or [],
            mode=mode,
            context=context,
            highlight=True,
            translations=translations,
            diversity=diversity,
        )
        return run(lambda svc: svc.search(request.to_query()).as_dict())

    @server.tool(
        description="Read one passage by its passage_id (ids are stable across index rebuilds), with the passages "
        "of the corpus that translate it."
    )
    def get_passage(passage_id: str) -> dict[str, Any]:
        return run(lambda svc: svc.passage_with_translations(passage_id))

    @server.tool(
        description="Passages most similar to a given passage, in any language: translations, near-duplicates "
        "and related text. exclude_same_article=true leaves out the passage's own article."
    )
    def similar_passages(passage_id: str, k: int = 5, exclude_same_article: bool = True) -> dict[str, Any]:
        def go(svc: SearchService) -> dict[str, Any]:
            hits = svc.similar_passages(passage_id, k, exclude_same_article)
            return {"passage_id": passage_id, "hits": [h.as_dict() for h in hits]}

        return run(go)

    return server
