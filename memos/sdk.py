"""The Python SDK: :class:`MemOS` (a handle on a memos home or server) and :class:`Cube`.

Every public call has an async twin named ``a<name>`` (``cube.asearch(...)``) that runs the call in a
worker thread, so an event loop is never blocked by embedding or disk I/O.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from memos.config import Settings, load_settings
from memos.errors import InvalidInput
from memos.kernel import Kernel, new_memory, open_kernel
from memos.models import Hit, LogEntry, MemCube, Memory, State


def _with_async_twins(*names: str):  # type: ignore[no-untyped-def]
    """Class decorator: for each method ``name`` add ``a<name>`` running it via ``asyncio.to_thread``."""

    def deco(cls: type) -> type:
        for name in names:
            fn = getattr(cls, name)

            def make(f: Any) -> Any:
                @functools.wraps(f)
                async def twin(self: Any, *args: Any, **kwargs: Any) -> Any:
                    return await asyncio.to_thread(f, self, *args, **kwargs)

                twin.__name__ = twin.__qualname__ = f"a{f.__name__}"
                twin.__doc__ = f"Async twin of :meth:`{f.__name__}`."
                return twin

            setattr(cls, f"a{name}", make(fn))
        return cls

    return deco


def check_task_access(kernel: Any, principal: str | None, payload: Any) -> None:
    from memos.kernel import acl

    if not isinstance(payload, dict):
        raise InvalidInput("task payload must be an object", field="payload")
    if principal is None:
        return
    cube = payload.get("cube")
    if not isinstance(cube, str):
        raise InvalidInput("a principal's task must name the cube it works on", field="payload")
    acl.check(kernel.get_cube(cube, principal=principal), principal, "write")


def _consolidate_task(mos: MemOS, payload: dict[str, Any]) -> Any:
    from memos.reading import consolidate_task

    return consolidate_task(mos, payload)


def _item(entry: Any) -> Any:
    """Accept ``"text"`` or a mapping with text/metadata/tags/event_time/expires_at."""
    if isinstance(entry, str):
        return new_memory(entry)
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"text", "metadata", "tags", "event_time", "expires_at", "context"}
        if unknown:
            raise InvalidInput(f"unknown memory fields: {', '.join(sorted(unknown))}", field="items")
        return new_memory(entry.get("text"), entry.get("metadata"), entry.get("tags"), entry.get("event_time"),
                          entry.get("expires_at"), entry.get("context"))
    raise InvalidInput(f"each memory must be a string or an object, got {type(entry).__name__}", field="items")


@_with_async_twins("add", "add_many", "get", "update", "delete", "history", "rollback", "search", "list",
                   "log", "info", "grant", "sweep_expired", "stats", "add_activation", "archive",
                   "train_adapter", "retrain_adapter", "add_messages", "consolidate")
class Cube:
    """A MemCube seen through a :class:`MemOS` handle (and its principal)."""

    def __init__(self, mos: MemOS, name: str, at_commit: int | None = None) -> None:
        self._mos = mos
        self.name = name
        self.at_commit = at_commit

    def __repr__(self) -> str:
        at = f" at commit {self.at_commit}" if self.at_commit is not None else ""
        return f"<Cube {self.name!r}{at}>"

    @property
    def _k(self) -> Kernel:
        return self._mos._kernel

    @property
    def _p(self) -> str | None:
        return self._mos.principal

    def _writable(self) -> None:
        if self.at_commit is not None:
            raise InvalidInput(f"cube {self.name!r} at commit {self.at_commit} is a read-only view", field="cube")

    def info(self) -> MemCube:
        return self._k.get_cube(self.name, principal=self._p)

    @property
    def head(self) -> int:
        return self.info().head

    def at(self, commit: int) -> Cube:
        """A read-only view of the cube as it was right after ``commit``."""
        if not isinstance(commit, int) or isinstance(commit, bool) or commit < 0:
            raise InvalidInput(f"commit must be a non-negative integer, got {commit!r}", field="commit")
        head = self.head
        if commit > head:
            raise InvalidInput(f"cube {self.name!r} has no commit {commit} (head is {head})", field="commit")
        return Cube(self._mos, self.name, at_commit=commit)

    # -------------------------------------------------------------------------------- writes
    def add(self, text: str, metadata: dict[str, Any] | None = None, tags: list[str] | None = None,
            event_time: str | datetime | None = None, expires_at: str | datetime | None = None,
            context: str | None = None) -> Memory:
        """Add one plaintext memory. ``context``: surrounding text indexed with it (not part of its body)."""
        self._writable()
        item = new_memory(text, metadata, tags, event_time, expires_at, context)
        return self._k.add_many(self.name, [item], principal=self._p)[0]

    def add_many(self, items: Iterable[str | Mapping[str, Any]]) -> list[Memory]:
        """Add many memories in one commit (one batched embedding pass)."""
        self._writable()
        if isinstance(items, (str, bytes, Mapping)):
            raise InvalidInput("add_many takes a list of memories", field="items")
        return self._k.add_many(self.name, [_item(e) for e in items], principal=self._p)

    def update(self, memory_id: str, text: str | None = None, *, metadata: dict[str, Any] | None = None,
               **fields: Any) -> Memory:
        self._writable()
        if text is not None:
            fields["text"] = text
        if metadata is not None:
            fields["metadata"] = metadata
        return self._k.update(self.name, memory_id, principal=self._p, **fields)

    def delete(self, memory_id: str, purge: bool = False) -> Memory:
        self._writable()
        return self._k.delete(self.name, memory_id, purge=purge, principal=self._p)

    def rollback(self, memory_id: str, version: int) -> Memory:
        self._writable()
        return self._k.rollback(self.name, memory_id, version, principal=self._p)

    def grant(self, principal: str, access: str = "read") -> MemCube:
        self._writable()
        return self._k.grant(self.name, principal, access, principal=self._p)

    def sweep_expired(self) -> list[Memory]:
        self._writable()
        return self._k.sweep_expired(self.name, principal=self._p)

    def add_activation(self, text: str, engine: str | None = None, metadata: dict[str, Any] | None = None,
                       tags: list[str] | None = None) -> Memory:
        """An activation memory: the KV cache of ``text`` (a document, persona, system prompt) for ``engine``."""
        self._writable()
        self.info()  # access check before loading a model
        return self._mos._activation().add(self.name, text, self._mos.engine(engine), metadata=metadata,
                                           tags=tags, principal=self._p)

    def train_adapter(self, memory_ids: list[str] | str = "all", format: str = "lora", steps: int | None = None,
                      rank: int | None = None, lr: float | None = None, engine: str | None = None, seed: int = 0,
                      metadata: dict[str, Any] | None = None, tags: list[str] | None = None) -> Memory:
        """Distil plaintext memories (ids, or ``"all"``) into a parametric memory: a LoRA adapter
        (``format="lora"``), TokMem memory tokens (``"tokmem"``) or a product-key memory layer
        (``"pkm"``) trained on ``engine``'s frozen model. Returns the new memory (kind ``parametric``;
        its payload and provenance list the source memories and versions)."""
        self._writable()
        self.info()  # access check before loading a model
        return self._mos._parametric().train(self.name, memory_ids, format=format, engine=self._mos.engine(engine),
                                             steps=steps, rank=rank, lr=lr, seed=seed, metadata=metadata,
                                             tags=tags, principal=self._p)

    def retrain_adapter(self, memory_id: str, memory_ids: list[str] | str | None = None, format: str | None = None,
                        steps: int | None = None, engine: str | None = None, seed: int = 0) -> Memory:
        """Train a parametric memory again, as a new version (by default on the latest versions of its
        sources: an updated fact is re-learnt, a deleted one forgotten). ``rollback`` restores the
        previous weights."""
        self._writable()
        self.info()
        return self._mos._parametric().retrain(self.name, memory_id, engine=self._mos.engine(engine),
                                               memory_ids=memory_ids, format=format, steps=steps, seed=seed,
                                               principal=self._p)

    def add_messages(self, messages: list[Any], session: str | int | None = None,
                     event_time: str | datetime | None = None, *, llm: Any = None, reconcile: str | None = None,
                     window: int = 6, dedup: Any = True, consolidate: bool = False) -> Any:
        """Read a conversation into memory (docs/reading.md). Every turn is stored first (one memory per
        turn, ``metadata.memory_type="turn"``); with ``llm`` (``"local"``, an endpoint URL or
        ``{"endpoint", "model"}``, or a chat backend object) atomic facts are extracted per ``window`` of
        turns and reconciled by the cube's policy (``policy={"reconcile": "accumulate" | "update" |
        "invalidate"}``, or ``reconcile=`` for this call). Returns an ``IngestReport``: stored turns, facts
        added/updated/deleted/invalidated, duplicates merged, failures (recorded, never dropped)."""
        from memos.reading import add_messages

        self._writable()
        return add_messages(self._mos, self.name, messages, session=session, event_time=event_time, llm=llm,
                            reconcile=reconcile, window=window, dedup=dedup, consolidate=consolidate)

    def consolidate(self, *, llm: Any = None, related: float = 0.6, min_group: int = 3, max_group: int = 8,
                    expire: bool = True, dedup: Any = True, promote_top: int = 0, promote_min_heat: float = 1.0,
                    engine: str | None = None) -> Any:
        """Sleep-time consolidation now (``mos.submit("consolidate", {"cube": name})`` queues it): expire,
        merge duplicates, summarise related facts (sources -> ``merged``), and with ``promote_top`` build
        the hottest memories into one activation memory. Returns a ``ConsolidationReport``."""
        from memos.reading import consolidate_cube

        self._writable()
        return consolidate_cube(self._mos, self.name, llm=llm, related=related, min_group=min_group,
                                max_group=max_group, expire=expire, dedup=dedup, promote_top=promote_top,
                                promote_min_heat=promote_min_heat, engine=engine)

    def archive(self, ids: list[str]) -> list[Memory]:
        self._writable()
        return self._k.set_state(self.name, ids, State.archived, op="delete", principal=self._p)

    # --------------------------------------------------------------------------------- reads
    def get(self, memory_id: str, version: int | None = None) -> Memory:
        return self._k.get(self.name, memory_id, version=version, at_commit=self.at_commit, principal=self._p)

    def history(self, memory_id: str) -> list[Memory]:
        return self._k.history(self.name, memory_id, at_commit=self.at_commit, principal=self._p)

    def search(self, query: str, top_k: int = 10, filters: dict[str, Any] | None = None,
               time_range: tuple[Any, Any] | None = None, include_archived: bool = False) -> list[Hit]:
        hits = self._k.search(self.name, query, top_k=top_k, filters=filters, time_range=time_range,
                              include_archived=include_archived, at_commit=self.at_commit, principal=self._p)
        if self.at_commit is None:
            from memos.reading.access import record_hits

            record_hits(self._k, self.name, hits)  # heat for sleep-time promotion (memos.reading)
        self._mos._after_query(self.name)
        return hits

    def list(self, offset: int = 0, limit: int = 100, include_archived: bool = False) -> list[Memory]:
        return self._k.list_memories(self.name, offset=offset, limit=limit, include_archived=include_archived,
                                     at_commit=self.at_commit, principal=self._p)

    def log(self, after: int = 0, limit: int | None = None) -> list[LogEntry]:
        entries = self._k.log(self.name, after=after, limit=limit, principal=self._p)
        if self.at_commit is not None:
            entries = [e for e in entries if e.commit <= self.at_commit]
        return entries

    def stats(self) -> dict[str, Any]:
        self.info()  # access check
        return self._k.stats(self.name)


@_with_async_twins("create_cube", "list_cubes", "delete_cube", "grant", "export_cube", "import_cube", "status",
                   "generate", "migrate")
class MemOS:
    """A handle on memos. ``MemOS.open()`` runs the kernel embedded in this process."""

    def __init__(self, kernel: Kernel, principal: str | None = None, _owner: bool = True) -> None:
        self._kernel = kernel
        self.principal = principal
        self._owner = _owner

    # ----------------------------------------------------------------------------- creation
    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None, *, principal: str | None = None,
             settings: Settings | None = None, **overrides: Any) -> MemOS:
        """Open (creating if needed) an embedded home: ``$MEMOS_HOME`` or ``~/.memos`` by default."""
        settings = settings or load_settings(home, **overrides)
        return cls(open_kernel(settings), principal if principal is not None else settings.principal)

    @classmethod
    def connect(cls, url: str, *, api_key: str | None = None, **kwargs: Any) -> Any:
        """Connect to a memos REST server (``http(s)://``) or Ray cluster (``ray://``, ``auto``)."""
        if url.startswith(("http://", "https://")):
            from memos.errors import MissingExtra

            try:
                from memos.client import RemoteMemOS  # type: ignore[import-not-found]
            except ImportError as exc:
                raise MissingExtra("server", "memos.client") from exc
            return RemoteMemOS(url, api_key=api_key, **kwargs)
        if url.startswith("ray://") or url == "auto" or (":" in url and "://" not in url):
            from memos.plugins import lookup

            return lookup("runtimes", "ray")(url, **kwargs).connect()
        raise InvalidInput(f"unsupported memos URL {url!r}: use http(s)://, ray://, HOST:PORT or 'auto'",
                           field="url")

    def as_principal(self, principal: str | None) -> MemOS:
        """The same kernel, acting on behalf of another principal (the ACL is checked for it)."""
        return MemOS(self._kernel, principal, _owner=False)

    def close(self) -> None:
        if self._owner:
            tasks = self._kernel.services.pop("tasks", None)
            if tasks is not None:
                tasks.drain(timeout_s=30)
                tasks.stop()
            self._kernel.close()

    def __enter__(self) -> MemOS:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def home(self) -> str:
        return str(self._kernel.settings.home)

    # -------------------------------------------------------------------------------- cubes
    def create_cube(self, name: str, owner: str | None = None, description: str = "",
                    policy: dict[str, Any] | None = None) -> Cube:
        self._kernel.create_cube(name, owner=owner, description=description, policy=policy,
                                 principal=self.principal)
        return Cube(self, name)

    def cube(self, name: str) -> Cube:
        """Open an existing cube (raises CubeNotFound / AccessDenied)."""
        self._kernel.get_cube(name, principal=self.principal)
        return Cube(self, name)

    def list_cubes(self) -> list[MemCube]:
        return self._kernel.list_cubes(principal=self.principal)

    def delete_cube(self, name: str) -> bool:
        return self._kernel.delete_cube(name, principal=self.principal)

    def grant(self, cube: str, principal: str, access: str = "read") -> MemCube:
        return self._kernel.grant(cube, principal, access, principal=self.principal)

    def export_cube(self, cube: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        from memos.bundle import export_cube

        return export_cube(self._kernel, cube, str(path), principal=self.principal)

    def import_cube(self, path: str | os.PathLike[str], name: str | None = None) -> Cube:
        from memos.bundle import import_cube

        cube = import_cube(self._kernel, str(path), name=name, principal=self.principal)
        return Cube(self, cube.name)

    def checkpoint(self) -> None:
        self._kernel.checkpoint()

    # --------------------------------------------------------------------------- engines
    def engine(self, name: str | None = None) -> Any:
        """The model engine ``name`` (default from settings), loaded once per process."""
        from memos.engines.registry import get_engine
        from memos.plugins import registry

        settings = self._kernel.settings
        name = name or settings.engine
        if name not in registry("engines"):
            raise InvalidInput(f"unknown engine {name!r} (installed: {', '.join(sorted(registry('engines')))})",
                               field="engine")
        return get_engine(name, settings.models_dir)

    def _activation(self) -> Any:
        from memos.activation.store import ActivationMemory

        services = self._kernel.services
        if "activation" not in services:
            services["activation"] = ActivationMemory(self._kernel)
        return services["activation"]

    def _parametric(self) -> Any:
        from memos.parametric.store import ParametricMemory

        services = self._kernel.services
        if "parametric" not in services:
            services["parametric"] = ParametricMemory(self._kernel)
        return services["parametric"]

    def generate(self, cube: str, prompt: str, *, kv: list[str] | None = None, adapters: list[str] | None = None,
                 retrieve: bool = True, top_k: int = 5, max_tokens: int = 64, engine: str | None = None) -> Any:
        """Answer ``prompt`` with the cube's memories: KV prefix + retrieved plaintext + prompt.

        Returns a ``Generation`` (``text``, ``ttft_ms``, ``used``)."""
        from memos.generation import generate

        self._kernel.get_cube(cube, principal=self.principal)  # before loading a model
        return generate(self._kernel, self._activation(), self.engine(engine), cube, prompt, kv=kv or (),
                        adapters=adapters or (), retrieve=retrieve, top_k=top_k, max_tokens=max_tokens,
                        principal=self.principal, parametric=self._parametric() if adapters else None)

    # ------------------------------------------------------------------------- background
    def tasks(self) -> Any:
        """This kernel's background task queue (started on first use, one worker thread)."""
        from memos.tasks import InProcessQueue

        services = self._kernel.services
        if "tasks" not in services:
            q = InProcessQueue()
            self.register_task_handlers(q)
            q.start(workers=1)
            services["tasks"] = q
        return services["tasks"]

    def register_task_handlers(self, q: Any) -> None:
        """The task kinds this kernel runs: ``migrate``, ``train_adapter``, ``sweep_expired``, ``prefetch``,
        ``consolidate``."""
        def as_(p: dict[str, Any]) -> MemOS:
            return MemOS(self._kernel, p.get("principal"), _owner=False)

        q.register("migrate", lambda p: as_(p).migrate(p["cube"], p["id"], p["to"], engine=p.get("engine"),
                                                       format=p.get("format", "lora")))
        q.register("train_adapter", lambda p: as_(p).cube(p["cube"]).train_adapter(
            p.get("memory_ids", "all"), format=p.get("format", "lora"), steps=p.get("steps"),
            engine=p.get("engine")))
        q.register("sweep_expired", lambda p: as_(p).cube(p["cube"]).sweep_expired())
        q.register("prefetch", lambda p: as_(p)._prefetch(p["cube"]))
        q.register("consolidate", lambda p: _consolidate_task(as_(p), p))

    def submit(self, kind: str, payload: dict[str, Any], key: str | None = None) -> str:
        """Queue background work (``migrate``, ``sweep_expired``, ``prefetch`` ...); returns the task id.
        The same ``key`` twice runs once. The principal needs write access to the payload's cube: the
        task runs later, so access is checked now."""
        check_task_access(self._kernel, self.principal, payload)
        return self.tasks().submit(kind, {**payload, "principal": self.principal}, key=key)

    def _after_query(self, cube: str) -> None:
        """Prefetch on query: if this process already runs a model engine and the cube has activation
        memories, load them in the background so the generation that usually follows finds them resident."""
        if "activation" in self._kernel.services and self._loaded_engine() is not None:
            self.submit("prefetch", {"cube": cube}, key=f"prefetch:{cube}:{self._kernel.get_cube(cube).head}")

    def _loaded_engine(self) -> Any:
        from memos.engines.registry import loaded_engine

        settings = self._kernel.settings
        return loaded_engine(settings.engine, settings.models_dir)

    def _prefetch(self, cube: str) -> int:
        engine = self._loaded_engine()
        return 0 if engine is None else self._activation().prefetch(cube, engine)

    def migrate(self, cube: str, memory_id: str | list[str], to: str, *, engine: str | None = None,
                format: str = "lora") -> Memory:
        """Move a memory to another kind: ``plaintext`` <-> ``activation`` | ``parametric``. A list of ids
        with ``to="activation"`` builds one KV prefix over all of them (a new memory deriving from each).
        To ``parametric``: a new version carrying weights trained on the memory's text (``format``:
        ``lora``, ``tokmem`` or ``pkm``); back to ``plaintext`` always works (text and sources kept)."""
        self._kernel.get_cube(cube, principal=self.principal)  # before loading a model
        if isinstance(memory_id, list):
            if to != "activation":
                raise InvalidInput("a list of memories can only be migrated to activation", field="to")
            return self._activation().build_from(cube, memory_id, self.engine(engine), principal=self.principal)
        current = self._kernel.get(cube, memory_id, principal=self.principal)
        if to == "parametric" or (to == "plaintext" and current.kind == "parametric"):
            eng = self.engine(engine) if to == "parametric" else None
            return self._parametric().migrate(cube, memory_id, to, eng, format=format, principal=self.principal)
        eng = self.engine(engine) if to == "activation" else None
        return self._activation().migrate(cube, memory_id, to, eng, principal=self.principal)

    def status(self) -> dict[str, Any]:
        k = self._kernel
        cubes = self.list_cubes()
        return {
            "mode": "embedded",
            "home": self.home,
            "storage": k.settings.storage.backend,
            "embedder": k.settings.embedder.name,
            "principal": self.principal,
            "cubes": len(cubes),
            "workers": [{"id": "embedded", "node": os.uname().nodename, "pid": os.getpid(),
                         "cubes": [c.name for c in cubes], "resident": self._activation().stats()}],
            "queue": self._kernel.services["tasks"].stats() if "tasks" in self._kernel.services else
            {"depth": 0, "done": 0, "failed": 0, "dead_letters": 0},
        }
