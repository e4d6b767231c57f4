"""Assemble a :class:`Kernel` from settings: backend, embedder, vector index and blob store plugins."""

from __future__ import annotations

from typing import Any

from memos import plugins
from memos.config import Settings
from memos.errors import InvalidInput
from memos.embed import embedder_identity
from memos.kernel.home import HomeLock, check_embedder
from memos.kernel.kernel import Kernel

_EMBEDDERS: dict[tuple[str, str], Any] = {}


def shared_embedder(name: str, options: dict[str, Any]) -> Any:
    """One embedder instance per (name, options) in a process: models load once, not per handle."""
    key = (name, repr(sorted(options.items())))
    if key not in _EMBEDDERS:
        cls = plugins.lookup("embedders", name)
        try:
            _EMBEDDERS[key] = cls(**options)
        except TypeError as exc:
            raise InvalidInput(f"embedder {name!r}: {exc}", field="embedder.options") from exc
    return _EMBEDDERS[key]


def make_backend(settings: Settings) -> Any:
    cls = plugins.lookup("backends", settings.storage.backend)
    if settings.storage.backend == "sqlite":
        return cls(settings.home / "memos.db", synchronous=settings.storage.synchronous)
    if not settings.storage.url:
        raise InvalidInput(f"storage backend {settings.storage.backend!r} needs storage.url", field="storage.url")
    return cls(settings.storage.url)


def open_kernel(settings: Settings) -> Kernel:
    settings.home.mkdir(parents=True, exist_ok=True)
    backend_cls = plugins.lookup("backends", settings.storage.backend)
    lock = None
    if not getattr(backend_cls, "shared", False):
        lock = HomeLock(settings.home)
        lock.acquire()
    try:
        backend = make_backend(settings)
        embedder = shared_embedder(settings.embedder.name, settings.embedder.options)
        if lock is not None:  # an embedded home owns its vectors: they must all come from one embedder
            check_embedder(settings.home, embedder_identity(settings.embedder.name, embedder))
        index_factory = plugins.lookup("vector_indexes", settings.index.name)(
            hnsw_threshold=settings.index.hnsw_threshold)
        blobs = plugins.lookup("blob_stores", "file")(settings.blobs_dir or settings.home / "blobs")
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return Kernel(settings, backend, embedder, index_factory, blobs,
                  on_close=lock.release if lock is not None else None)
