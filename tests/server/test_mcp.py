"""The MCP tools through the official ``mcp`` client: over stdio (``memos mcp``) and over HTTP (``/mcp``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.server.harness import CLI_LAUNCHER, live_server

TOOLS = {"add_memory", "search_memory", "update_memory", "delete_memory", "memory_history", "list_cubes",
         "create_cube"}


async def _call(session: ClientSession, tool: str, **arguments) -> dict:
    """Call a tool; return its JSON result, or ``{"tool_error": <error body>}`` for a tool error."""
    result = await session.call_tool(tool, arguments)
    text = result.content[0].text
    if result.is_error:
        return {"tool_error": json.loads(text[text.index("{"):])["error"]}
    return json.loads(text)


async def _scenario(session: ClientSession) -> dict:
    """The agent's round trip; returns what the assertions need."""
    await session.initialize()
    names = {t.name for t in (await session.list_tools()).tools}
    await _call(session, "create_cube", name="agent", description="scratchpad")
    m = await _call(session, "add_memory", cube="agent", text="The user's cat is called Miso",
                    metadata={"topic": "pets"})
    await _call(session, "add_memory", cube="agent", text="The user works as a nurse")
    hits = await _call(session, "search_memory", cube="agent", query="what is the cat's name", top_k=1)
    v2 = await _call(session, "update_memory", cube="agent", memory_id=m["id"],
                     text="The user's cat is Mochi")
    history = await _call(session, "memory_history", cube="agent", memory_id=m["id"])
    deleted = await _call(session, "delete_memory", cube="agent", memory_id=m["id"])
    cubes = await _call(session, "list_cubes")
    missing = await _call(session, "add_memory", cube="nowhere", text="lost")
    return {"names": names, "m": m, "hits": hits, "v2": v2, "history": history, "deleted": deleted,
            "cubes": cubes, "missing": missing}


def _check(out: dict) -> None:
    assert TOOLS <= out["names"]
    assert out["m"]["metadata"] == {"topic": "pets"} and out["m"]["version"] == 1
    assert [h["id"] for h in out["hits"]["hits"]] == [out["m"]["id"]]
    assert out["v2"]["version"] == 2
    assert [v["text"] for v in out["history"]["versions"]] == ["The user's cat is called Miso",
                                                               "The user's cat is Mochi"]
    assert out["deleted"]["state"] == "archived"
    assert "agent" in [c["name"] for c in out["cubes"]["cubes"]]
    assert out["missing"]["tool_error"]["type"] == "CubeNotFound"


def test_stdio(tmp_path):
    env = {**os.environ, "MEMOS_HOME": str(tmp_path / "home"), "MEMOS_PRINCIPAL": "agent-1"}
    params = StdioServerParameters(command=sys.executable, args=["-c", CLI_LAUNCHER, "mcp"], env=env)

    async def run() -> dict:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            return await _scenario(session)

    out = asyncio.run(asyncio.wait_for(run(), timeout=180))
    _check(out)
    assert out["m"]["provenance"]["actor"] == "agent-1"  # the CLI's --principal acts over stdio


def test_http_with_keys(mos, keys):
    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from memos.server import create_app

    alice, bob = keys("alice"), keys("bob")
    with live_server(create_app(mos)) as url:

        async def session_for(headers: dict, scenario):
            http = create_mcp_http_client(headers=headers)
            async with http, streamable_http_client(f"{url}/mcp", http_client=http) as streams, \
                    ClientSession(streams[0], streams[1]) as session:
                return await scenario(session)

        async def bob_reads(session: ClientSession) -> dict:
            await session.initialize()
            return await _call(session, "search_memory", cube="agent", query="cat")

        out = asyncio.run(asyncio.wait_for(session_for(alice, _scenario), timeout=120))
        denied = asyncio.run(asyncio.wait_for(session_for(bob, bob_reads), timeout=60))
        unauthenticated = httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                     headers={"Accept": "application/json, text/event-stream"})
    _check(out)
    assert out["m"]["provenance"]["actor"] == "alice"
    assert denied["tool_error"]["type"] == "AccessDenied"
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["type"] == "Unauthenticated"
