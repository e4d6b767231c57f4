"""The data model: MemCube (container), Memory (one version of one item) and their parts.

These are the JSON shapes of the public contract (DESIGN §1): the CLI prints them with
``model_dump(mode="json")``, the REST server returns them, bundles store them.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memos.errors import InvalidCubeName, InvalidInput

CUBE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: Largest accepted plaintext body, in UTF-8 bytes.
MAX_TEXT_BYTES = 1_000_000
#: Largest accepted metadata object, as JSON bytes.
MAX_METADATA_BYTES = 64_000

Kind = Literal["plaintext", "activation", "parametric"]
KINDS: tuple[str, ...] = ("plaintext", "activation", "parametric")


class State(str, Enum):
    """Lifecycle of a memory. The kernel moves items along it; nothing is silently deleted.

    ``generated``: durable but not yet searchable (e.g. waiting for an embedding backfill);
    ``activated``: live and searchable; ``merged``: folded into a summary (kept, not searched);
    ``archived``: soft-deleted; ``expired``: past ``expires_at`` (kept in history, not searched).
    """

    generated = "generated"
    activated = "activated"
    merged = "merged"
    archived = "archived"
    expired = "expired"


#: States a search returns by default.
SEARCHABLE_STATES = frozenset({State.activated, State.generated})


def validate_cube_name(name: object) -> str:
    if not isinstance(name, str) or not CUBE_NAME_RE.match(name):
        raise InvalidCubeName(name)
    return name


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(value: object, field: str = "time") -> datetime | None:
    """Accept a datetime, an ISO-8601 string (date only allowed) or epoch seconds; return aware UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            dt = datetime.fromtimestamp(float(value), timezone.utc)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidInput(f"{field}: {value!r} is not a valid epoch time", field=field) from exc
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidInput(f"{field}: {value!r} is not an ISO-8601 time", field=field) from exc
    else:
        raise InvalidInput(f"{field}: expected an ISO-8601 string or datetime, got {type(value).__name__}",
                           field=field)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


_ID_LOCK = threading.Lock()
_last_id = 0


def new_id() -> str:
    """A UUIDv7 string: time-ordered (ms) with 74 random bits, so ids sort by creation.

    Monotonic within a process (RFC 9562 §6.2, method 2): an id made in the same millisecond as the
    previous one is that id + 1 in its random bits, so a batch's ids sort in the order they were made."""
    global _last_id
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)
    with _ID_LOCK:
        if value <= _last_id:
            value = _next_after(_last_id)
        _last_id = value
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _next_after(value: int) -> int:
    """The next UUIDv7 after ``value``: +1 over the 74 counter bits (rand_a, rand_b), skipping the
    version and variant fields; on overflow the timestamp moves on by one millisecond."""
    ms, rand_a, rand_b = value >> 80, (value >> 64) & 0xFFF, value & ((1 << 62) - 1)
    counter = ((rand_a << 62) | rand_b) + 1
    if counter >> 74:
        ms, counter = ms + 1, 0
    return (ms << 80) | (0x7 << 76) | ((counter >> 62) << 64) | (0b10 << 62) | (counter & ((1 << 62) - 1))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class Acl(_Model):
    """Who may use a cube besides its owner. ``*`` in a list means every principal."""

    readers: list[str] = Field(default_factory=list)
    writers: list[str] = Field(default_factory=list)


class CubePolicy(_Model):
    """Per-cube policy; every field optional with an offline-safe default."""

    default_ttl_s: float | None = None
    """Seconds until a new memory expires (None: never)."""
    capacity: int | None = None
    """Most live memories the cube keeps; None for no limit."""
    recency_half_life_days: float | None = None
    """If set, search multiplies fused scores by a recency factor with this half-life."""
    hints: dict[str, Any] = Field(default_factory=dict)
    """Free-form scheduler hints (placement affinity, residency priority ...)."""
    reconcile: str = Field("accumulate", pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    """How facts read from conversations meet the cube's existing facts (``cube.add_messages``):
    ``accumulate`` (keep all), ``update`` (ADD/UPDATE/DELETE/NOOP) or ``invalidate`` (end-date the
    contradicted fact), or a reconciliation policy a plugin registers (docs/reading.md)."""


class MemCube(_Model):
    name: str
    owner: str
    acl: Acl = Field(default_factory=Acl)
    created_at: datetime = Field(default_factory=utcnow)
    head: int = 0
    policy: CubePolicy = Field(default_factory=CubePolicy)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validate_cube_name(v)


class DerivedFrom(_Model):
    id: str
    version: int


class Provenance(_Model):
    op: str
    """Kernel operation that wrote this version: add, update, rollback, delete, migrate, import ..."""
    actor: str | None = None
    """Principal on whose behalf the operation ran."""
    source: str | None = None
    """Where the content came from (a file, a conversation turn, a plugin)."""
    derived_from: list[DerivedFrom] = Field(default_factory=list)
    at: datetime = Field(default_factory=utcnow)


class Payload(_Model):
    """Reference to the bytes behind an activation or parametric memory."""

    model_config = ConfigDict(extra="allow")
    format: str
    uri: str
    bytes: int
    sha256: str
    model: dict[str, Any] | None = None


class Memory(_Model):
    id: str
    cube: str
    kind: Kind = "plaintext"
    version: int = 1
    commit: int = 0
    state: State = State.activated
    text: str = ""
    context: str = ""
    """Surrounding text indexed with the memory but not part of its body (e.g. the neighbouring turns of
    a conversation): contextual retrieval finds a terse turn by what was said around it."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    provenance: Provenance
    event_time: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    payload: Payload | None = None

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or utcnow())

    def effective_state(self, now: datetime | None = None) -> State:
        """The stored state, or ``expired`` once ``expires_at`` has passed."""
        if self.state in SEARCHABLE_STATES and self.is_expired(now):
            return State.expired
        return self.state

    def public(self) -> dict[str, Any]:
        """JSON form with the lifecycle state as a reader sees it now."""
        data = self.model_dump(mode="json")
        data["state"] = self.effective_state().value
        return data


class Hit(_Model):
    memory: Memory
    score: float

    def public(self) -> dict[str, Any]:
        m = self.memory
        return {
            "id": m.id,
            "score": round(self.score, 6),
            "text": m.text,
            "metadata": m.metadata,
            "version": m.version,
            "kind": m.kind,
            "event_time": m.event_time.isoformat() if m.event_time else None,
        }


class LogEntry(_Model):
    """One commit of a cube's append-only operation log."""

    cube: str
    commit: int
    op: str
    actor: str | None = None
    at: datetime = Field(default_factory=utcnow)
    items: list[DerivedFrom] = Field(default_factory=list)
    """(memory id, version written) for every version this commit wrote; version 0 = tombstone."""
    detail: dict[str, Any] = Field(default_factory=dict)


def check_encodable(value: str, field: str) -> None:
    """Text must be valid Unicode that UTF-8 can encode (no lone surrogates) and free of NUL."""
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL character", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{field} is not valid Unicode text ({exc.reason})", field=field) from exc


def check_int(value: object, field: str, lo: int = 0, hi: int = 2**62) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidInput(f"{field} must be an integer in {lo}..{hi}, got {value!r}", field=field)
    return value


def check_text(text: object, field: str = "text") -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a string, got {type(text).__name__}", field=field)
    if not text.strip():
        raise InvalidInput(f"{field} is empty", field=field)
    check_encodable(text, field)
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise InvalidInput(f"{field} is {size} bytes; the limit is {MAX_TEXT_BYTES}", field=field)
    return text


def check_context(context: object) -> str:
    if context is None:
        return ""
    if not isinstance(context, str):
        raise InvalidInput(f"context must be a string, got {type(context).__name__}", field="context")
    check_encodable(context, "context")
    if len(context.encode("utf-8")) > MAX_TEXT_BYTES:
        raise InvalidInput(f"context is over {MAX_TEXT_BYTES} bytes", field="context")
    return context


def check_metadata(metadata: object) -> dict[str, Any]:
    """Metadata must be a JSON object with string keys and JSON-serialisable values."""
    import json

    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"metadata must be an object, got {type(metadata).__name__}", field="metadata")
    for key in metadata:
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"metadata keys must be non-empty strings, got {key!r}", field="metadata")
    try:
        encoded = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata is not JSON-serialisable: {exc}", field="metadata") from exc
    for text in _strings(metadata):
        check_encodable(text, "metadata")
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is {len(encoded)} bytes; the limit is {MAX_METADATA_BYTES}",
                           field="metadata")
    return json.loads(encoded)


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def check_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) and t for t in tags):
        raise InvalidInput("tags must be a list of non-empty strings", field="tags")
    for t in tags:
        check_encodable(t, "tags")
    return list(tags)


__all__ = sorted(
    [
        "Acl",
        "CubePolicy",
        "DerivedFrom",
        "Hit",
        "KINDS",
        "Kind",
        "LogEntry",
        "MemCube",
        "Memory",
        "Payload",
        "Provenance",
        "SEARCHABLE_STATES",
        "State",
        "check_context",
        "check_encodable",
        "check_int",
        "check_metadata",
        "check_tags",
        "check_text",
        "new_id",
        "parse_time",
        "utcnow",
        "validate_cube_name",
    ]
)
