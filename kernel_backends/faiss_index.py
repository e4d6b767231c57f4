"""FAISS dense index for one cube.

Labels are the cube index's dense slots (0..n-1, appended in order), so FAISS's own sequential ids are the
labels and no id map is needed. Small cubes use an exact ``IndexFlatIP``; past ``hnsw_threshold`` vectors
the index is rebuilt once as ``IndexHNSWFlat`` (inner product). A search restricted to a small allowed set
is answered exactly over the allowed vectors instead of asking HNSW to filter (HNSW recall collapses under
highly selective filters).

Threads: FAISS runs single-threaded except for bulk work (adding a batch, building HNSW). A search is too
small to gain from OpenMP, and FAISS's OpenMP workers, spinning after a parallel region, take the cores
the query embedder (torch, its own OpenMP pool) needs next: on 2 cores that turned a 12 ms search into
50-115 ms one time in twenty (LoCoMo cube with sentence parts; p95 24 ms -> 14 ms single-threaded).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from memos.errors import CorruptPayload
from memos.hookspecs import hookimpl


_threads_lock = threading.Lock()
_bulk_users = 0
_configured = False
#: Batches at least this large are added with every core.
BULK = 256


def _faiss() -> Any:
    global _configured
    import faiss

    if not _configured:
        with _threads_lock:
            if not _configured:
                faiss.omp_set_num_threads(1)
                _configured = True
    return faiss


@contextmanager
def _bulk() -> Iterator[None]:
    """Every core for FAISS while at least one bulk operation runs; one thread again after the last."""
    global _bulk_users
    faiss = _faiss()
    with _threads_lock:
        _bulk_users += 1
        faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        with _threads_lock:
            _bulk_users -= 1
            if _bulk_users == 0:
                faiss.omp_set_num_threads(1)


class FaissIndex:
    name: ClassVar[str] = "faiss"

    def __init__(self, dim: int, *, hnsw_threshold: int = 20_000, hnsw_m: int = 32,
                 ef_construction: int = 64, ef_search: int = 96, index: Any = None) -> None:
        faiss = _faiss()
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self._index = index if index is not None else faiss.IndexFlatIP(dim)
        self._configure()

    @property
    def kind(self) -> str:
        return "hnsw" if self._is_hnsw() else "flat"

    def _is_hnsw(self) -> bool:
        return isinstance(self._index, _faiss().IndexHNSWFlat)

    def _configure(self) -> None:
        if self._is_hnsw():
            self._index.hnsw.efSearch = self.ef_search

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, labels: Any, vectors: Any) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(labels) and (labels[0] != len(self) or np.any(np.diff(labels) != 1)):
            raise ValueError(f"labels must continue at {len(self)} without gaps")
        if len(vectors) >= BULK:
            with _bulk():
                self._index.add(vectors)
        else:
            self._index.add(vectors)
        if not self._is_hnsw() and len(self) >= self.hnsw_threshold:
            with _bulk():
                self._to_hnsw()

    def _to_hnsw(self) -> None:
        faiss = _faiss()
        vectors = self._index.reconstruct_n(0, self._index.ntotal)
        hnsw = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = self.ef_construction
        hnsw.add(vectors)
        self._index = hnsw
        self._configure()

    def vectors(self, labels: Any) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(labels)

    def search(self, query: Any, k: int, allowed: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if n == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)[:n]
            count = int(allowed.sum())
            if count == 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            # Exact scoring over the allowed rows when that is cheap or when filtering would starve HNSW.
            if count <= 4096 or not self._is_hnsw() and count < n // 2 or count <= 4 * k:
                ids = np.flatnonzero(allowed)
                scores = self.vectors(ids) @ q[0]
                top = np.argsort(-scores)[:k]
                return ids[top], scores[top]
            faiss = _faiss()
            bitmap = np.packbits(allowed, bitorder="little")
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
            params = (faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.ef_search, k))
                      if self._is_hnsw() else faiss.SearchParameters(sel=sel))
            scores, ids = self._index.search(q, min(k, count), params=params)
        else:
            if self._is_hnsw():
                self._index.hnsw.efSearch = max(self.ef_search, k)
            scores, ids = self._index.search(q, min(k, n))
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def save(self, path: str) -> None:
        _faiss().write_index(self._index, path)

    @classmethod
    def load(cls, path: str, **kwargs: Any) -> FaissIndex:
        faiss = _faiss()
        try:
            index = faiss.read_index(path)
        except RuntimeError as exc:
            raise CorruptPayload(path, f"unreadable FAISS index: {exc}") from exc
        return cls(index.d, index=index, **kwargs)


class FaissIndexFactory:
    """Creates and loads :class:`FaissIndex` objects; registered as the ``faiss`` vector index."""

    name: ClassVar[str] = "faiss"

    def __init__(self, **options: Any) -> None:
        self.options = options

    def create(self, dim: int, expected_size: int = 0) -> FaissIndex:
        return FaissIndex(dim, **self.options)

    def load(self, path: str) -> FaissIndex:
        return FaissIndex.load(path, **self.options)


@hookimpl
def memos_register_vector_indexes() -> list[type]:
    return [FaissIndexFactory]
