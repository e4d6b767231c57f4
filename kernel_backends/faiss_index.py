"""FAISS dense index for one cube.

Labels are the cube index's dense slots (0..n-1, appended in order), so FAISS's own sequential ids are the
labels and no id map is needed. Small cubes use an exact ``IndexFlatIP``; past ``hnsw_threshold`` vectors
the index is rebuilt once as ``IndexHNSWFlat`` (inner product). A search restricted to a small allowed set
is answered exactly over the allowed vectors instead of asking HNSW to filter (HNSW recall collapses under
highly selective filters).

Threads: searches and vector lookups run with one OpenMP thread (adds keep the caller's setting). A
single-query search gains nothing from OpenMP threads, and on 2 cores they gave it 5-10 ms outliers
(LoCoMo cube with sentence parts: index time p95 3.9 -> 1.5 ms). OpenMP's thread count belongs to the
calling OS thread (torch shares the runtime), so the previous count is restored right after the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from memos.errors import CorruptPayload
from memos.hookspecs import hookimpl


def _faiss() -> Any:
    import faiss

    return faiss


@contextmanager
def _one_thread() -> Iterator[None]:
    """One OpenMP thread for this OS thread's FAISS calls in the block, the previous count after."""
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


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
        self._index.add(vectors)
        if not self._is_hnsw() and len(self) >= self.hnsw_threshold:
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
        with _one_thread():
            return self._vectors(labels)

    def _vectors(self, labels: Any) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(labels)

    def search(self, query: Any, k: int, allowed: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
        with _one_thread():
            return self._search(query, k, allowed)

    def _search(self, query: Any, k: int, allowed: Any | None) -> tuple[np.ndarray, np.ndarray]:
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
                scores = self._vectors(ids) @ q[0]
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
