"""The memos kernel: every memory operation, on behalf of a principal, as a commit in a cube's log.

Write path (one cube): validate -> embed (outside the cube lock, so threads overlap on I/O) -> under
the cube lock: plan the new versions against the current head -> ``Commit`` (atomic, durable) -> update
the in-memory index. The log is the truth; indexes are derived and rebuilt from storage when stale.
If a shared backend reports the head moved (another writer), the kernel catches up and re-plans.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from memos import plugins
from memos.config import Settings
from memos.errors import (
    Conflict,
    CubeNotFound,
    InvalidInput,
    MemoryNotFound,
    VersionNotFound,
)
from memos.kernel import acl
from memos.kernel.indexer import CubeIndexer
from memos.models import (
    SEARCHABLE_STATES,
    CubePolicy,
    DerivedFrom,
    Hit,
    LogEntry,
    MemCube,
    Memory,
    Payload,
    Provenance,
    State,
    check_context,
    check_encodable,
    check_int,
    check_metadata,
    check_tags,
    check_text,
    new_id,
    parse_time,
    utcnow,
    validate_cube_name,
)
from memos.retrieval.cube_index import SearchParams, check_filters
from memos.retrieval.parts import pack, split_parts
from memos.storage import BlobStore, Commit, PutCube, StorageBackend
from memos.telemetry import span

_UNSET: Any = object()
#: Idempotency key of the current request (set by remote callers that may retry a write). A write whose
#: key already appears in the cube's recent log returns that commit's versions instead of writing again.
REQUEST_ID: ContextVar[str | None] = ContextVar("memos_request_id", default=None)
_REPLAY_WINDOW = 256
_CONFLICT_RETRIES = 8


@contextlib.contextmanager
def request_scope(request_id: str | None) -> Iterator[None]:
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)
MAX_BATCH = 100_000
MAX_TOP_K = 1000


@dataclass
class _CubeState:
    cube: MemCube
    lock: threading.RLock = field(default_factory=threading.RLock)
    indexer: CubeIndexer | None = None


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A validated item for :meth:`Kernel.add_many`."""

    text: str
    metadata: dict[str, Any]
    tags: list[str]
    event_time: datetime | None
    expires_at: datetime | None
    kind: str = "plaintext"
    payload: dict[str, Any] | None = None
    derived_from: tuple[DerivedFrom, ...] = ()
    source: str | None = None
    context: str = ""


def new_memory(text: Any, metadata: Any = None, tags: Any = None, event_time: Any = None,
               expires_at: Any = None, context: Any = None, **extra: Any) -> NewMemory:
    return NewMemory(check_text(text), check_metadata(metadata), check_tags(tags),
                     parse_time(event_time, "event_time"), parse_time(expires_at, "expires_at"),
                     context=check_context(context), **extra)


def context_view(text: str, context: str) -> str:
    """The text indexed for a memory's context: its surroundings followed by the memory itself."""
    return f"{context}\n{text}" if context else text


class Kernel:
    def __init__(self, settings: Settings, backend: StorageBackend, embedder: Any, index_factory: Any,
                 blobs: BlobStore, on_close: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.backend = backend
        self.embedder = embedder
        self.index_factory = index_factory
        self.blobs = blobs
        self._on_close = on_close
        self._cubes: dict[str, _CubeState] = {}
        self._registry_lock = threading.Lock()
        self._closed = False
        self.index_dir = settings.home / "index"
        self.started_at = time.time()
        #: Per-kernel services built on top of it (activation store, residency pool ...), created lazily
        #: by the SDK and shared by every handle on this kernel.
        self.services: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for state in list(self._cubes.values()):
            with state.lock:
                if state.indexer is not None:
                    state.indexer.save()
        self.backend.close()
        if self._on_close is not None:
            self._on_close()

    def checkpoint(self) -> None:
        """Persist every loaded dense index (faster reopen); the log alone is always sufficient."""
        for state in list(self._cubes.values()):
            with state.lock:
                if state.indexer is not None:
                    state.indexer.save()

    # ---------------------------------------------------------------------------------- cubes
    def _state(self, name: str, refresh: bool = False) -> _CubeState:
        validate_cube_name(name)
        with self._registry_lock:
            state = self._cubes.get(name)
        if state is not None and not refresh:
            return state
        cube = self.backend.get_cube(name)
        if cube is None:
            with self._registry_lock:
                self._cubes.pop(name, None)
            raise CubeNotFound(name)
        with self._registry_lock:
            state = self._cubes.get(name)
            if state is None or state.cube.created_at != cube.created_at:
                # unknown here, or dropped and recreated by another kernel: derived state starts afresh
                state = self._cubes[name] = _CubeState(cube)
            else:
                state.cube = cube
        return state

    def _op(self, op: str, cube: str | None, principal: str | None, args: dict[str, Any]) -> None:
        plugins.call_before(op, cube, principal, args)

    def create_cube(self, name: str, *, owner: str | None = None, description: str = "",
                    policy: dict[str, Any] | CubePolicy | None = None, principal: str | None = None) -> MemCube:
        validate_cube_name(name)
        owner = owner or principal or "local"
        if principal is not None and owner != principal:
            raise InvalidInput(f"principal {principal!r} cannot create a cube owned by {owner!r}", field="owner")
        if not isinstance(owner, str) or not owner.strip():
            raise InvalidInput("owner must be a non-empty string", field="owner")
        if not isinstance(description, str):
            raise InvalidInput("description must be a string", field="description")
        check_encodable(description, "description")
        check_encodable(owner, "owner")
        try:
            pol = policy if isinstance(policy, CubePolicy) else CubePolicy.model_validate(policy or {})
        except ValueError as exc:
            raise InvalidInput(f"invalid cube policy: {exc}", field="policy") from exc
        with span("cube.create", cube=name):
            self._op("cube.create", name, principal, {"owner": owner})
            cube = MemCube(name=name, owner=owner, description=description, policy=pol)
            self.backend.put_cube(cube, create=True)
            with self._registry_lock:
                self._cubes[name] = _CubeState(cube)
            plugins.call_after("cube.create", name, principal, cube)
            return cube

    def get_cube(self, name: str, *, principal: str | None = None) -> MemCube:
        with span("cube.get", cube=name):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "read")
            return state.cube

    def list_cubes(self, *, principal: str | None = None) -> list[MemCube]:
        with span("cube.list"):
            return [c for c in self.backend.list_cubes() if acl.allowed(c, principal, "read")]

    def delete_cube(self, name: str, *, principal: str | None = None) -> bool:
        with span("cube.delete", cube=name):
            state = self._state(name, refresh=True)
            acl.check(state.cube, principal, "admin")
            self._op("cube.delete", name, principal, {})
            with state.lock:
                self.backend.drop_cube(name)
                if state.indexer is not None:
                    state.indexer.discard()
                with self._registry_lock:
                    self._cubes.pop(name, None)
            plugins.call_after("cube.delete", name, principal, True)
            return True

    def grant(self, name: str, principal_to: str, access: str, *, principal: str | None = None) -> MemCube:
        """Give ``principal_to`` read or write access (or revoke it); a commit in the cube's log."""
        with span("cube.grant", cube=name, access=access):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "admin")
            self._op("cube.grant", name, principal, {"principal": principal_to, "access": access})
            with state.lock:
                updated = state.cube.model_copy(update={"acl": acl.granted(state.cube.acl, principal_to, access)})
                entry = self._entry(state, "grant", principal, [], {"principal": principal_to, "access": access})
                head = self._write(state, [PutCube(updated), self._commit_op(state, entry, [], {}, ())])
                state.cube = updated.model_copy(update={"head": head})
            plugins.call_after("cube.grant", name, principal, state.cube)
            return state.cube

    def set_policy(self, name: str, policy: dict[str, Any], *, principal: str | None = None) -> MemCube:
        with span("cube.policy", cube=name):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "admin")
            try:
                pol = CubePolicy.model_validate({**state.cube.policy.model_dump(), **policy})
            except ValueError as exc:
                raise InvalidInput(f"invalid cube policy: {exc}", field="policy") from exc
            with state.lock:
                updated = state.cube.model_copy(update={"policy": pol})
                entry = self._entry(state, "policy", principal, [], {"policy": pol.model_dump(mode="json")})
                head = self._write(state, [PutCube(updated), self._commit_op(state, entry, [], {}, ())])
                state.cube = updated.model_copy(update={"head": head})
            return state.cube

    # ------------------------------------------------------------------------------ internals
    def _entry(self, state: _CubeState, op: str, principal: str | None, versions: Sequence[Memory],
               detail: dict[str, Any] | None = None, tombstones: Sequence[str] = ()) -> LogEntry:
        items = [DerivedFrom(id=m.id, version=m.version) for m in versions]
        items += [DerivedFrom(id=mid, version=0) for mid in tombstones]
        return LogEntry(cube=state.cube.name, commit=state.cube.head + 1, op=op, actor=principal,
                        items=items, detail=detail or {})

    def _commit_op(self, state: _CubeState, entry: LogEntry, versions: Sequence[Memory],
                   vectors: dict[tuple[str, int], bytes], purge: Sequence[str]) -> Commit:
        return Commit(entry=entry, versions=tuple(versions), vectors=vectors, purge=tuple(purge),
                      expected_head=state.cube.head)

    def _write(self, state: _CubeState, ops: list[Any]) -> int:
        results = self.backend.batch(ops)
        head = next(r for op, r in zip(ops, results) if isinstance(op, Commit))
        state.cube = state.cube.model_copy(update={"head": head})
        return head

    def _indexer(self, state: _CubeState) -> CubeIndexer:
        if state.indexer is None:
            state.indexer = CubeIndexer(self, state.cube.name)
        state.indexer.sync(state.cube.head)
        return state.indexer

    def _mutate(self, name: str, principal: str | None, access: acl.Access,
                plan: Callable[[_CubeState], tuple[str, list[Memory], dict[tuple[str, int], bytes],
                                                   list[str], dict[str, Any]]]) -> list[Memory]:
        """Run ``plan`` under the cube lock and commit its versions; re-plan if the head moved."""
        state = self._state(name, refresh=self.backend.shared)
        acl.check(state.cube, principal, access)
        request = REQUEST_ID.get()
        for attempt in range(_CONFLICT_RETRIES):
            with state.lock:
                if request is not None:
                    done = self._replayed(state, request)
                    if done is not None:
                        return done
                op, versions, vectors, purge, detail = plan(state)
                if request is not None:
                    detail = {**detail, "request": request}
                entry = self._entry(state, op, principal, versions, detail, purge)
                try:
                    self._write(state, [self._commit_op(state, entry, versions, vectors, purge)])
                except Conflict:
                    if attempt == _CONFLICT_RETRIES - 1:
                        raise
                    state = self._state(name, refresh=True)
                    time.sleep(0.002 * (attempt + 1))  # other kernels are writing this cube: back off
                    continue
                if state.indexer is not None:
                    state.indexer.apply(versions, vectors, purge, state.cube.head)
                return versions
        raise AssertionError("unreachable")

    def _replayed(self, state: _CubeState, request: str) -> list[Memory] | None:
        """The versions a commit with this request id wrote, if it is among the cube's recent commits."""
        head = state.cube.head
        for entry in reversed(self.backend.read_log(state.cube.name, after=max(0, head - _REPLAY_WINDOW))):
            if entry.detail.get("request") == request:
                found = [self.backend.get_memories(state.cube.name, [it.id], version=it.version)[0]
                         for it in entry.items if it.version > 0]
                return [m for m in found if m is not None]
        return None

    def _embed(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> list[bytes]:
        """One stored vector blob per memory (:mod:`memos.retrieval.parts`): the main vector (with a context,
        the normalised sum of the body and context-view vectors), then one vector per sentence of a
        multi-sentence body (or the body alone when a context went into the main vector). One batched
        embedder call for all of them."""
        with span("embed", items=len(texts)):
            n = len(texts)
            ctxs = list(contexts) if contexts is not None else [""] * n
            with_ctx = [i for i, c in enumerate(ctxs) if c]
            split = [split_parts(t) for t in texts]
            batch = [*texts, *(context_view(texts[i], ctxs[i]) for i in with_ctx)]
            for ps in split:
                batch.extend(ps)
            vecs = self.embedder.embed(batch)
            body = vecs[:n]
            main = body.copy()
            if with_ctx:
                summed = body[with_ctx] + vecs[n:n + len(with_ctx)]
                main[with_ctx] = summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)
            out, at = [], n + len(with_ctx)
            for i, ps in enumerate(split):
                if ps:
                    out.append(pack(main[i], vecs[at:at + len(ps)]))
                    at += len(ps)
                else:
                    out.append(pack(main[i], body[i:i + 1] if ctxs[i] else None))
            return out

    def _current(self, state: _CubeState, memory_id: str) -> Memory:
        if not isinstance(memory_id, str) or not memory_id:
            raise InvalidInput("memory id must be a non-empty string", field="id")
        found = self.backend.get_memories(state.cube.name, [memory_id])[0]
        if found is None:
            raise MemoryNotFound(state.cube.name, memory_id)
        return found

    def _next_version(self, st: _CubeState, old: Memory, principal: str | None, op: str,
                      **changes: Any) -> Memory:
        now = utcnow()
        prov = Provenance(op=op, actor=principal, source=changes.pop("source", None),
                          derived_from=changes.pop("derived_from", [DerivedFrom(id=old.id, version=old.version)]),
                          at=now)
        return old.model_copy(update={"version": old.version + 1, "commit": st.cube.head + 1,
                                      "provenance": prov, "updated_at": now, **changes})

    # ------------------------------------------------------------------------------- writes
    def add_many(self, name: str, items: Sequence[NewMemory], *, principal: str | None = None,
                 op: str = "add") -> list[Memory]:
        if not isinstance(items, (list, tuple)) or not items:
            raise InvalidInput("add_many needs a non-empty list of memories", field="items")
        if len(items) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} memories per batch", field="items")
        with span(op, cube=name, items=len(items)):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "write")
            self._op(op, name, principal, {"items": len(items)})
            blobs = self._embed([it.text for it in items], [it.context for it in items])
            ids = [new_id() for _ in items]
            ttl = state.cube.policy.default_ttl_s

            def plan(st: _CubeState) -> tuple[str, list[Memory], dict, list[str], dict]:
                now = utcnow()
                commit = st.cube.head + 1
                versions: list[Memory] = []
                for mid, it in zip(ids, items):
                    expires = it.expires_at
                    if expires is None and ttl:
                        expires = datetime.fromtimestamp(now.timestamp() + ttl, now.tzinfo)
                    versions.append(Memory(
                        id=mid, cube=name, kind=it.kind, version=1, commit=commit, state=State.activated,
                        text=it.text, context=it.context, metadata=it.metadata, tags=it.tags, event_time=it.event_time,
                        expires_at=expires, created_at=now, updated_at=now,
                        payload=None if it.payload is None else Payload.model_validate(it.payload),
                        provenance=Provenance(op=op, actor=principal, source=it.source,
                                              derived_from=list(it.derived_from), at=now)))
                vectors = {(m.id, 1): blobs[i] for i, m in enumerate(versions)}
                return op, versions, vectors, [], {}

            out = self._mutate(name, principal, "write", plan)
            self._enforce_capacity(name, principal)
            plugins.call_after(op, name, principal, out)
            return out

    def update(self, name: str, memory_id: str, *, text: Any = _UNSET, metadata: Any = _UNSET,
               tags: Any = _UNSET, event_time: Any = _UNSET, expires_at: Any = _UNSET, context: Any = _UNSET,
               derived_from: Any = (), source: str | None = None, principal: str | None = None) -> Memory:
        """A new version with the given fields changed. ``derived_from``: further sources of the change
        (after the previous version, which is always listed first), ``source``: where it came from."""
        sources = _sources(derived_from)
        changes: dict[str, Any] = {}
        if text is not _UNSET:
            changes["text"] = check_text(text)
        if context is not _UNSET:
            changes["context"] = check_context(context)
        if metadata is not _UNSET:
            changes["metadata"] = check_metadata(metadata)
        if tags is not _UNSET:
            changes["tags"] = check_tags(tags)
        if event_time is not _UNSET:
            changes["event_time"] = parse_time(event_time, "event_time")
        if expires_at is not _UNSET:
            changes["expires_at"] = parse_time(expires_at, "expires_at")
        if not changes:
            raise InvalidInput("update needs at least one of text, context, metadata, tags, event_time, expires_at")
        with span("update", cube=name, items=1):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "write")
            self._op("update", name, principal, {"id": memory_id, "fields": sorted(changes)})

            def plan(st: _CubeState) -> tuple[str, list[Memory], dict, list[str], dict]:
                old = self._current(st, memory_id)
                new = self._next_version(st, old, principal, "update", source=source,
                                         derived_from=[DerivedFrom(id=old.id, version=old.version), *sources],
                                         **changes)
                reembed = "text" in changes or "context" in changes
                new_vec = self._embed([new.text], [new.context])[0] if reembed else None
                if old.state not in SEARCHABLE_STATES:
                    new = new.model_copy(update={"state": State.activated})
                vec = new_vec if new_vec is not None else self._stored_vector(st, old)
                return "update", [new], {(new.id, new.version): vec}, [], {}

            out = self._mutate(name, principal, "write", plan)[0]
            plugins.call_after("update", name, principal, out)
            return out

    def migrate_kind(self, name: str, memory_id: str, kind: str, payload: dict[str, Any] | None, *,
                     principal: str | None = None, detail: dict[str, Any] | None = None) -> Memory:
        """A new version of a memory in another kind (plaintext <-> activation/parametric); text kept."""
        if kind not in ("plaintext", "activation", "parametric"):
            raise InvalidInput(f"unknown memory kind {kind!r}", field="to")
        with span("migrate", cube=name, kind=kind, items=1):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "write")
            self._op("migrate", name, principal, {"id": memory_id, "to": kind})

            def plan(st: _CubeState) -> tuple[str, list[Memory], dict, list[str], dict]:
                old = self._current(st, memory_id)
                new = self._next_version(st, old, principal, "migrate", kind=kind,
                                         payload=None if payload is None else Payload.model_validate(payload))
                return "migrate", [new], {(new.id, new.version): self._stored_vector(st, old)}, [], \
                    {"from": old.kind, "to": kind, **(detail or {})}

            out = self._mutate(name, principal, "write", plan)[0]
            plugins.call_after("migrate", name, principal, out)
            return out

    def _stored_vector(self, state: _CubeState, m: Memory) -> bytes:
        return self._stored_vectors(state, [m])[0]

    def _stored_vectors(self, state: _CubeState, versions: Sequence[Memory]) -> list[bytes]:
        """The stored vector blobs of ``versions`` in one storage read (re-embedding, in one batch, those
        whose version is not the stored one)."""
        rows = self.backend.scan(state.cube.name, ids=tuple({m.id for m in versions}), with_vectors=True)
        stored = {(m.id, m.version): bytes(v) for m, v in rows if v is not None}
        missing = [m for m in versions if (m.id, m.version) not in stored]
        if missing:
            fresh = self._embed([m.text for m in missing], [m.context for m in missing])
            stored.update({(m.id, m.version): blob for m, blob in zip(missing, fresh)})
        return [stored[(m.id, m.version)] for m in versions]

    def set_state(self, name: str, ids: Sequence[str], new_state: State, *, op: str,
                  principal: str | None = None, detail: dict[str, Any] | None = None,
                  derived_from: Any = (), source: str | None = None) -> list[Memory]:
        """Move memories to a lifecycle state (archive, merge, expire) as one commit; ``derived_from`` and
        ``source`` as in :meth:`update` (the same for every memory)."""
        sources = _sources(derived_from)
        if not ids:
            raise InvalidInput("no memory ids given", field="ids")
        with span(op, cube=name, items=len(ids)):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "write")
            self._op(op, name, principal, {"ids": list(ids)})

            def plan(st: _CubeState) -> tuple[str, list[Memory], dict, list[str], dict]:
                found = self.backend.get_memories(name, ids)
                versions = []
                for mid, old in zip(ids, found):
                    if old is None:
                        raise MemoryNotFound(name, mid)
                    versions.append(self._next_version(st, old, principal, op, state=new_state, source=source,
                                                       derived_from=[DerivedFrom(id=old.id, version=old.version),
                                                                     *sources]))
                blobs = self._stored_vectors(st, [m for m in found if m is not None])
                vectors = {(new.id, new.version): blob for new, blob in zip(versions, blobs)}
                return op, versions, vectors, [], detail or {}

            out = self._mutate(name, principal, "write", plan)
            plugins.call_after(op, name, principal, out)
            return out

    def delete(self, name: str, memory_id: str, *, purge: bool = False, principal: str | None = None) -> Memory:
        """Soft delete (a new ``archived`` version) or, with ``purge``, hard delete leaving a tombstone."""
        if not purge:
            return self.set_state(name, [memory_id], State.archived, op="delete", principal=principal)[0]
        with span("purge", cube=name, items=1):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "write")
            self._op("purge", name, principal, {"id": memory_id})
            last: list[Memory] = []

            def plan(st: _CubeState) -> tuple[str, list[Memory], dict, list[str], dict]:
                last[:] = [self._current(st, memory_id)]
                return "purge", [], {}, [memory_id], {"purged_version": last[0].version}

            self._mutate(name, principal, "write", plan)
            plugins.call_after("purge", name, principal, last[0])
            return last[0]

    def rollback(self, name: str, memory_id: str, version: int, *, principal: str | None = None) -> Memory:
        """Write a new version equal to ``version`` (history is never rewritten)."""
        check_int(version, "version", lo=1)
        with span("rollback", cube=name, items=1):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "write")
            self._op("rollback", name, principal, {"id": memory_id, "version": version})

            def plan(st: _CubeState) -> tuple[str, list[Memory], dict, list[str], dict]:
                cur = self._current(st, memory_id)
                target = self.backend.get_memories(name, [memory_id], version=version)[0]
                if target is None:
                    raise VersionNotFound(name, memory_id, version, latest=cur.version)
                fields = {k: getattr(target, k) for k in
                          ("text", "context", "metadata", "tags", "event_time", "expires_at", "state", "payload", "kind")}
                new = self._next_version(st, cur, principal, "rollback",
                                         derived_from=[DerivedFrom(id=memory_id, version=version)], **fields)
                return "rollback", [new], {(new.id, new.version): self._stored_vector(st, target)}, \
                    [], {"to_version": version}

            out = self._mutate(name, principal, "write", plan)[0]
            plugins.call_after("rollback", name, principal, out)
            return out

    def sweep_expired(self, name: str, *, principal: str | None = None) -> list[Memory]:
        """Commit ``expired`` versions for every live memory past its ``expires_at``."""
        state = self._state(name, refresh=self.backend.shared)
        acl.check(state.cube, principal, "write")
        now = utcnow()
        expired = [m.id for m, _ in self.backend.scan(name, with_vectors=False)
                   if m.state in SEARCHABLE_STATES and m.is_expired(now)]
        if not expired:
            return []
        return self.set_state(name, expired, State.expired, op="expire", principal=principal)

    def _enforce_capacity(self, name: str, principal: str | None) -> None:
        """Archive the least recently updated live memories beyond ``policy.capacity``."""
        state = self._state(name, refresh=self.backend.shared)
        cap = state.cube.policy.capacity
        if not cap:
            return
        with state.lock:
            ix = self._indexer(state)
            over = ix.live_count() - cap
            victims = ix.oldest_live(over) if over > 0 else []
        if victims:
            self.set_state(name, victims, State.archived, op="evict", principal=principal,
                           detail={"reason": "capacity", "capacity": cap})

    # -------------------------------------------------------------------------------- reads
    def get(self, name: str, memory_id: str, *, version: int | None = None, at_commit: int | None = None,
            principal: str | None = None) -> Memory:
        with span("get", cube=name, items=1):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "read")
            if not isinstance(memory_id, str) or not memory_id:
                raise InvalidInput("memory id must be a non-empty string", field="id")
            if version is not None:
                check_int(version, "version", lo=1)
            if at_commit is not None:
                check_int(at_commit, "at_commit")
            found = self.backend.get_memories(name, [memory_id], version=version, at_commit=at_commit)[0]
            if found is None:
                if version is not None and self.backend.get_memories(name, [memory_id])[0] is not None:
                    raise VersionNotFound(name, memory_id, version)
                raise MemoryNotFound(name, memory_id)
            return found

    def history(self, name: str, memory_id: str, *, at_commit: int | None = None,
                principal: str | None = None) -> list[Memory]:
        with span("history", cube=name, items=1):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "read")
            versions = self.backend.history(name, memory_id)
            if at_commit is not None:
                versions = [v for v in versions if v.commit <= at_commit]
            if not versions:
                raise MemoryNotFound(name, memory_id)
            return versions

    def list_memories(self, name: str, *, offset: int = 0, limit: int = 100, include_archived: bool = False,
                      at_commit: int | None = None, principal: str | None = None) -> list[Memory]:
        if offset < 0 or limit < 1 or limit > 10_000:
            raise InvalidInput("offset must be >= 0 and limit within 1..10000", field="limit")
        with span("list", cube=name):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "read")
            rows = self.backend.scan(name, at_commit=at_commit, with_vectors=False)
            now = utcnow()
            ms = [m for m, _ in rows if include_archived or m.effective_state(now) in SEARCHABLE_STATES]
            return ms[offset:offset + limit]

    def log(self, name: str, *, after: int = 0, limit: int | None = None,
            principal: str | None = None) -> list[LogEntry]:
        check_int(after, "after")
        if limit is not None:
            check_int(limit, "limit", lo=1)
        with span("log", cube=name):
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "read")
            return self.backend.read_log(name, after=after, limit=limit)

    def search(self, name: str, query: str, *, top_k: int = 10, filters: Any = None, time_range: Any = None,
               include_archived: bool = False, at_commit: int | None = None,
               principal: str | None = None) -> list[Hit]:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("query is empty", field="query")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be an integer in 1..{MAX_TOP_K}", field="top_k")
        flt = check_filters(filters)
        tr = _time_range(time_range)
        with span("search", cube=name, top_k=top_k) as sp:
            state = self._state(name, refresh=self.backend.shared)
            acl.check(state.cube, principal, "read")
            qvec = self.embedder.embed_query(query)
            params = SearchParams(top_k=top_k, filters=flt or None, time_range=tr,
                                  include_archived=include_archived, now=time.time(),
                                  recency_half_life_days=state.cube.policy.recency_half_life_days,
                                  depth=self.settings.index.search_depth,
                                  dense_weight=self.settings.index.dense_weight,
                                  part_weight=self.settings.index.part_weight,
                                  fusion=self.settings.index.fusion)
            if at_commit is not None:
                ranked = CubeIndexer.snapshot(self, name, at_commit).search(query, qvec, params)
            else:
                with state.lock:
                    ranked = self._indexer(state).index.search(query, qvec, params)
            found = self.backend.get_memories(name, [mid for mid, _ in ranked], at_commit=at_commit)
            hits = [Hit(memory=m, score=s) for (_, s), m in zip(ranked, found) if m is not None]
            sp.set_attribute("memos.items", len(hits))
            return hits

    def stats(self, name: str) -> dict[str, Any]:
        state = self._state(name, refresh=self.backend.shared)
        with state.lock:
            ix = self._indexer(state)
            return ix.stats()


def _sources(value: Any) -> list[DerivedFrom]:
    """``derived_from`` as given to update/set_state: (id, version) pairs as DerivedFrom or mappings."""
    if not isinstance(value, (list, tuple)):
        raise InvalidInput("derived_from must be a list of {id, version}", field="derived_from")
    try:
        return [v if isinstance(v, DerivedFrom) else DerivedFrom.model_validate(v) for v in value]
    except ValueError as exc:
        raise InvalidInput(f"derived_from: {exc}", field="derived_from") from exc


def _time_range(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InvalidInput("time_range must be a (start, end) pair; either end may be null", field="time_range")
    lo = parse_time(value[0], "time_range.start")
    hi = parse_time(value[1], "time_range.end")
    lo_ts = lo.timestamp() if lo else float("-inf")
    hi_ts = hi.timestamp() if hi else float("inf")
    if lo_ts > hi_ts:
        raise InvalidInput("time_range start is after its end", field="time_range")
    return lo_ts, hi_ts
