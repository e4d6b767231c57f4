"""memos as an MCP server: memory tools for agents, over stdio (``memos mcp``) or HTTP (``/mcp``).

Tools: ``add_memory``, ``search_memory``, ``update_memory``, ``delete_memory``, ``memory_history``,
``list_cubes``, ``create_cube``. Each returns the same JSON as the REST API; a memos error becomes a tool
error (``isError``) whose text carries the ``{"error": {"type", "message"}}`` body, so an agent can read
what went wrong.

Who acts: over stdio, the handle's own principal (the CLI's ``--principal``, or the local administrator);
over HTTP, the principal of the request's API key, checked by :class:`McpEndpoint` before the MCP
transport sees the request (the REST app's rules: 401 without a valid key unless insecure-local).
Written for the ``mcp`` SDK 2.x (``MCPServer``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from memos.errors import MemosError
from memos.sdk import Cube, MemOS
from memos.server.auth import Unauthenticated, authenticate, bearer_token
from memos.server.middleware import error_body, send_json

T = TypeVar("T")
#: ASGI scope key where :class:`McpEndpoint` leaves the authenticated principal for the tools.
PRINCIPAL_SCOPE_KEY = "memos.principal"
_INSTRUCTIONS = ("Long-term memory. Memories live in named cubes; add facts with add_memory, find them with "
                 "search_memory, correct them with update_memory (old versions stay in memory_history).")


def _caller(mos: MemOS, ctx: Context) -> MemOS:
    """The handle a tool call acts through: the HTTP request's principal, or ``mos`` itself over stdio."""
    request = ctx.request_context.request
    if request is None:
        return mos
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict) or PRINCIPAL_SCOPE_KEY not in scope:
        # Every HTTP route to the MCP transport goes through McpEndpoint; reaching here means it was bypassed.
        raise ToolError(json.dumps(Unauthenticated("no authenticated principal").to_dict()))
    return mos.as_principal(scope[PRINCIPAL_SCOPE_KEY])


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking SDK call in a worker thread; a memos error becomes a readable tool error."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
    except MemosError as exc:
        raise ToolError(json.dumps(exc.to_dict())) from exc


def build_mcp(mos: MemOS) -> MCPServer:
    """An MCP server whose tools act on ``mos`` (see the module docstring for who acts)."""
    import memos

    server: MCPServer = MCPServer(name="memos", version=memos.__version__, instructions=_INSTRUCTIONS,
                                      log_level="WARNING")  # it configures root logging: keep requests quiet

    @server.tool()
    async def list_cubes(ctx: Context) -> dict[str, Any]:
        """List the memory cubes you can read (name, owner, head commit, description)."""
        cubes = await _call(_caller(mos, ctx).list_cubes)
        return {"cubes": [{"name": c.name, "owner": c.owner, "head": c.head, "description": c.description}
                          for c in cubes]}

    @server.tool()
    async def create_cube(ctx: Context, name: str, description: str = "") -> dict[str, Any]:
        """Create a memory cube owned by you. Names: 1-64 characters [a-z0-9._-]."""
        cube = await _call(_caller(mos, ctx).create_cube, name, description=description)
        return (await _call(cube.info)).model_dump(mode="json")

    @server.tool()
    async def add_memory(ctx: Context, cube: str, text: str, metadata: dict[str, Any] | None = None,
                         tags: list[str] | None = None, event_time: str | None = None) -> dict[str, Any]:
        """Store one fact in a cube. ``event_time``: ISO-8601 time the fact refers to. Returns the memory."""
        m = await _call(Cube(_caller(mos, ctx), cube).add, text, metadata=metadata, tags=tags,
                        event_time=event_time)
        return m.public()

    @server.tool()
    async def search_memory(ctx: Context, cube: str, query: str, top_k: int = 5,
                            filters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Find the memories most relevant to ``query`` (hybrid dense + keyword search).
        ``filters``: metadata equality, a list value means any-of."""
        hits = await _call(Cube(_caller(mos, ctx), cube).search, query, top_k=top_k, filters=filters)
        return {"hits": [h.public() for h in hits]}

    @server.tool()
    async def update_memory(ctx: Context, cube: str, memory_id: str, text: str | None = None,
                            metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Correct a memory: writes a new version (the old one stays in its history)."""
        m = await _call(Cube(_caller(mos, ctx), cube).update, memory_id, text, metadata=metadata)
        return m.public()

    @server.tool()
    async def delete_memory(ctx: Context, cube: str, memory_id: str, purge: bool = False) -> dict[str, Any]:
        """Archive a memory (it leaves search, keeps its history); ``purge`` deletes it for good."""
        m = await _call(Cube(_caller(mos, ctx), cube).delete, memory_id, purge=purge)
        return {**m.public(), "purged": purge}

    @server.tool()
    async def memory_history(ctx: Context, cube: str, memory_id: str) -> dict[str, Any]:
        """Every version of a memory, oldest first."""
        versions = await _call(Cube(_caller(mos, ctx), cube).history, memory_id)
        return {"id": memory_id, "versions": [v.public() for v in versions]}

    return server


def serve_stdio(mos: MemOS) -> None:
    """Serve the tools over stdin/stdout until the client closes the pipe (``memos mcp``)."""
    build_mcp(mos).run("stdio")


class McpEndpoint:
    """The ASGI endpoint at ``/mcp``: authenticate like the REST routes, then hand over to the MCP transport.

    The MCP session manager runs inside the host app's lifespan (:meth:`lifespan`); a manager runs once, so
    each start of the app (a test client, then a server) gets a fresh one.
    """

    def __init__(self, mos: MemOS, insecure_local: bool) -> None:
        self.mos = mos
        self.insecure_local = insecure_local
        self.server = build_mcp(mos)
        self.manager: Any = None

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        # Stateless + JSON responses: every POST is self-contained, so the server keeps no per-client
        # sessions and any number of workers can answer. The REST app does the Host check and auth.
        self.server.streamable_http_app(
            streamable_http_path="/mcp", stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        manager = self.server.session_manager
        async with manager.run():
            self.manager = manager
            try:
                yield
            finally:
                self.manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.manager is None:
            message = "MCP is not running: the app's lifespan (it runs the session manager) has not started"
            await send_json(send, 503, error_body("BackendError", message))
            return
        key = bearer_token(Headers(scope=scope).get("authorization"))
        try:
            principal = await run_in_threadpool(authenticate, self.mos, key,
                                                insecure_local=self.insecure_local)
        except MemosError as exc:
            await send_json(send, exc.status_code, exc.to_dict(), [(b"www-authenticate", b"Bearer")])
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await self.manager.handle_request(scope, receive, send)


__all__ = ["PRINCIPAL_SCOPE_KEY", "McpEndpoint", "build_mcp", "serve_stdio"]
