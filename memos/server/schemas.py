"""Request bodies of the REST API (DESIGN §4b), as pydantic models.

They check JSON *shapes* only (types, required fields, no unknown keys), so a malformed request is a 422
before any SDK call runs. Semantic checks (empty text, metadata size, cube names, filter values) stay in
the kernel, which raises :class:`memos.errors.InvalidInput`: one set of rules for every surface.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

#: Largest integer a request may carry: storage backends keep commits and versions as signed 64-bit.
MAX_INT = 2**63 - 1
#: Epoch seconds of 0001-01-01 and 9999-12-31: the range a datetime can hold.
_MIN_EPOCH, _MAX_EPOCH = -62_135_596_800, 253_402_300_799
#: A point in time: an ISO-8601 string (a date alone is fine) or epoch seconds.
TimeValue = str | Annotated[float, Field(ge=_MIN_EPOCH, le=_MAX_EPOCH, allow_inf_nan=False)]
#: A commit number or a version.
Int64 = Annotated[int, Field(ge=0, le=MAX_INT)]

#: Largest ``top_k`` the kernel accepts (``memos.kernel.kernel.MAX_TOP_K``).
MAX_TOP_K = 1000


def _check_unicode(value: Any, where: str = "body") -> None:
    """Reject lone surrogates (``"\\ud800"`` is valid JSON but not Unicode text): stored, they would break
    every later response that has to encode them as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(value[exc.start])
            raise ValueError(f"{where} contains an unpaired surrogate (\\u{code:04x})") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, where)
            _check_unicode(item, f"{where}.{key}" if isinstance(key, str) else where)
    elif isinstance(value, list):
        for item in value:
            _check_unicode(item, where)


class _Body(BaseModel):
    # Unknown keys are rejected: a misspelt field ("metdata") must fail loudly, not be dropped.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _unicode_only(cls, data: Any) -> Any:
        _check_unicode(data)
        return data


class CubeIn(_Body):
    name: str = Field(min_length=1,
                      description="Cube name: 1-64 characters [a-z0-9._-], starting with a letter or digit.")
    owner: str | None = Field(None, description="Owning principal; defaults to the caller.")
    description: str = ""
    policy: dict[str, JsonValue] | None = Field(
        None, description="CubePolicy fields (default_ttl_s, capacity ...).")


class GrantIn(_Body):
    principal: str = Field(min_length=1)
    access: Literal["read", "write", "revoke"] = "read"


class MemoryIn(_Body):
    text: str = Field(min_length=1)
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
    version: Int64 = Field(description="The version to restore (written as a new version).")


class SearchIn(_Body):
    query: str = Field(min_length=1)
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
    text: str = Field(min_length=1, description="Text whose KV cache becomes an activation memory.")
    engine: str | None = None
    metadata: dict[str, JsonValue] | None = None
    tags: list[str] | None = None


class AdapterIn(_Body):
    memory_ids: list[str] | Literal["all"] = Field("all", description="Plaintext memory ids, or 'all'.")
    format: Literal["lora", "tokmem", "pkm"] = "lora"
    steps: int | None = Field(None, ge=1, le=10_000)
    rank: int | None = Field(None, ge=1, le=256)
    lr: float | None = Field(None, gt=0, le=1)
    engine: str | None = None
    seed: int = 0
    metadata: dict[str, JsonValue] | None = None
    tags: list[str] | None = None


class RetrainIn(_Body):
    memory_ids: list[str] | Literal["all"] | None = None
    format: Literal["lora", "tokmem", "pkm"] | None = None
    steps: int | None = Field(None, ge=1, le=10_000)
    engine: str | None = None
    seed: int = 0


class MessagesIn(_Body):
    messages: list[JsonValue] = Field(min_length=1, description="Turns: strings or {speaker, text, ...}.")
    session: str | int | None = None
    event_time: str | None = None
    llm: str | dict[str, JsonValue] | None = Field(
        None, description="'local', an endpoint URL or {endpoint, model}; none: turns only.")
    reconcile: Literal["accumulate", "update", "invalidate"] | None = None
    window: int = Field(6, ge=1, le=64)
    dedup: bool = True
    consolidate: bool = False


class ConsolidateIn(_Body):
    llm: str | dict[str, JsonValue] | None = None
    related: float = Field(0.6, ge=0, le=1)
    min_group: int = Field(3, ge=2)
    max_group: int = Field(8, ge=2)
    expire: bool = True
    dedup: bool = True
    promote_top: int = Field(0, ge=0)
    promote_min_heat: float = 1.0
    engine: str | None = None


class MigrateIn(_Body):
    memory_id: str | list[str] = Field(description="A memory id, or a list of ids (to='activation' only).")
    to: Literal["plaintext", "activation", "parametric"]
    engine: str | None = None
    format: Literal["lora", "tokmem", "pkm"] = "lora"


class GenerateIn(_Body):
    cube: str
    prompt: str = Field(min_length=1)
    kv: list[str] | None = Field(None, description="Activation memory ids (at most one).")
    adapters: list[str] | None = Field(None, description="Parametric memory ids.")
    retrieve: bool = True
    top_k: int = Field(5, ge=1, le=MAX_TOP_K)
    max_tokens: int = Field(64, ge=1, le=MAX_INT)
    engine: str | None = None


__all__ = ["MAX_INT", "ActivationIn", "ArchiveIn", "BatchIn", "CubeIn", "GenerateIn", "GrantIn", "Int64",
           "MemoryIn", "MigrateIn", "RollbackIn", "SearchIn", "TimeValue", "UpdateIn"]
