"""The remote SDK: ``MemOS.connect("http://HOST:8765", api_key=...)`` -> :class:`RemoteMemOS`.

:class:`RemoteMemOS` and :class:`RemoteCube` have the public API of :class:`memos.sdk.MemOS` and
:class:`memos.sdk.Cube` (each call with its ``a<name>`` async twin), return the same pydantic models
(``Memory``, ``Hit``, ``MemCube``, ``LogEntry``, ``Generation``) and raise the same ``memos.errors`` types,
rebuilt from the server's ``{"error": {"type", "message", "context"}}`` body, so code written against an
embedded home runs unchanged against a server.

Differences, by nature of a remote handle: the principal is fixed by the API key (``as_principal`` raises
``InvalidInput``); export/import, engines and the background task queue live on the server. A request is
re-sent after a dropped connection; writes carry an ``Idempotency-Key``, so a memory write (add, update,
delete, rollback ...) whose response was lost is applied once. Cube-level writes are not replayed that way:
a retried ``create_cube`` or ``delete_cube`` whose first attempt went through reports ``CubeExists`` or
``CubeNotFound``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import httpx

from memos import errors
from memos.errors import BackendError, InvalidInput, MemosError
from memos.models import Hit, LogEntry, MemCube, Memory
from memos.sdk import _with_async_twins

#: Page size used to read a whole history (the server's largest page).
_PAGE = 10_000
#: Error classes for bodies whose ``type`` is not a memos error (a proxy, an HTTP-level error).
_BY_STATUS: dict[int, type[MemosError]] = {400: InvalidInput, 403: errors.AccessDenied, 404: errors.NotFound,
                                           409: errors.Conflict, 413: InvalidInput, 422: InvalidInput,
                                           503: BackendError}
# Transport failures after which the request can be sent again: writes carry an idempotency key.
_RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    raise InvalidInput(f"{type(value).__name__} is not JSON-serialisable", field="body")


def _encode(body: Any) -> bytes:
    try:
        return json.dumps(body, default=_json_default, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # NaN / infinity: not JSON
        raise InvalidInput(f"request body is not valid JSON: {exc}", field="body") from exc


def _error_class(type_name: str, status: int) -> type[MemosError]:
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, MemosError):
        return cls
    if status == 401:
        from memos.errors import Unauthenticated

        return Unauthenticated
    return _BY_STATUS.get(status, MemosError)


def _raise_for(resp: httpx.Response) -> None:
    """Rebuild the typed memos error a server answered with."""
    try:
        err = resp.json()["error"]
        type_name, message = str(err["type"]), str(err["message"])
        context = err.get("context") or {}
    except (ValueError, KeyError, TypeError):
        detail = f"HTTP {resp.status_code} from {resp.request.url}: {resp.text[:200]}"
        raise BackendError("rest", detail) from None
    # Build without the subclass constructor (its arguments differ per class): same path as unpickling.
    raise errors._rebuild(_error_class(type_name, resp.status_code), message,
                          {k: v for k, v in context.items() if isinstance(k, str)})


class _Http:
    """One httpx client per handle: connection reuse, auth header, retries, error mapping."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float, retries: int,
                 transport: httpx.BaseTransport | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.retries = retries
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport)

    def __call__(self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None,
                 *, write: bool = False) -> Any:
        headers = {"Idempotency-Key": uuid.uuid4().hex} if write else {}
        content = None
        if body is not None:
            content = _encode(body)
            headers["Content-Type"] = "application/json"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.request(method, path, content=content, params=query, headers=headers)
                break
            except _RETRYABLE as exc:
                if attempt == self.retries:
                    raise BackendError("rest", f"{method} {self.url}{path}: {exc!r}") from exc
                time.sleep(0.05 * (attempt + 1))
            except httpx.TimeoutException as exc:
                raise BackendError("rest", f"{method} {self.url}{path} timed out: {exc!r}") from exc
        if resp.status_code >= 400:
            _raise_for(resp)
        return resp.json()

    def close(self) -> None:
        self.client.close()


def _memories(data: dict[str, Any]) -> list[Memory]:
    return [Memory.model_validate(m) for m in data["memories"]]


def _seg(name: str) -> str:
    """A path segment: cube names and ids are slugs, but never let one add a path level."""
    return quote(str(name), safe="")


@_with_async_twins("add", "add_many", "get", "update", "delete", "history", "rollback", "search", "list",
                   "log", "info", "grant", "sweep_expired", "stats", "add_activation", "archive",
                   "train_adapter", "retrain_adapter", "add_messages", "consolidate")
class RemoteCube:
    """A MemCube on a memos server, seen with the handle's API key (mirrors :class:`memos.sdk.Cube`)."""

    def __init__(self, mos: RemoteMemOS, name: str, at_commit: int | None = None) -> None:
        self._mos = mos
        self.name = name
        self.at_commit = at_commit

    def __repr__(self) -> str:
        at = f" at commit {self.at_commit}" if self.at_commit is not None else ""
        return f"<RemoteCube {self.name!r}{at} on {self._mos.url}>"

    @property
    def _path(self) -> str:
        return f"/v1/cubes/{_seg(self.name)}"

    def _http(self, method: str, sub: str = "", body: Any = None, params: Mapping[str, Any] | None = None,
              *, write: bool = False) -> Any:
        return self._mos._http(method, self._path + sub, body, params, write=write)

    def _read(self, method: str, sub: str = "", body: Any = None, **params: Any) -> Any:
        """A read at this view's commit (time travel when ``at_commit`` is set)."""
        return self._http(method, sub, body, {**params, "at": self.at_commit})

    def _writable(self) -> None:
        if self.at_commit is not None:
            raise InvalidInput(f"cube {self.name!r} at commit {self.at_commit} is a read-only view",
                               field="cube")

    def info(self) -> MemCube:
        return MemCube.model_validate(self._http("GET"))

    @property
    def head(self) -> int:
        return self.info().head

    def at(self, commit: int) -> RemoteCube:
        """A read-only view of the cube as it was right after ``commit``."""
        if not isinstance(commit, int) or isinstance(commit, bool) or commit < 0:
            raise InvalidInput(f"commit must be a non-negative integer, got {commit!r}", field="commit")
        head = self.head
        if commit > head:
            raise InvalidInput(f"cube {self.name!r} has no commit {commit} (head is {head})", field="commit")
        return RemoteCube(self._mos, self.name, at_commit=commit)

    # -------------------------------------------------------------------------------- writes
    def add(self, text: str, metadata: dict[str, Any] | None = None, tags: list[str] | None = None,
            event_time: str | datetime | None = None, expires_at: str | datetime | None = None,
            context: str | None = None) -> Memory:
        """Add one plaintext memory."""
        self._writable()
        body = {"text": text, "metadata": metadata, "tags": tags, "event_time": event_time,
                "expires_at": expires_at, "context": context}
        return Memory.model_validate(self._http("POST", "/memories", body, write=True))

    def add_many(self, items: Iterable[str | Mapping[str, Any]]) -> list[Memory]:
        """Add many memories in one commit."""
        self._writable()
        if isinstance(items, (str, bytes, Mapping)):
            raise InvalidInput("add_many takes a list of memories", field="items")
        body = {"items": [dict(i) if isinstance(i, Mapping) else i for i in items]}
        return _memories(self._http("POST", "/memories/batch", body, write=True))

    def update(self, memory_id: str, text: str | None = None, *, metadata: dict[str, Any] | None = None,
               **fields: Any) -> Memory:
        """Write a new version of a memory with the given fields."""
        self._writable()
        if text is not None:
            fields["text"] = text
        if metadata is not None:
            fields["metadata"] = metadata
        return Memory.model_validate(self._http("PATCH", f"/memories/{_seg(memory_id)}", fields, write=True))

    def delete(self, memory_id: str, purge: bool = False) -> Memory:
        """Archive a memory (``purge=True``: hard delete, leaving a tombstone in the log)."""
        self._writable()
        data = self._http("DELETE", f"/memories/{_seg(memory_id)}", params={"purge": purge}, write=True)
        data.pop("purged", None)
        return Memory.model_validate(data)

    def rollback(self, memory_id: str, version: int) -> Memory:
        self._writable()
        return Memory.model_validate(self._http("POST", f"/memories/{_seg(memory_id)}/rollback",
                                                {"version": version}, write=True))

    def grant(self, principal: str, access: str = "read") -> MemCube:
        self._writable()
        return self._mos.grant(self.name, principal, access)

    def sweep_expired(self) -> list[Memory]:
        self._writable()
        return _memories(self._http("POST", "/sweep-expired", write=True))

    def add_activation(self, text: str, engine: str | None = None, metadata: dict[str, Any] | None = None,
                       tags: list[str] | None = None) -> Memory:
        """An activation memory: the KV cache of ``text``, built by the server's engine."""
        self._writable()
        body = {"text": text, "engine": engine, "metadata": metadata, "tags": tags}
        return Memory.model_validate(self._http("POST", "/activations", body, write=True))

    def train_adapter(self, memory_ids: list[str] | str = "all", format: str = "lora", steps: int | None = None,
                      rank: int | None = None, lr: float | None = None, engine: str | None = None, seed: int = 0,
                      metadata: dict[str, Any] | None = None, tags: list[str] | None = None) -> Memory:
        """A parametric memory trained by the server's engine from plaintext memories."""
        self._writable()
        body = {"memory_ids": memory_ids, "format": format, "steps": steps, "rank": rank, "lr": lr,
                "engine": engine, "seed": seed, "metadata": metadata, "tags": tags}
        return Memory.model_validate(self._http("POST", "/adapters", body, write=True))

    def retrain_adapter(self, memory_id: str, memory_ids: list[str] | str | None = None, format: str | None = None,
                        steps: int | None = None, engine: str | None = None, seed: int = 0) -> Memory:
        self._writable()
        body = {"memory_ids": memory_ids, "format": format, "steps": steps, "engine": engine, "seed": seed}
        return Memory.model_validate(self._http("POST", f"/adapters/{_seg(memory_id)}/retrain", body, write=True))

    def add_messages(self, messages: list[Any], session: str | int | None = None, event_time: Any = None, *,
                     llm: Any = None, reconcile: str | None = None, window: int = 6, dedup: Any = True,
                     consolidate: bool = False) -> Any:
        """Read a conversation into memory on the server; returns the ``IngestReport``. ``llm`` is a name,
        an endpoint URL or ``{"endpoint", "model"}`` (a chat backend object cannot cross the wire)."""
        from memos.reading.ingest import IngestReport

        self._writable()
        when = event_time.isoformat() if hasattr(event_time, "isoformat") else event_time
        body = {"messages": messages, "session": session, "event_time": when, "llm": llm, "reconcile": reconcile,
                "window": window, "dedup": dedup, "consolidate": consolidate}
        return IngestReport.model_validate(self._http("POST", "/messages", body, write=True))

    def consolidate(self, *, llm: Any = None, related: float = 0.6, min_group: int = 3, max_group: int = 8,
                    expire: bool = True, dedup: Any = True, promote_top: int = 0, promote_min_heat: float = 1.0,
                    engine: str | None = None) -> Any:
        from memos.reading.consolidate import ConsolidationReport

        self._writable()
        body = {"llm": llm, "related": related, "min_group": min_group, "max_group": max_group, "expire": expire,
                "dedup": dedup, "promote_top": promote_top, "promote_min_heat": promote_min_heat, "engine": engine}
        return ConsolidationReport.model_validate(self._http("POST", "/consolidate", body, write=True))

    def archive(self, ids: list[str]) -> list[Memory]:
        self._writable()
        return _memories(self._http("POST", "/archive", {"ids": ids}, write=True))

    # --------------------------------------------------------------------------------- reads
    def get(self, memory_id: str, version: int | None = None) -> Memory:
        return Memory.model_validate(self._read("GET", f"/memories/{_seg(memory_id)}", version=version))

    def history(self, memory_id: str) -> list[Memory]:
        """Every version, oldest first (read page by page)."""
        out: list[Memory] = []
        offset: int | None = 0
        while offset is not None:
            page = self._read("GET", f"/memories/{_seg(memory_id)}/history", offset=offset, limit=_PAGE)
            out.extend(Memory.model_validate(v) for v in page["versions"])
            offset = page["next_offset"]
        return out

    def search(self, query: str, top_k: int = 10, filters: dict[str, Any] | None = None,
               time_range: tuple[Any, Any] | None = None, include_archived: bool = False) -> list[Hit]:
        body = {"query": query, "top_k": top_k, "filters": filters, "time_range": time_range,
                "include_archived": include_archived, "include_memory": True}
        hits = self._read("POST", "/search", body)["hits"]
        return [Hit(memory=Memory.model_validate(h["memory"]), score=h["score"]) for h in hits]

    def list(self, offset: int = 0, limit: int = 100, include_archived: bool = False) -> list[Memory]:
        return _memories(self._read("GET", "/memories", offset=offset, limit=limit,
                                    include_archived=include_archived))

    def log(self, after: int = 0, limit: int | None = None) -> list[LogEntry]:
        entries = self._read("GET", "/log", after=after, limit=limit)["entries"]
        return [LogEntry.model_validate(e) for e in entries]

    def stats(self) -> dict[str, Any]:
        return self._http("GET", "/stats")  # type: ignore[no-any-return]


@_with_async_twins("create_cube", "list_cubes", "delete_cube", "grant", "export_cube", "import_cube",
                   "status", "generate", "migrate")
class RemoteMemOS:
    """A handle on a memos REST server; the API key fixes the principal (mirrors :class:`memos.sdk.MemOS`).

    ``retries``: how many times a request is re-sent after a dropped connection (writes are idempotent).
    ``transport``: an httpx transport, e.g. a mock in tests.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 30, *, retries: int = 2,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"server URL must be http(s)://, got {url!r}", field="url")
        self._http = _Http(url, api_key, timeout_s, retries, transport)
        self.url = self._http.url
        self._principal: str | None = None
        self._principal_known = False

    def __repr__(self) -> str:
        return f"<RemoteMemOS {self.url}>"

    @property
    def principal(self) -> str | None:
        """The principal the server maps this handle's API key to (asked once)."""
        if not self._principal_known:
            self._principal = self.status().get("principal")
            self._principal_known = True
        return self._principal

    def as_principal(self, principal: str | None) -> RemoteMemOS:
        raise InvalidInput("a remote handle acts as its API key's principal: connect with that "
                           "principal's key", field="principal")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteMemOS:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------------------------- cubes
    def create_cube(self, name: str, owner: str | None = None, description: str = "",
                    policy: dict[str, Any] | None = None) -> RemoteCube:
        self._http("POST", "/v1/cubes", {"name": name, "owner": owner, "description": description,
                                         "policy": policy}, write=True)
        return RemoteCube(self, name)

    def cube(self, name: str) -> RemoteCube:
        """Open an existing cube (raises CubeNotFound / AccessDenied)."""
        self._http("GET", f"/v1/cubes/{_seg(name)}")
        return RemoteCube(self, name)

    def list_cubes(self) -> list[MemCube]:
        return [MemCube.model_validate(c) for c in self._http("GET", "/v1/cubes")["cubes"]]

    def delete_cube(self, name: str) -> bool:
        return bool(self._http("DELETE", f"/v1/cubes/{_seg(name)}", write=True)["deleted"])

    def grant(self, cube: str, principal: str, access: str = "read") -> MemCube:
        body = {"principal": principal, "access": access}
        data = self._http("POST", f"/v1/cubes/{_seg(cube)}/grants", body, write=True)
        return MemCube.model_validate(data["cube"])

    def export_cube(self, cube: str, path: Any) -> dict[str, Any]:
        raise InvalidInput("export bundles on the server's host (memos export)", field="cube")

    def import_cube(self, path: Any, name: str | None = None) -> RemoteCube:
        raise InvalidInput("import bundles on the server's host (memos import)", field="path")

    def engine(self, name: str | None = None) -> Any:
        raise InvalidInput("model engines run on the server; use generate()/migrate()", field="engine")

    # ------------------------------------------------------------------------------ models
    def generate(self, cube: str, prompt: str, *, kv: list[str] | None = None,
                 adapters: list[str] | None = None, retrieve: bool = True, top_k: int = 5,
                 max_tokens: int = 64, engine: str | None = None) -> Any:
        """Answer ``prompt`` with the cube's memories on the server; returns a ``Generation``."""
        from memos.engines.base import Generation

        body = {"cube": cube, "prompt": prompt, "kv": kv, "adapters": adapters, "retrieve": retrieve,
                "top_k": top_k, "max_tokens": max_tokens, "engine": engine}
        return Generation.model_validate(self._http("POST", "/v1/generate", body))

    def migrate(self, cube: str, memory_id: str | list[str], to: str, *, engine: str | None = None,
                format: str = "lora") -> Memory:
        body = {"memory_id": memory_id, "to": to, "engine": engine, "format": format}
        return Memory.model_validate(self._http("POST", f"/v1/cubes/{_seg(cube)}/migrate", body, write=True))

    def status(self) -> dict[str, Any]:
        return self._http("GET", "/v1/status")  # type: ignore[no-any-return]


__all__ = ["RemoteCube", "RemoteMemOS"]
