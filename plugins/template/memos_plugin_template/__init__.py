"""A template memos plugin (also the dummy plugin memos's own tests install)."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import memos
from memos.errors import InvalidInput

#: Every kernel operation seen by ``memos_after_operation``: (op, cube, principal).
AUDIT: list[tuple[str, str | None, str | None]] = []
_adds: dict[str, int] = {}
_lock = threading.Lock()


class RoundRobinPlacement:
    """Place new cubes on workers in turn."""

    name: ClassVar[str] = "round-robin"
    kind: ClassVar[str] = "placement"
    _next = itertools.count()

    def choose(self, cube: str, workers: Sequence[Any], hints: dict[str, Any]) -> str:
        if not workers:
            raise InvalidInput("no kernel workers are running", field="workers")
        ordered = sorted(w.id for w in workers)
        return ordered[next(self._next) % len(ordered)]


class QuotaExceeded(InvalidInput):
    status_code = 429


@memos.hookimpl
def memos_register_policies() -> list[type]:
    return [RoundRobinPlacement]


@memos.hookimpl
def memos_register_commands(app: Any) -> None:
    @app.command("template-hello")
    def hello(name: str = "world") -> None:
        """Say hello (proves plugins add CLI commands)."""
        print(f"hello {name} from memos-plugin-template")


@memos.hookimpl
def memos_before_operation(op: str, cube: str | None, principal: str | None, args: dict[str, Any]) -> None:
    limit = os.environ.get("MEMOS_TEMPLATE_MAX_ADDS")
    if limit is None or op != "add" or cube is None:
        return
    with _lock:
        if _adds.get(cube, 0) + int(args.get("items", 1)) > int(limit):
            raise QuotaExceeded(f"cube {cube!r} reached its quota of {limit} added memories", field="items")
        _adds[cube] = _adds.get(cube, 0) + int(args.get("items", 1))


@memos.hookimpl
def memos_after_operation(op: str, cube: str | None, principal: str | None, result: Any) -> None:
    with _lock:
        AUDIT.append((op, cube, principal))
