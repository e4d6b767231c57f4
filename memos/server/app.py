"""The REST server (DESIGN §4b): every SDK operation under ``/v1``, as a FastAPI app.

Each route authenticates the caller (``Authorization: Bearer <key>`` -> principal, :mod:`memos.server.auth`),
then runs the blocking SDK call in a worker thread on ``mos.as_principal(principal)``, so the cube ACL is
the kernel's, checked on every call exactly as in embedded mode. Errors: a typed memos error becomes its
``status_code`` with ``{"error": {"type", "message", "context"}}``; a malformed body a 422 before anything
runs; an oversize body a 413; anything else a logged, generic 500.

Time travel: ``?at=COMMIT`` on the read routes (get, history, list, search, log) reads the cube as it was
right after that commit. Writes may carry an ``Idempotency-Key`` header: a retried write with the same key
returns the first write's result instead of writing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from memos import plugins
from memos.errors import InvalidInput, MemosError
from memos.kernel import acl
from memos.kernel.kernel import request_scope
from memos.sdk import Cube, MemOS
from memos.server.auth import authenticate, key_store
from memos.server.middleware import (
    BodyLimitMiddleware,
    ErrorBoundaryMiddleware,
    LoopbackHostMiddleware,
    TelemetryMiddleware,
    error_body,
)
from memos.server.schemas import (
    MAX_INT,
    ActivationIn,
    AdapterIn,
    ArchiveIn,
    BatchIn,
    ConsolidateIn,
    CubeIn,
    GenerateIn,
    GrantIn,
    MemoryIn,
    MessagesIn,
    MigrateIn,
    RetrainIn,
    RollbackIn,
    SearchIn,
    UpdateIn,
)

log = logging.getLogger("memos.server")
T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="An API key from `memos auth create-key`.")
_CREDENTIALS = Security(_bearer)
_MAX_IDEMPOTENCY_KEY = 128
#: The most items one page of a list or history may hold (the kernel's own limit for list).
MAX_PAGE = 10_000

AtCommit = Query(None, ge=0, le=MAX_INT,
                 description="Read the cube as it was right after this commit (time travel).")
Offset = Query(0, ge=0, le=MAX_INT)


# ------------------------------------------------------------------------------------------ errors
def _context(exc: MemosError) -> dict[str, Any]:
    """The error's scalar context (cube, memory_id, version ...): the remote SDK restores it."""
    return {k: v for k, v in exc.context.items() if isinstance(v, (str, int, float, bool)) or v is None}


async def _memos_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MemosError)
    if exc.status_code >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    body = exc.to_dict()
    body["error"]["context"] = _context(exc)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    problems = []
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ())]
        if err.get("type") == "json_invalid":  # loc is ("body", <character offset>)
            problems.append(f"body is not valid JSON: {err.get('ctx', {}).get('error')} at offset {loc[-1]}")
        else:
            problems.append(f"{'.'.join(loc)}: {err.get('msg')}")
    more = len(errors) - len(problems)
    message = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
    first = errors[0] if errors else {}
    field = str(first["loc"][-1]) if first.get("loc") and first.get("type") != "json_invalid" else None
    return JSONResponse(error_body("InvalidInput", message or "invalid request", context={"field": field}),
                        status_code=422)


_HTTP_TYPES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400:
        # FastAPI's answer to a body json cannot decode at all (nesting too deep, a 5000-digit number):
        # as malformed as invalid JSON, so the same 422 and error type.
        return JSONResponse(error_body("InvalidInput", f"request body could not be parsed: {message}"),
                            status_code=422)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    return JSONResponse(error_body(_HTTP_TYPES.get(exc.status_code, "HTTPError"), message),
                        status_code=exc.status_code, headers=exc.headers)


# -------------------------------------------------------------------------------------------- auth
def _caller(request: Request, credentials: HTTPAuthorizationCredentials | None = _CREDENTIALS) -> MemOS:
    """The server's MemOS handle acting as the authenticated principal (sync: runs in a worker thread)."""
    mos: MemOS = request.app.state.mos
    key = credentials.credentials if credentials is not None else None
    return mos.as_principal(authenticate(mos, key, insecure_local=request.app.state.insecure_local))


async def _run(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking SDK call in a worker thread, under the request's idempotency key if it has one."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(f"Idempotency-Key must be 1-{_MAX_IDEMPOTENCY_KEY} characters",
                           field="Idempotency-Key")

    def call() -> T:
        with request_scope(key):
            return fn(*args, **kwargs)

    return await run_in_threadpool(call)


def _cube(mos: MemOS, name: str, at: int | None = None) -> Cube:
    """A cube handle without an extra round trip: every SDK call checks existence and access itself.
    With ``at`` it reads the cube's head (blocking I/O): call it inside the worker thread."""
    cube = Cube(mos, name)
    return cube.at(at) if at is not None else cube


def _precheck(mos: MemOS, cube: str, access: acl.Access, engine: str | None) -> None:
    """Cheap checks before a model call. Loading an engine takes seconds and gigabytes, so a caller without
    access to the cube, or naming an engine that is not installed, is refused before that happens."""
    acl.check(_cube(mos, cube).info(), mos.principal, access)
    if engine is not None and engine not in plugins.registry("engines"):
        known = ", ".join(sorted(plugins.registry("engines"))) or "none"
        raise InvalidInput(f"no engine named {engine!r} (installed: {known})", field="engine")


def _page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    return {"offset": offset, "limit": limit,
            "next_offset": offset + len(items) if len(items) == limit else None}


# ----------------------------------------------------------------------------------------- routes
def _add_routes(app: FastAPI) -> None:
    Caller = Depends(_caller)

    @app.get("/v1/status", tags=["server"])
    async def status(request: Request, mos: MemOS = Caller) -> dict[str, Any]:
        """Mode, workers, cubes visible to the caller, residency."""
        return await _run(request, mos.status)

    # -------------------------------------------------------------------------------- cubes
    @app.post("/v1/cubes", status_code=201, tags=["cubes"])
    async def create_cube(request: Request, body: CubeIn, mos: MemOS = Caller) -> dict[str, Any]:
        cube = await _run(request, mos.create_cube, body.name, owner=body.owner, description=body.description,
                          policy=body.policy)
        return (await _run(request, cube.info)).model_dump(mode="json")

    @app.get("/v1/cubes", tags=["cubes"])
    async def list_cubes(request: Request, mos: MemOS = Caller) -> dict[str, Any]:
        return {"cubes": [c.model_dump(mode="json") for c in await _run(request, mos.list_cubes)]}

    @app.get("/v1/cubes/{cube}", tags=["cubes"])
    async def get_cube(request: Request, cube: str, mos: MemOS = Caller) -> dict[str, Any]:
        return (await _run(request, _cube(mos, cube).info)).model_dump(mode="json")

    @app.delete("/v1/cubes/{cube}", tags=["cubes"])
    async def delete_cube(request: Request, cube: str, mos: MemOS = Caller) -> dict[str, Any]:
        return {"deleted": await _run(request, mos.delete_cube, cube), "cube": cube}

    @app.get("/v1/cubes/{cube}/stats", tags=["cubes"])
    async def cube_stats(request: Request, cube: str, mos: MemOS = Caller) -> dict[str, Any]:
        return await _run(request, _cube(mos, cube).stats)

    @app.post("/v1/cubes/{cube}/grants", tags=["cubes"])
    async def grant(request: Request, cube: str, body: GrantIn, mos: MemOS = Caller) -> dict[str, Any]:
        """Give a principal read or write access (or revoke it); owner only."""
        info = await _run(request, mos.grant, cube, body.principal, body.access)
        return {"cube": info.model_dump(mode="json"), "principal": body.principal, "access": body.access}

    @app.get("/v1/cubes/{cube}/log", tags=["cubes"])
    async def cube_log(request: Request, cube: str, after: int = Query(0, ge=0, le=MAX_INT),
                       limit: int | None = Query(None, ge=1, le=MAX_PAGE), at: int | None = AtCommit,
                       mos: MemOS = Caller) -> dict[str, Any]:
        entries = await _run(request, lambda: _cube(mos, cube, at).log(after=after, limit=limit))
        return {"entries": [e.model_dump(mode="json") for e in entries]}

    # ----------------------------------------------------------------------------- memories
    @app.post("/v1/cubes/{cube}/memories", status_code=201, tags=["memories"])
    async def add(request: Request, cube: str, body: MemoryIn, mos: MemOS = Caller) -> dict[str, Any]:
        m = await _run(request, _cube(mos, cube).add, body.text, metadata=body.metadata, tags=body.tags,
                       event_time=body.event_time, expires_at=body.expires_at, context=body.context)
        return m.public()

    @app.post("/v1/cubes/{cube}/memories/batch", status_code=201, tags=["memories"])
    async def add_many(request: Request, cube: str, body: BatchIn, mos: MemOS = Caller) -> dict[str, Any]:
        """Add many memories in one commit."""
        items = [i if isinstance(i, str) else i.model_dump(exclude_none=True) for i in body.items]
        return {"memories": [m.public() for m in await _run(request, _cube(mos, cube).add_many, items)]}

    @app.get("/v1/cubes/{cube}/memories", tags=["memories"])
    async def list_memories(request: Request, cube: str, offset: int = Offset,
                            limit: int = Query(100, ge=1, le=MAX_PAGE), include_archived: bool = False,
                            at: int | None = AtCommit, mos: MemOS = Caller) -> dict[str, Any]:
        ms = await _run(request, lambda: _cube(mos, cube, at).list(offset=offset, limit=limit,
                                                                   include_archived=include_archived))
        return {"memories": [m.public() for m in ms], **_page(ms, offset, limit)}

    @app.get("/v1/cubes/{cube}/memories/{memory_id}", tags=["memories"])
    async def get(request: Request, cube: str, memory_id: str,
                  version: int | None = Query(None, ge=1, le=MAX_INT), at: int | None = AtCommit,
                  mos: MemOS = Caller) -> dict[str, Any]:
        return (await _run(request, lambda: _cube(mos, cube, at).get(memory_id, version=version))).public()

    @app.patch("/v1/cubes/{cube}/memories/{memory_id}", tags=["memories"])
    async def update(request: Request, cube: str, memory_id: str, body: UpdateIn,
                     mos: MemOS = Caller) -> dict[str, Any]:
        """Write a new version with the fields present in the body."""
        fields = body.model_dump(exclude_unset=True)
        return (await _run(request, _cube(mos, cube).update, memory_id, **fields)).public()

    @app.delete("/v1/cubes/{cube}/memories/{memory_id}", tags=["memories"])
    async def delete(request: Request, cube: str, memory_id: str, purge: bool = False,
                     mos: MemOS = Caller) -> dict[str, Any]:
        """Archive a memory (``?purge=true``: hard delete, leaving a tombstone in the log)."""
        m = await _run(request, _cube(mos, cube).delete, memory_id, purge=purge)
        return {**m.public(), "purged": purge}

    @app.get("/v1/cubes/{cube}/memories/{memory_id}/history", tags=["memories"])
    async def history(request: Request, cube: str, memory_id: str, offset: int = Offset,
                      limit: int = Query(100, ge=1, le=MAX_PAGE), at: int | None = AtCommit,
                      mos: MemOS = Caller) -> dict[str, Any]:
        """Versions of a memory, oldest first, one page at a time."""
        versions = await _run(request, lambda: _cube(mos, cube, at).history(memory_id))
        page = versions[offset:offset + limit]
        return {"id": memory_id, "versions": [v.public() for v in page], "total": len(versions),
                **_page(page, offset, limit)}

    @app.post("/v1/cubes/{cube}/memories/{memory_id}/rollback", tags=["memories"])
    async def rollback(request: Request, cube: str, memory_id: str, body: RollbackIn,
                       mos: MemOS = Caller) -> dict[str, Any]:
        """Write a new version equal to an old one."""
        return (await _run(request, _cube(mos, cube).rollback, memory_id, body.version)).public()

    @app.post("/v1/cubes/{cube}/archive", tags=["memories"])
    async def archive(request: Request, cube: str, body: ArchiveIn, mos: MemOS = Caller) -> dict[str, Any]:
        """Archive several memories in one commit."""
        return {"memories": [m.public() for m in await _run(request, _cube(mos, cube).archive, body.ids)]}

    @app.post("/v1/cubes/{cube}/sweep-expired", tags=["memories"])
    async def sweep_expired(request: Request, cube: str, mos: MemOS = Caller) -> dict[str, Any]:
        """Move memories past their ``expires_at`` to the expired state."""
        return {"memories": [m.public() for m in await _run(request, _cube(mos, cube).sweep_expired)]}

    @app.post("/v1/cubes/{cube}/search", tags=["memories"])
    async def search(request: Request, cube: str, body: SearchIn, at: int | None = AtCommit,
                     mos: MemOS = Caller) -> dict[str, Any]:
        """Hybrid search (dense + BM25, rank-fused) with metadata and time filters."""
        time_range = tuple(body.time_range) if body.time_range is not None else None
        t0 = time.perf_counter()
        hits = await _run(request, lambda: _cube(mos, cube, at).search(
            body.query, top_k=body.top_k, filters=body.filters, time_range=time_range,
            include_archived=body.include_archived))
        took_ms = round((time.perf_counter() - t0) * 1000, 3)
        out = []
        for h in hits:
            hit = h.public()
            if body.include_memory:
                hit["memory"] = h.memory.public()
            out.append(hit)
        return {"hits": out, "took_ms": took_ms}

    # ----------------------------------------------------------------------- models / kinds
    @app.post("/v1/cubes/{cube}/activations", status_code=201, tags=["models"])
    async def add_activation(request: Request, cube: str, body: ActivationIn,
                             mos: MemOS = Caller) -> dict[str, Any]:
        """Store the KV cache of a text as an activation memory."""

        def call() -> Any:
            _precheck(mos, cube, "write", body.engine)
            return _cube(mos, cube).add_activation(body.text, engine=body.engine, metadata=body.metadata,
                                                   tags=body.tags)

        return (await _run(request, call)).public()

    @app.post("/v1/cubes/{cube}/adapters", status_code=201, tags=["models"])
    async def train_adapter(request: Request, cube: str, body: AdapterIn, mos: MemOS = Caller) -> dict[str, Any]:
        """Distil plaintext memories into a parametric memory (LoRA, TokMem or product-key memory)."""

        def call() -> Any:
            _precheck(mos, cube, "write", body.engine)
            return _cube(mos, cube).train_adapter(body.memory_ids, format=body.format, steps=body.steps,
                                                  rank=body.rank, lr=body.lr, engine=body.engine, seed=body.seed,
                                                  metadata=body.metadata, tags=body.tags)

        return (await _run(request, call)).public()

    @app.post("/v1/cubes/{cube}/adapters/{memory_id}/retrain", tags=["models"])
    async def retrain_adapter(request: Request, cube: str, memory_id: str, body: RetrainIn,
                              mos: MemOS = Caller) -> dict[str, Any]:
        """Train a parametric memory again: a new version (rollback restores the previous weights)."""

        def call() -> Any:
            _precheck(mos, cube, "write", body.engine)
            return _cube(mos, cube).retrain_adapter(memory_id, memory_ids=body.memory_ids, format=body.format,
                                                    steps=body.steps, engine=body.engine, seed=body.seed)

        return (await _run(request, call)).public()

    @app.post("/v1/cubes/{cube}/messages", tags=["memories"])
    async def add_messages(request: Request, cube: str, body: MessagesIn, mos: MemOS = Caller) -> dict[str, Any]:
        """Read a conversation into memory: turns first, then facts extracted and reconciled (docs/reading.md)."""

        def call() -> Any:
            return _cube(mos, cube).add_messages(body.messages, session=body.session, event_time=body.event_time,
                                                 llm=body.llm, reconcile=body.reconcile, window=body.window,
                                                 dedup=body.dedup, consolidate=body.consolidate)

        return (await _run(request, call)).as_dict()

    @app.post("/v1/cubes/{cube}/consolidate", tags=["memories"])
    async def consolidate(request: Request, cube: str, body: ConsolidateIn, mos: MemOS = Caller) -> dict[str, Any]:
        """Sleep-time consolidation now: expire, merge duplicates, summarise related facts, promote."""

        def call() -> Any:
            return _cube(mos, cube).consolidate(llm=body.llm, related=body.related, min_group=body.min_group,
                                                max_group=body.max_group, expire=body.expire, dedup=body.dedup,
                                                promote_top=body.promote_top,
                                                promote_min_heat=body.promote_min_heat, engine=body.engine)

        return (await _run(request, call)).as_dict()

    @app.post("/v1/cubes/{cube}/migrate", tags=["models"])
    async def migrate(request: Request, cube: str, body: MigrateIn, mos: MemOS = Caller) -> dict[str, Any]:
        """Move a memory to another kind (a list of ids with to=activation: one shared KV prefix)."""

        def call() -> Any:
            _precheck(mos, cube, "write", body.engine)
            return mos.migrate(cube, body.memory_id, body.to, engine=body.engine, format=body.format)

        return (await _run(request, call)).public()

    @app.post("/v1/generate", tags=["models"])
    async def generate(request: Request, body: GenerateIn, mos: MemOS = Caller) -> dict[str, Any]:
        """Answer a prompt with a cube's memories: KV prefix + retrieved memories + prompt."""

        def call() -> Any:
            _precheck(mos, body.cube, "read", body.engine)
            return mos.generate(body.cube, body.prompt, kv=body.kv, adapters=body.adapters,
                                retrieve=body.retrieve, top_k=body.top_k, max_tokens=body.max_tokens,
                                engine=body.engine)

        return (await _run(request, call)).model_dump(mode="json")


def _mcp(mos: MemOS, insecure_local: bool) -> tuple[Any, Any]:
    """The MCP endpoint and its lifespan, or (None, None) when the ``mcp`` package is not installed."""
    try:
        from memos.server.mcp import McpEndpoint
    except ImportError as exc:
        if not (exc.name or "").startswith("mcp"):
            raise  # a broken memos module, not a missing optional package
        log.info("MCP over HTTP disabled (%s): pip install 'memos[server]'", exc)
        return None, None
    endpoint = McpEndpoint(mos, insecure_local)
    return endpoint, endpoint.lifespan


def create_app(mos: MemOS, *, insecure_local: bool = False, max_body_bytes: int = 2_000_000,
               mcp: bool = True, tracer_provider: Any = None, meter_provider: Any = None) -> FastAPI:
    """The REST app over ``mos`` (embedded or cluster handle; the server owns it while it runs).

    ``insecure_local``: requests without a key act as the local administrator (principal ``None``);
    only for servers bound to loopback (``memos serve --insecure-local`` enforces that).
    ``max_body_bytes``: larger request bodies get 413. ``mcp``: mount the MCP server at ``/mcp`` when the
    ``mcp`` package is installed. ``tracer_provider`` / ``meter_provider``: OpenTelemetry providers
    (default: the global ones).
    """
    import memos

    if max_body_bytes < 1:
        raise InvalidInput("max_body_bytes must be positive", field="max_body_bytes")
    if not insecure_local:
        key_store(mos)  # fail at start-up, not on every request, when keys cannot be checked (cluster client)
    mcp_endpoint, lifespan = _mcp(mos, insecure_local) if mcp else (None, None)
    app = FastAPI(title="memos", version=memos.__version__, lifespan=lifespan,
                  description="A memory operating system for LLM agents: versioned MemCubes over REST.")
    app.state.mos = mos
    app.state.insecure_local = insecure_local
    app.add_exception_handler(MemosError, _memos_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    _add_routes(app)
    if mcp_endpoint is not None:
        # A route, not a mount: a mount would redirect /mcp to /mcp/, and MCP clients do not follow redirects.
        app.add_route("/mcp", mcp_endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False)
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    if insecure_local:
        app.add_middleware(LoopbackHostMiddleware)
    app.add_middleware(TelemetryMiddleware, tracer_provider=tracer_provider, meter_provider=meter_provider)
    return app


__all__ = ["MAX_PAGE", "create_app"]
