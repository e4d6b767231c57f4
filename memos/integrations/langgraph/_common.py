"""Shared imports and helpers of the LangGraph integration."""
# ruff: noqa: F401  (re-exported to store.py and checkpoint.py)


from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from memos.errors import CubeExists, CubeNotFound
from memos.models import Memory, State

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
        get_text_at_path,
        tokenize_path,
        validate_op_namespace,
    )
except ImportError as exc:  # pragma: no cover - exercised only without langgraph
    from memos.errors import MissingExtra

    raise MissingExtra("langgraph", "memos.integrations.langgraph") from exc


_CUBE_BAD = re.compile(r"[^a-z0-9._-]+")
_MAX_TOP_K = 1000
_PAGE = 10_000


def cube_name_for(prefix: str, label: str) -> str:
    """The cube holding namespaces that start with ``label``: ``f"{prefix}-{label}"`` made a valid cube name."""
    name = _CUBE_BAD.sub("-", f"{prefix}-{label}".lower()).strip("-._") or "lg"
    if not name[0].isalnum():
        name = "x" + name
    return name[:64].rstrip("-._") or "lg"


def _ns_key(namespace: Sequence[str]) -> str:
    return json.dumps(list(namespace), ensure_ascii=False)


def _prefix_keys(namespace: Sequence[str]) -> list[str]:
    return [_ns_key(namespace[:i]) for i in range(1, len(namespace) + 1)]


def _live(m: Memory, now: datetime) -> bool:
    return m.state in (State.activated, State.generated) and (m.expires_at is None or m.expires_at > now)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _CubeCache:
    """Current versions of one cube's memories, rescanned only when the cube's head moved under us."""

    def __init__(self) -> None:
        self.head = -1
        self.memories: dict[str, Memory] = {}

    def refresh(self, cube: Any) -> None:
        head = cube.head
        if head == self.head:
            return
        found: dict[str, Memory] = {}
        offset = 0
        while True:
            page = cube.list(offset=offset, limit=_PAGE, include_archived=True)
            for m in page:
                found[m.id] = m
            if len(page) < _PAGE:
                break
            offset += _PAGE
        self.memories = found
        self.head = head

    def wrote(self, memories: Iterable[Memory]) -> None:
        """Record our own write: keep the cache current if nobody else committed in between."""
        ms = list(memories)
        if not ms:
            return
        commit = ms[0].commit
        for m in ms:
            self.memories[m.id] = m
        self.head = commit if self.head == commit - 1 else -1


