"""Keeps one cube's search index in step with its operation log.

The index is derived state. It is loaded lazily (from a saved dense index reconciled with storage, or
rebuilt from stored vectors), kept current by :meth:`CubeIndexer.apply` after each local commit, caught up
from the log when another writer advanced the head, compacted when retired slots pile up, and saved on
close. Time-travel searches build a throw-away index of the cube as of a commit.
"""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memos.models import Memory
from memos.retrieval.cube_index import CubeIndex

if TYPE_CHECKING:
    from memos.kernel.kernel import Kernel

_SNAPSHOTS: OrderedDict[tuple[int, str, int], CubeIndex] = OrderedDict()
_SNAP_LOCK = threading.Lock()
_SNAP_MAX = 4


class CubeIndexer:
    def __init__(self, kernel: Kernel, cube: str) -> None:
        self.kernel = kernel
        self.cube = cube
        self.dir = kernel.index_dir / cube
        self.index: CubeIndex = None  # type: ignore[assignment]
        self.head = -1
        self.saved_head = -1

    @property
    def dim(self) -> int:
        return int(self.kernel.embedder.dim)

    def _load(self, head: int) -> None:
        rows = self.kernel.backend.scan(self.cube, with_vectors=True)
        restored = CubeIndex.restore(str(self.dir), self.kernel.index_factory, self.dim, rows)
        if restored is None:
            restored = new_index(self.kernel, self.dim)
            if rows:
                restored.upsert([m for m, _ in rows], [v for _, v in rows])
        self.index = restored
        self.head = head

    def sync(self, head: int) -> None:
        """Make the index reflect commit ``head`` (load, or catch up from the log)."""
        if self.index is None:
            self._load(head)
            return
        if self.head >= head:
            return
        entries = self.kernel.backend.read_log(self.cube, after=self.head, upto=head)
        touched = sorted({item.id for e in entries for item in e.items})
        if touched:
            rows = self.kernel.backend.scan(self.cube, ids=tuple(touched), with_vectors=True)
            present = {m.id for m, _ in rows}
            for mid in touched:
                if mid not in present:
                    self.index.remove(mid)
            if rows:
                self.index.upsert([m for m, _ in rows], [v for _, v in rows])
        self.head = head
        self._maybe_compact()

    def apply(self, versions: Sequence[Memory], vectors: dict[tuple[str, int], bytes],
              purge: Sequence[str], head: int) -> None:
        """Reflect a commit this process just wrote."""
        if self.index is None:
            return  # not loaded yet: the first search loads it from storage, commit included
        if self.head != head - 1:
            self.sync(head)
            return
        for mid in purge:
            self.index.remove(mid)
        if versions:
            self.index.upsert(list(versions), [vectors.get((m.id, m.version)) for m in versions])
        self.head = head
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self.index.needs_compaction():
            self._load(self.head)

    def live_count(self) -> int:
        ix = self.index
        n = ix.slots
        return int((ix.live[:n] & (ix.state[:n] == 0)).sum())

    def oldest_live(self, count: int) -> list[str]:
        ix = self.index
        n = ix.slots
        cand = np.flatnonzero(ix.live[:n] & (ix.state[:n] == 0))
        order = cand[np.argsort(ix.updated_ts[cand], kind="stable")][:count]
        return [ix.ids[s] for s in order.tolist()]

    def save(self) -> None:
        if self.index is None or self.saved_head == self.head or len(self.index) == 0:
            return
        self.index.save(str(self.dir), self.head)
        self.saved_head = self.head

    def discard(self) -> None:
        self.index = None  # type: ignore[assignment]
        shutil.rmtree(self.dir, ignore_errors=True)

    def stats(self) -> dict[str, Any]:
        ix = self.index
        return {"memories": len(ix), "live": self.live_count(), "slots": ix.slots, "dead_slots": ix.dead,
                "part_vectors": ix.part_rows,
                "dense": getattr(ix.dense, "kind", type(ix.dense).__name__), "index_head": self.head}

    @staticmethod
    def snapshot(kernel: Kernel, cube: str, at_commit: int) -> CubeIndex:
        """The cube's index as of ``at_commit`` (small LRU of recent snapshots)."""
        key = (id(kernel), cube, at_commit)
        with _SNAP_LOCK:
            hit = _SNAPSHOTS.get(key)
            if hit is not None:
                _SNAPSHOTS.move_to_end(key)
                return hit
        dim = int(kernel.embedder.dim)
        rows = kernel.backend.scan(cube, at_commit=at_commit, with_vectors=True)
        idx = new_index(kernel, dim)
        if rows:
            idx.upsert([m for m, _ in rows], [v for _, v in rows])
        with _SNAP_LOCK:
            _SNAPSHOTS[key] = idx
            while len(_SNAPSHOTS) > _SNAP_MAX:
                _SNAPSHOTS.popitem(last=False)
        return idx


def new_index(kernel: Kernel, dim: int) -> CubeIndex:
    """An empty cube index: main vectors and part vectors each in an index of the configured plugin."""
    return CubeIndex(dim, kernel.index_factory.create(dim), kernel.index_factory.create(dim))
