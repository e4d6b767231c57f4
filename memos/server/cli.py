"""CLI commands of the server surface: ``memos serve``, ``memos mcp``, ``memos auth create-key|revoke-key``.

:func:`register` adds them to the ``memos`` Typer app (``memos.cli.app.build_app`` calls it).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

import typer

from memos.cli.common import JSON_OPT, STATE, command, emit
from memos.errors import HomeLocked, InvalidInput, MissingExtra

auth_app = typer.Typer(help="API keys for `memos serve`.", no_args_is_help=True)


def check_bind(host: str, insecure_local: bool) -> None:
    """``--insecure-local`` trusts every caller, so it may only listen where only this machine can call."""
    from memos.server.middleware import LOOPBACK_HOSTS

    if insecure_local and host.strip("[]").lower() not in LOOPBACK_HOSTS:
        raise InvalidInput(f"--insecure-local serves without API keys, so it only binds 127.0.0.1, ::1 or "
                           f"localhost, not {host!r}", field="host")


@command
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
          port: int = typer.Option(8765, "--port", help="TCP port."),
          insecure_local: bool = typer.Option(False, "--insecure-local",
                                              help="No API keys: every request acts as the local admin "
                                                   "(loopback hosts only)."),
          max_body_bytes: int = typer.Option(2_000_000, "--max-body-bytes", help="Largest request body."),
          log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
          json_out: bool = JSON_OPT) -> None:
    """Serve the REST API (and MCP over HTTP at /mcp) until interrupted."""
    host = host.strip("[]")  # "[::1]" as in a URL: uvicorn wants the bare address
    check_bind(host, insecure_local)
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingExtra("server", "uvicorn") from exc
    from memos.server import create_app
    from memos.telemetry import configure_from_env

    configure_from_env()
    app = create_app(STATE.mos(), insecure_local=insecure_local, max_body_bytes=max_body_bytes)
    if json_out or STATE.json:
        bracketed = f"[{host}]" if ":" in host else host
        emit({"url": f"http://{bracketed}:{port}", "insecure_local": insecure_local}, True)
        sys.stdout.flush()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the previous handler; with the default
    # handler the process would die there, before the home is closed. Exit normally instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


@command
def mcp(json_out: bool = JSON_OPT) -> None:
    """Serve the MCP tools over stdio (for agent hosts that spawn `memos mcp`)."""
    try:
        from memos.server.mcp import serve_stdio
    except ImportError as exc:
        raise MissingExtra("server", exc.name or "mcp") from exc
    serve_stdio(STATE.mos())


@contextlib.contextmanager
def _open_key_store() -> Iterator[Any]:
    """Where API keys live: the home's storage, through the open handle, or directly if a server holds it.

    ``memos serve`` holds the embedded home's lock, but keys are plain records with no derived index, so
    writing one through a second connection to the same database is safe, and the server reads keys from
    storage on every request: a key created while it runs works at once.
    """
    try:
        mos = STATE.mos()
    except HomeLocked:
        mos = None  # a running server owns the home: use a direct storage connection
    if mos is not None:
        yield mos
        return
    from memos.config import load_settings
    from memos.kernel.boot import make_backend

    backend = make_backend(load_settings(STATE.home))
    try:
        yield backend
    finally:
        backend.close()


@auth_app.command("create-key")
@command
def create_key(principal: str = typer.Option(..., "--principal", help="Principal the key acts as."),
               json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Create an API key for a principal. The key is printed once; only its hash is stored."""
    from memos.server import auth

    with _open_key_store() as store:
        key = auth.create_key(store, principal)
    return {"principal": principal, "key": key, "id": auth.key_id(key)}


@auth_app.command("revoke-key")
@command
def revoke_key(key_id: str = typer.Argument(..., help="Key id (the part after mk_) or the whole key."),
               json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Revoke an API key; requests with it get 401 from then on."""
    from memos.server import auth

    with _open_key_store() as store:
        return {"id": key_id, "revoked": auth.revoke_key(store, key_id)}


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``mcp`` and ``auth`` to the ``memos`` app."""
    app.command("serve")(serve)
    app.command("mcp")(mcp)
    app.add_typer(auth_app, name="auth")


__all__ = ["check_bind", "register"]
