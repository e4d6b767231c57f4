"""Request bodies of the REST API (DESIGN §4b), as pydantic models.

They check JSON *shapes* only (types, required fields, no unknown keys), so a malformed request is a 422
before any SDK call runs. Semantic checks (empty text, metadata size, cube names, filter values) stay in
the kernel, which raises :class:`memos.errors.InvalidInput`: one set of rules for every surface.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

#: A point in time: an ISO-8601 string (a date alone is fine) or epoch seconds.
TimeValue = str | float

#: Largest ``top_k`` the kernel accepts (``memos.kernel.kernel.MAX_TOP_K``).
MAX_TOP_K = 1000


class _Body(BaseModel):
    # Unknown keys are rejected: a misspelt field ("metdata") must fail loudly, not be dropped.
    model_config = ConfigDict(extra="forbid")


class CubeIn(_Body):
    name: str = Field(description="Cube name: 1-64 characters [a-z0-9._-], starting with a letter or digit.")
    owner: str | None = Field(None, description="Owning principal; defaults to the caller.")
    description: str = ""
    policy: dict[str, JsonValue] | None = Field(None, description="CubePolicy fields (default_ttl_s, capacity ...).")


class GrantIn(_Body):
    principal: str
    access: Literal["read", "write", "revoke"] = "read"


class MemoryIn(_Body):
    text: str
    metadata: dict[str, JsonValue] | None = None
    tags: list[str] | None = None
    event_time: TimeValue | None = Field(None, description="Time the fact refers to (ISO-8601 or epoch s).")
    expires_at: TimeValue | None = Field(None, description="Expiry time (ISO-8601 or epoch s).")
    context: str | None = Field(None, description="Surrounding text indexed with the memory.")


class BatchIn(_Body):
    items: list[str | MemoryIn] = Field(description="Memories to add in one commit: texts or objects.")


class UpdateIn(_Body):
    """Fields to change; only the keys present in the body are written (``null`` clears a time)."""

    text: str | None = None
    metadata: dict[str, JsonValue] | None = None
    tags: list[str] | None = None
    event_time: TimeValue | None = None
    expires_at: TimeValue | None = None
    context: str | None = None


class RollbackIn(_Body):
    version: int = Field(description="The version to restore (written as a new version).")


class SearchIn(_Body):
    query: str
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)
    filters: dict[str, JsonValue] | None = Field(
        None, description="Metadata equality filters; a list value means any-of.")
    time_range: list[TimeValue | None] | None = Field(
        None, min_length=2, max_length=2, description="[start, end] on event_time; either end may be null.")
    include_archived: bool = False
    include_memory: bool = Field(
        False, description="Add the full memory object to each hit (the remote SDK uses this).")


class ArchiveIn(_Body):
    ids: list[str]


class ActivationIn(_Body):
    text: str = Field(description="Text whose KV cache becomes an activation memory.")
    engine: str | None = None
    metadata: dict[str, JsonValue] | None = None
    tags: list[str] | None = None


class MigrateIn(_Body):
    memory_id: str | list[str] = Field(description="A memory id, or a list of ids (to='activation' only).")
    to: Literal["plaintext", "activation", "parametric"]
    engine: str | None = None


class GenerateIn(_Body):
    cube: str
    prompt: str
    kv: list[str] | None = Field(None, description="Activation memory ids (at most one).")
    adapters: list[str] | None = Field(None, description="Parametric memory ids.")
    retrieve: bool = True
    top_k: int = Field(5, ge=1, le=MAX_TOP_K)
    max_tokens: int = Field(64, ge=1)
    engine: str | None = None


__all__ = sorted(["ActivationIn", "ArchiveIn", "BatchIn", "CubeIn", "GenerateIn", "GrantIn", "MemoryIn", "MigrateIn",
                  "RollbackIn", "SearchIn", "TimeValue", "UpdateIn"])
