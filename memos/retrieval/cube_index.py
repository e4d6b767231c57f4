"""The in-memory search index of one cube: dense (FAISS) + BM25 + filters, fused by score.

Every current (not purged) version of a memory occupies one *slot*. Slots are dense integers shared by the
dense index, BM25 and the filter arrays; an update retires the old slot and appends a new one. The index is
derived state: it is rebuilt from storage (texts, metadata and stored vectors) whenever it is missing or
stale, so it can never disagree with the operation log for long.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from memos.errors import InvalidInput
from memos.models import Memory, State
from memos.retrieval.bm25 import BM25Index, tokenize

_STATE_CODE = {State.activated: 0, State.generated: 0, State.archived: 1, State.merged: 2, State.expired: 1}


def _grow(arr: np.ndarray, size: int, fill: Any) -> np.ndarray:
    if size <= len(arr):
        return arr
    new = np.full(max(size, 2 * len(arr), 64), fill, dtype=arr.dtype)
    new[: len(arr)] = arr
    return new


def _ts(dt: datetime | None, default: float) -> float:
    return dt.timestamp() if dt is not None else default


def _value_keys(value: Any) -> list[str]:
    """Filter keys for a metadata value: the value itself, and each element of a list value."""
    keys = [json.dumps(value, sort_keys=True)]
    if isinstance(value, list):
        keys += [json.dumps(v, sort_keys=True) for v in value if not isinstance(v, (list, dict))]
    return keys


def check_filters(filters: object) -> dict[str, list[Any]]:
    """Validate ``{key: value | [values]}`` (equality, lists = any-of); return key -> list of values."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise InvalidInput("filters must be an object of metadata key -> value or list of values", field="filters")
    out: dict[str, list[Any]] = {}
    for key, value in filters.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"filter keys must be non-empty strings, got {key!r}", field="filters")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise InvalidInput(f"filter {key!r} has an empty list of values", field="filters")
        for v in values:
            if isinstance(v, (dict, list)) or (isinstance(v, float) and not math.isfinite(v)):
                raise InvalidInput(f"filter {key!r}: values must be scalars, got {v!r}", field="filters")
        out[key] = values
    return out


@dataclass(frozen=True, slots=True)
class SearchParams:
    top_k: int = 10
    filters: dict[str, list[Any]] | None = None
    time_range: tuple[float, float] | None = None
    include_archived: bool = False
    now: float = 0.0
    recency_half_life_days: float | None = None
    depth: int = 100
    dense_weight: float = 0.5
    fusion: str = "score"


class CubeIndex:
    def __init__(self, dim: int, dense: Any) -> None:
        self.dim = dim
        self.dense = dense
        self.bm25 = BM25Index()
        self.bm25_ctx = BM25Index()
        self.ids: list[str] = []
        self.slot_of: dict[str, int] = {}
        self._n = 0
        self.live = np.zeros(0, dtype=bool)
        self.state = np.zeros(0, dtype=np.int8)
        self.version = np.zeros(0, dtype=np.int32)
        self.event_ts = np.zeros(0, dtype=np.float64)
        self.expires_ts = np.zeros(0, dtype=np.float64)
        self.updated_ts = np.zeros(0, dtype=np.float64)
        self._meta: dict[str, dict[str, set[int]]] = {}
        self.dead = 0

    def __len__(self) -> int:
        return len(self.slot_of)

    @property
    def slots(self) -> int:
        return self._n

    # ------------------------------------------------------------------------------ maintenance
    def upsert(self, memories: Sequence[Memory], vectors: np.ndarray | None) -> None:
        """Index the given versions (each replaces the memory's previous slot, if any)."""
        if not memories:
            return
        for m in memories:
            self.remove(m.id)
        start = self._n
        self._append_slots(memories)
        vecs = np.zeros((len(memories), self.dim), dtype=np.float32) if vectors is None else vectors
        self.dense.add(np.arange(start, self._n), vecs)

    def _append_slots(self, memories: Sequence[Memory | None]) -> None:
        """Append one slot per entry; ``None`` appends a dead placeholder (restored indexes only)."""
        start = self._n
        n = start + len(memories)
        self.live = _grow(self.live, n, False)
        self.state = _grow(self.state, n, 0)
        self.version = _grow(self.version, n, 0)
        self.event_ts = _grow(self.event_ts, n, np.nan)
        self.expires_ts = _grow(self.expires_ts, n, np.inf)
        self.updated_ts = _grow(self.updated_ts, n, 0.0)
        for i, m in enumerate(memories):
            slot = start + i
            if m is None:
                self.ids.append("")
                self.live[slot] = False
                for bm in (self.bm25, self.bm25_ctx):
                    bm.add(slot, "")
                    bm.retire(slot)
                self.dead += 1
                continue
            self.ids.append(m.id)
            self.slot_of[m.id] = slot
            self.live[slot] = True
            self.state[slot] = _STATE_CODE[m.state]
            self.version[slot] = m.version
            self.event_ts[slot] = _ts(m.event_time, np.nan)
            self.expires_ts[slot] = _ts(m.expires_at, np.inf)
            self.updated_ts[slot] = m.updated_at.timestamp()
            self.bm25.add(slot, m.text)
            self.bm25_ctx.add(slot, f"{m.context}\n{m.text}" if m.context else m.text)
            for key, value in m.metadata.items():
                per_key = self._meta.setdefault(key, {})
                for vk in _value_keys(value):
                    per_key.setdefault(vk, set()).add(slot)
        self._n = n

    def remove(self, memory_id: str) -> bool:
        slot = self.slot_of.pop(memory_id, None)
        if slot is None:
            return False
        self.live[slot] = False
        self.bm25.retire(slot)
        self.bm25_ctx.retire(slot)
        self.dead += 1
        return True

    def needs_compaction(self) -> bool:
        return self._n > 1000 and self.dead > 0.3 * self._n

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.live[: self._n])

    # ---------------------------------------------------------------------------------- search
    def mask(self, p: SearchParams) -> np.ndarray:
        n = self._n
        m = self.live[:n].copy()
        if not p.include_archived:
            m &= self.state[:n] == 0
            m &= self.expires_ts[:n] > p.now
        if p.filters:
            for key, values in p.filters.items():
                per_key = self._meta.get(key, {})
                allowed = np.zeros(n, dtype=bool)
                for v in values:
                    slots = per_key.get(json.dumps(v, sort_keys=True))
                    if slots:
                        allowed[np.fromiter(slots, dtype=np.int64, count=len(slots))] = True
                m &= allowed
        if p.time_range is not None:
            lo, hi = p.time_range
            ev = self.event_ts[:n]
            with np.errstate(invalid="ignore"):
                m &= (ev >= lo) & (ev <= hi)
        return m

    def search(self, query: str, qvec: np.ndarray | None, p: SearchParams) -> list[tuple[str, float]]:
        """Return ``(memory id, fused score in [0, 1])`` best first.

        Candidates are the top ``depth`` of each retriever (dense; BM25 over bodies; BM25 over bodies with
        their context). Every candidate gets all three scores, each normalised over the candidates
        (dense: min-max, BM25: by its maximum), and the fused score is
        ``w * dense + (1 - w) * (bm25_body + bm25_context) / 2``. Score fusion beats rank fusion (RRF)
        here because it keeps how *much* better a lexical match is, which RRF throws away.
        """
        if self._n == 0:
            return []
        mask = self.mask(p)
        if not mask.any():
            return []
        depth = max(p.depth, 3 * p.top_k)
        cand: set[int] = set()
        if qvec is not None:
            all_live = self.dead == 0 and int(mask.sum()) == len(self.slot_of)
            labels, _ = self.dense.search(qvec, depth, None if all_live else mask)
            cand.update(labels.tolist())
        terms = tokenize(query)
        lexical = [bm.scores(terms, mask) for bm in (self.bm25, self.bm25_ctx)] if terms else []
        for scores in lexical:
            nz = np.flatnonzero(scores > 0)
            if len(nz) > depth:  # top-depth by partial selection: a full sort of every match costs ms at 100k
                nz = nz[np.argpartition(-scores[nz], depth - 1)[:depth]]
            cand.update(nz.tolist())
        if not cand:
            return []
        slots = np.fromiter(sorted(cand), dtype=np.int64, count=len(cand))
        w = p.dense_weight if qvec is not None else 0.0
        dense = self.dense.vectors(slots) @ np.asarray(qvec, dtype=np.float32) if qvec is not None else None
        lex = [scores[slots].astype(np.float64) for scores in lexical]
        fused = (_rrf if p.fusion == "rrf" else _score_fusion)(dense, lex, w)
        if p.recency_half_life_days:
            half = p.recency_half_life_days * 86400.0
            ref = self.event_ts[slots]
            ref = np.where(np.isnan(ref), self.updated_ts[slots], ref)
            age = np.maximum(p.now - ref, 0.0)
            fused *= 0.5 + 0.5 * np.power(0.5, age / half)
        order = np.argsort(-fused, kind="stable")[: p.top_k]
        return [(self.ids[int(slots[i])], float(fused[i])) for i in order]

    # ---------------------------------------------------------------------------- persistence
    def save(self, directory: str, head: int) -> None:
        """Write the dense index and slot table atomically (``head`` = cube head they reflect)."""
        os.makedirs(directory, exist_ok=True)
        fd, tmp_index = tempfile.mkstemp(dir=directory, suffix=".faiss.tmp")
        os.close(fd)
        self.dense.save(tmp_index)
        live = self.live[: self._n]
        table = {"head": head, "slots": self._n, "dim": self.dim,
                 "ids": self.ids, "versions": self.version[: self._n].tolist(), "live": live.tolist()}
        tmp_table = os.path.join(directory, "slots.json.tmp")
        with open(tmp_table, "w", encoding="utf-8") as fh:
            json.dump(table, fh)
        os.replace(tmp_index, os.path.join(directory, "dense.faiss"))
        os.replace(tmp_table, os.path.join(directory, "slots.json"))

    @classmethod
    def restore(cls, directory: str, factory: Any, dim: int,
                current: Iterable[tuple[Memory, bytes | np.ndarray | None]]) -> CubeIndex | None:
        """Adopt a saved dense index, reconciled with the current versions; None if nothing usable is saved.

        Saved slots whose (id, version) is still current stay live with their saved vectors (no re-add, so
        an HNSW graph is not rebuilt); other saved slots become dead placeholders; versions written after
        the save are appended with their stored vectors.
        """
        from memos.errors import CorruptPayload

        table_path = os.path.join(directory, "slots.json")
        index_path = os.path.join(directory, "dense.faiss")
        if not (os.path.exists(table_path) and os.path.exists(index_path)):
            return None
        try:
            with open(table_path, encoding="utf-8") as fh:
                table = json.load(fh)
            dense = factory.load(index_path)
        except (OSError, ValueError, CorruptPayload):
            return None
        if table.get("dim") != dim or dense.dim != dim or len(dense) != table.get("slots"):
            return None
        cur = {m.id: (m, v) for m, v in current}
        idx = cls(dim, dense)
        placed: list[Memory | None] = []
        for mid, ver, alive in zip(table["ids"], table["versions"], table["live"]):
            entry = cur.get(mid) if alive else None
            if entry is not None and entry[0].version == ver and mid not in idx.slot_of:
                placed.append(entry[0])
                idx.slot_of[mid] = -1  # reserve: a duplicate saved slot becomes a placeholder
            else:
                placed.append(None)
        idx.slot_of.clear()
        idx._append_slots(placed)
        rest = [(m, v) for mid, (m, v) in cur.items() if mid not in idx.slot_of]
        if rest:
            idx.upsert([m for m, _ in rest], np.stack([as_vector(v, dim) for _, v in rest]))
        return idx


def _score_fusion(dense: np.ndarray | None, lexical: list[np.ndarray], w: float) -> np.ndarray:
    n = len(dense) if dense is not None else len(lexical[0])
    fused = np.zeros(n, dtype=np.float64)
    if dense is not None:
        lo, hi = float(dense.min()), float(dense.max())
        fused += w * ((dense - lo) / (hi - lo) if hi > lo else np.ones_like(dense))
    for s in lexical:
        top = float(s.max())
        if top > 0:
            fused += (1.0 - w) / len(lexical) * s / top
    return fused


def _rrf(dense: np.ndarray | None, lexical: list[np.ndarray], w: float, k: int = 60) -> np.ndarray:
    """Reciprocal rank fusion over the candidates, weighted like score fusion; 0 for unranked."""
    n = len(dense) if dense is not None else len(lexical[0])
    fused = np.zeros(n, dtype=np.float64)

    def add(scores: np.ndarray, weight: float, ranked_only_positive: bool) -> None:
        order = np.argsort(-scores, kind="stable")
        if ranked_only_positive:
            order = order[scores[order] > 0]
        fused[order] += weight / (k + 1 + np.arange(len(order)))

    if dense is not None:
        add(dense, 2 * w, False)
    for s in lexical:
        add(s, 2 * (1.0 - w) / len(lexical), True)
    return fused


def as_vector(raw: bytes | np.ndarray | None, dim: int) -> np.ndarray:
    """Stored float32 bytes (or None for a memory without a vector) as a ``(dim,)`` array."""
    if raw is None:
        return np.zeros(dim, dtype=np.float32)
    if isinstance(raw, np.ndarray):
        return raw.astype(np.float32, copy=False)
    return np.frombuffer(raw, dtype=np.float32)
