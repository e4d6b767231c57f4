"""The in-memory search index of one cube: dense (FAISS) + BM25 + filters, fused by score.

Every current (not purged) version of a memory occupies one *slot*. Slots are dense integers shared by the
dense index, BM25 and the filter arrays; an update retires the old slot and appends a new one. A memory's
part vectors (:mod:`memos.retrieval.parts`: one per sentence) live in a second dense index whose rows map
back to their slot. The index is
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
from memos.retrieval.parts import unpack

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
    dense_weight: float = 0.6
    part_weight: float = 0.75
    fusion: str = "score"


class CubeIndex:
    def __init__(self, dim: int, dense: Any, parts: Any) -> None:
        self.dim = dim
        self.dense = dense
        self.parts = parts
        self.part_owner = np.zeros(0, dtype=np.int64)
        self.part_start = np.zeros(0, dtype=np.int64)
        self.part_count = np.zeros(0, dtype=np.int32)
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
    def upsert(self, memories: Sequence[Memory], blobs: Sequence[bytes | np.ndarray | None]) -> None:
        """Index the given versions with their stored vector blobs (each replaces the memory's previous
        slot, if any)."""
        if not memories:
            return
        if len(blobs) != len(memories):
            raise ValueError("one vector blob per memory")
        for m in memories:
            self.remove(m.id)
        start = self._n
        self._append_slots(memories)
        mains, parts = zip(*(unpack(b, self.dim) for b in blobs))
        self.dense.add(np.arange(start, self._n), np.stack(mains))
        self._add_parts(np.arange(start, self._n), parts)

    @property
    def part_rows(self) -> int:
        return len(self.parts)

    def _add_parts(self, slots: np.ndarray, parts: Sequence[np.ndarray | None]) -> None:
        counts = np.array([0 if p is None else len(p) for p in parts], dtype=np.int32)
        total = int(counts.sum())
        if total == 0:
            return
        first = self.part_rows
        starts = first + np.cumsum(counts) - counts
        self.part_start[slots] = starts
        self.part_count[slots] = counts
        self.part_owner = _grow(self.part_owner, first + total, -1)
        self.part_owner[first:first + total] = np.repeat(slots, counts)
        self.parts.add(np.arange(first, first + total), np.concatenate([p for p in parts if p is not None]))

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
        self.part_start = _grow(self.part_start, n, 0)
        self.part_count = _grow(self.part_count, n, 0)
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

        Candidates are the top ``depth`` of each retriever (dense over main vectors; dense over part
        vectors; BM25 over bodies; BM25 over bodies with their context). Every candidate gets every score,
        normalised over the candidates (dense: min-max, BM25: by its maximum). The dense score is
        ``(1 - a) * main + a * best_part`` (``a`` = ``part_weight``; a memory without parts scores its main
        vector twice) and the fused score ``w * dense + (1 - w) * (bm25_body + bm25_context) / 2``.
        Score fusion beats rank fusion (RRF) here because it keeps how *much* better a lexical match is,
        which RRF throws away.
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
            if self.part_rows:
                owner = self.part_owner[: self.part_rows]
                rows, _ = self.parts.search(qvec, depth, None if all_live else mask[owner])
                cand.update(owner[rows].tolist())
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
        dense = self._dense_scores(slots, np.asarray(qvec, dtype=np.float32), p.part_weight) \
            if qvec is not None else None
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

    def _dense_scores(self, slots: np.ndarray, q: np.ndarray, part_weight: float) -> np.ndarray:
        """``(1 - a) * minmax(main) + a * minmax(best part)`` over the candidate ``slots``."""
        main = (self.dense.vectors(slots) @ q).astype(np.float64)
        best = main.copy()
        counts = self.part_count[slots].astype(np.int64)
        has = counts > 0
        if has.any() and part_weight > 0:
            c = counts[has]
            offsets = np.cumsum(c) - c
            rows = np.repeat(self.part_start[slots[has]], c) + np.arange(int(c.sum())) - np.repeat(offsets, c)
            sims = (self.parts.vectors(rows) @ q).astype(np.float64)
            best[has] = np.maximum.reduceat(sims, offsets)
        return (1.0 - part_weight) * _minmax(main) + part_weight * _minmax(best)

    # ---------------------------------------------------------------------------- persistence
    def save(self, directory: str, head: int) -> None:
        """Write the dense indexes, the part owners and the slot table (``head`` = cube head they reflect).

        Each file is replaced atomically and the table, written last, records the sizes of the others:
        :meth:`restore` refuses a set whose sizes disagree (the index is then rebuilt from storage).
        """
        os.makedirs(directory, exist_ok=True)
        tmp: dict[str, str] = {}
        for name in ("dense.faiss", "parts.faiss", "parts.npy"):
            fd, tmp[name] = tempfile.mkstemp(dir=directory, suffix=f".{name}.tmp")
            os.close(fd)
        self.dense.save(tmp["dense.faiss"])
        self.parts.save(tmp["parts.faiss"])
        with open(tmp["parts.npy"], "wb") as fh:
            np.save(fh, self.part_owner[: self.part_rows], allow_pickle=False)
        live = self.live[: self._n]
        table = {"head": head, "slots": self._n, "dim": self.dim, "part_rows": self.part_rows,
                 "ids": self.ids, "versions": self.version[: self._n].tolist(), "live": live.tolist()}
        tmp_table = os.path.join(directory, "slots.json.tmp")
        with open(tmp_table, "w", encoding="utf-8") as fh:
            json.dump(table, fh)
        for name, path in tmp.items():
            os.replace(path, os.path.join(directory, name))
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

        paths = {name: os.path.join(directory, name)
                 for name in ("slots.json", "dense.faiss", "parts.faiss", "parts.npy")}
        if not all(os.path.exists(path) for path in paths.values()):
            return None
        try:
            with open(paths["slots.json"], encoding="utf-8") as fh:
                table = json.load(fh)
            dense = factory.load(paths["dense.faiss"])
            parts = factory.load(paths["parts.faiss"])
            with open(paths["parts.npy"], "rb") as fh:
                owner = np.load(fh, allow_pickle=False)
        except (OSError, ValueError, CorruptPayload):
            return None
        slots = table.get("slots")
        if (table.get("dim") != dim or dense.dim != dim or parts.dim != dim or len(dense) != slots
                or len(parts) != table.get("part_rows") or owner.shape != (len(parts),)
                or (len(owner) and (owner.min() < 0 or owner.max() >= slots or np.any(np.diff(owner) < 0)))):
            return None
        cur = {m.id: (m, v) for m, v in current}
        idx = cls(dim, dense, parts)
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
        if len(owner):
            idx.part_owner = owner.astype(np.int64)
            first, start, count = np.unique(idx.part_owner, return_index=True, return_counts=True)
            idx.part_start[first] = start
            idx.part_count[first] = count
        rest = [(m, v) for mid, (m, v) in cur.items() if mid not in idx.slot_of]
        if rest:
            idx.upsert([m for m, _ in rest], [v for _, v in rest])
        return idx


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.ones_like(x)


def _score_fusion(dense: np.ndarray | None, lexical: list[np.ndarray], w: float) -> np.ndarray:
    """``dense``: already normalised to [0, 1] (see :meth:`CubeIndex._dense_scores`)."""
    n = len(dense) if dense is not None else len(lexical[0])
    fused = np.zeros(n, dtype=np.float64)
    if dense is not None:
        fused += w * dense
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
