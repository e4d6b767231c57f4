"""ASGI middleware of the REST server: telemetry, Host check, request-size limit and the 500 boundary.

All three are plain ASGI callables (not ``BaseHTTPMiddleware``), so they add no task per request and see
every response, including the ones they or an inner layer produce on error. Stacked outermost first:
:class:`TelemetryMiddleware` (so 413s and 500s are counted) -> :class:`LoopbackHostMiddleware` (insecure-local
servers only) -> :class:`BodyLimitMiddleware` -> :class:`ErrorBoundaryMiddleware` -> the FastAPI router.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("memos.server")


def error_body(type_: str, message: str, **extra: Any) -> dict[str, Any]:
    """The REST error document ``{"error": {"type", "message", ...}}``."""
    return {"error": {"type": type_, "message": message, **extra}}


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Answer 413 to a request whose body is over ``max_bytes``, before any route runs.

    ``Content-Length`` is checked first (no byte is read); a chunked or lying body is counted as it
    streams in. The body is buffered (it is at most ``max_bytes``) and replayed to the app, so a route
    never sees a partial body and nothing is written for a rejected request.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> dict[str, Any]:
        return error_body("PayloadTooLarge", f"request body is over the {self.max_bytes}-byte limit")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1  # the HTTP server rejects these; count the real bytes anyway
                if declared > self.max_bytes:
                    # close: the unread body must not be parsed as the next request on this connection
                    await send_json(send, 413, self._too_large(), [(b"connection", b"close")])
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_json(send, 413, self._too_large(), [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices, as the app expects

        await self.app(scope, replay, send)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def host_name(host_header: str) -> str:
    """``example.org:8765`` -> ``example.org``; ``[::1]:8765`` -> ``::1``."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class LoopbackHostMiddleware:
    """Refuse requests whose ``Host`` is not a loopback name (insecure-local servers only).

    An insecure-local server trusts whoever can reach it, so it must also refuse DNS rebinding: a web page
    whose domain re-resolves to 127.0.0.1 reaches the port from the user's browser, but still sends its
    own domain as ``Host``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), "")
            if host_name(host).lower() not in LOOPBACK_HOSTS:
                await send_json(send, 400, error_body(
                    "InvalidInput", f"Host {host!r} is not a loopback name; an insecure-local server only "
                    "answers 127.0.0.1, ::1 and localhost"))
                return
        await self.app(scope, receive, send)


class ErrorBoundaryMiddleware:
    """The single catch-all: an unexpected exception is logged (with a reference) and becomes a generic 500.

    Typed memos errors never get here (the app maps them to their status); this is for bugs. The client
    gets the reference, never the traceback or the exception text, which may hold internals.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            ref = uuid.uuid4().hex[:12]
            log.exception("unhandled error in %s %s (ref %s)", scope.get("method"), scope.get("path"), ref)
            if started:
                raise  # half a response is out: the server can only drop the connection
            await send_json(send, 500, error_body("InternalError", f"internal server error (ref {ref})",
                                                  ref=ref))


class TelemetryMiddleware:
    """One OpenTelemetry SERVER span per request, a request counter and a latency histogram.

    Labels use the route *template* (``/v1/cubes/{cube}/search``), never the raw path, so metric
    cardinality stays bounded whatever ids clients send. Kernel spans (``memos.search`` ...) nest under
    the request span: the SDK call runs in a worker thread that inherits the request's context.
    """

    def __init__(self, app: ASGIApp, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from opentelemetry import metrics, trace

        self.app = app
        self.tracer = trace.get_tracer("memos.server", tracer_provider=tracer_provider)
        meter = metrics.get_meter("memos.server", meter_provider=meter_provider)
        self.requests = meter.create_counter("memos.http.server.requests", unit="{request}",
                                             description="HTTP requests served")
        self.duration = meter.create_histogram("http.server.request.duration", unit="s",
                                               description="HTTP request latency")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode

        method = scope.get("method", "")
        status = 500  # if no response starts, the connection failed: count it as a server error

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        start = time.perf_counter()
        with self.tracer.start_as_current_span(method, kind=SpanKind.SERVER, attributes={
                "http.request.method": method, "url.path": scope.get("path", ""),
                "url.scheme": scope.get("scheme", "http")}) as sp:
            try:
                await self.app(scope, receive, status_send)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                sp.update_name(f"{method} {template}")
                sp.set_attribute("http.route", template)
                sp.set_attribute("http.response.status_code", status)
                if status >= 500:
                    sp.set_status(Status(StatusCode.ERROR))
                labels = {"http.request.method": method, "http.route": template,
                          "http.response.status_code": status}
                self.requests.add(1, labels)
                self.duration.record(time.perf_counter() - start, labels)


__all__ = ["LOOPBACK_HOSTS", "BodyLimitMiddleware", "ErrorBoundaryMiddleware", "LoopbackHostMiddleware",
           "TelemetryMiddleware", "error_body", "host_name", "send_json"]
