"""Search as MCP tools: a real MCP client session over streamable HTTP against a running server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytestmark = pytest.mark.model


async def _session_calls(url: str) -> dict[str, Any]:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(f"{url}/mcp/") as (read, write, *_):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            found = await session.call_tool(
                "search_passages", {"query": "普京如何看待俄美关系?", "k": 3, "lang": ["en"]}
            )
            hits = json.loads(found.content[0].text)["hits"]
            passage = await session.call_tool("get_passage", {"passage_id": hits[0]["passage_id"]})
            similar = await session.call_tool(
                "similar_passages", {"passage_id": hits[0]["passage_id"], "k": 2, "exclude_same_article": False}
            )
            missing = await session.call_tool("get_passage", {"passage_id": "nope"})
            return {
                "server": init.server_info.name,
                "tools": {t.name: t for t in tools.tools},
                "hits": hits,
                "passage": json.loads(passage.content[0].text),
                "similar": json.loads(similar.content[0].text),
                "missing": json.loads(missing.content[0].text),
            }


def test_mcp_tools_search_read_and_find_similar(server_url: str) -> None:
    out = asyncio.run(_session_calls(server_url))
    assert out["server"] == "search"
    assert set(out["tools"]) == {"search_passages", "get_passage", "similar_passages"}
    assert "any language" in out["tools"]["search_passages"].description
    assert {"query", "diversity"} <= set(out["tools"]["search_passages"].input_schema["properties"])
    hits = out["hits"]
    assert len(hits) == 3 and all(h["lang"] == "en" for h in hits)
    assert any("Putin views the relationship" in h["text"] for h in hits)
    assert out["passage"]["passage_id"] == hits[0]["passage_id"] and out["passage"]["text"] == hits[0]["text"]
    assert len(out["similar"]["hits"]) == 2
    assert out["missing"]["error"]["code"] == "not_found"
