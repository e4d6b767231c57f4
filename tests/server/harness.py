"""Ways to run memos in the server tests: uvicorn in a thread of the test process, the CLI in a subprocess."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def memos_cli_app() -> Any:
    """The ``memos`` Typer app with the server commands (registered here if ``build_app`` does not yet)."""
    from memos.cli.app import build_app
    from memos.server.cli import register

    app = build_app()
    if not any(c.name == "serve" for c in app.registered_commands):
        register(app)
    return app


#: The same for a subprocess: ``python -c CLI_LAUNCHER ARGS...`` runs ``memos ARGS...`` as the console
#: script does.
CLI_LAUNCHER = """
import sys
from memos.cli.app import build_app
from memos.server.cli import register
app = build_app()
if not any(c.name == "serve" for c in app.registered_commands):
    register(app)
app(args=sys.argv[1:], prog_name="memos")
"""


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a background thread; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
