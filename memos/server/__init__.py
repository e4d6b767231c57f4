"""The memos REST server (``memos serve``), its API keys and the MCP tools.

``create_app(mos)`` builds the FastAPI app (:mod:`memos.server.app`); :mod:`memos.server.auth` creates and
checks API keys. FastAPI is imported only when the app is built, so ``memos.server.auth`` works without the
``server`` extra.
"""

from __future__ import annotations

from typing import Any


def create_app(mos: Any, **options: Any) -> Any:
    """Build the REST app over a MemOS handle; see :func:`memos.server.app.create_app`."""
    try:
        from memos.server.app import create_app as build
    except ImportError as exc:
        from memos.errors import MissingExtra

        raise MissingExtra("server", exc.name or "fastapi") from exc
    return build(mos, **options)


__all__ = ["create_app"]
