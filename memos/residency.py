"""The residency pool: which activation/parametric payloads are resident in which tier, under byte budgets.

Modelled on vLLM's block pool: one pool owns every resident item, its bytes and its reference count;
callers get values back, never the pool's bookkeeping. Eviction is a policy object (``lru`` default,
``lfu``; the scheduler adds ``heat``), registered through ``memos_register_policies``. Pinned items (in
use by a running generation) are never evicted. Running out of room is not an error: ``put`` returns
False and the caller uses the value without keeping it resident; the next ``get`` is then a miss and the
payload is re-read from the disk tier (the blob store), which always holds every payload.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from memos.errors import InvalidInput

TIERS = ("device", "host")


class EvictionPolicy(Protocol):
    name: str

    def touch(self, key: Hashable) -> None: ...

    def insert(self, key: Hashable, nbytes: int) -> None: ...

    def remove(self, key: Hashable) -> None: ...

    def victim(self, candidates: list[Hashable]) -> Hashable:
        """Pick the item to evict among ``candidates`` (never empty)."""


class LRUPolicy:
    """Evict the least recently used item."""

    name: ClassVar[str] = "lru"
    kind: ClassVar[str] = "residency"

    def __init__(self) -> None:
        self._order: OrderedDict[Hashable, None] = OrderedDict()

    def touch(self, key: Hashable) -> None:
        self._order.move_to_end(key)

    def insert(self, key: Hashable, nbytes: int) -> None:
        self._order[key] = None

    def remove(self, key: Hashable) -> None:
        self._order.pop(key, None)

    def victim(self, candidates: list[Hashable]) -> Hashable:
        allowed = set(candidates)
        return next(k for k in self._order if k in allowed)


class LFUPolicy:
    """Evict the least frequently used item (ties: least recently used)."""

    name: ClassVar[str] = "lfu"
    kind: ClassVar[str] = "residency"

    def __init__(self) -> None:
        self._freq: dict[Hashable, int] = {}
        self._last: dict[Hashable, float] = {}

    def touch(self, key: Hashable) -> None:
        self._freq[key] = self._freq.get(key, 0) + 1
        self._last[key] = time.monotonic()

    def insert(self, key: Hashable, nbytes: int) -> None:
        self._freq.setdefault(key, 0)
        self.touch(key)

    def remove(self, key: Hashable) -> None:
        self._freq.pop(key, None)
        self._last.pop(key, None)

    def victim(self, candidates: list[Hashable]) -> Hashable:
        return min(candidates, key=lambda k: (self._freq.get(k, 0), self._last.get(k, 0.0)))


BUILTIN_POLICIES: tuple[type, ...] = (LRUPolicy, LFUPolicy)


@dataclass
class _Item:
    value: Any
    nbytes: int
    tier: str
    pins: int = 0


class ResidencyPool:
    """Resident payloads per tier with byte budgets, hit/miss/eviction counters."""

    def __init__(self, budgets: dict[str, int], policy: EvictionPolicy | None = None) -> None:
        for tier, budget in budgets.items():
            if tier not in TIERS:
                raise InvalidInput(f"unknown tier {tier!r}; tiers are {', '.join(TIERS)}", field="tier")
            if budget < 0:
                raise InvalidInput(f"budget for {tier} must be >= 0", field="budget")
        self.budgets = dict(budgets)
        self.policy = policy or LRUPolicy()
        self._items: dict[Hashable, _Item] = {}
        self._used = {t: 0 for t in budgets}
        self._lock = threading.RLock()
        self.hits = self.misses = self.evictions = self.rejected = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self.hits += 1
            self.policy.touch(key)
            return item.value

    def put(self, key: Hashable, value: Any, nbytes: int, tier: str = "host") -> bool:
        """Make ``value`` resident in ``tier``, evicting unpinned items as needed; False if it cannot fit."""
        if tier not in self.budgets:
            raise InvalidInput(f"tier {tier!r} has no budget in this pool", field="tier")
        with self._lock:
            if key in self._items:
                self.drop(key)
            budget = self.budgets[tier]
            if nbytes > budget:
                self.rejected += 1
                return False
            while self._used[tier] + nbytes > budget:
                candidates = [k for k, it in self._items.items() if it.tier == tier and it.pins == 0]
                if not candidates:
                    self.rejected += 1
                    return False
                self.drop(self.policy.victim(candidates))
                self.evictions += 1
            self._items[key] = _Item(value, nbytes, tier)
            self._used[tier] += nbytes
            self.policy.insert(key, nbytes)
            return True

    def drop(self, key: Hashable) -> bool:
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return False
            self._used[item.tier] -= item.nbytes
            self.policy.remove(key)
            return True

    def pin(self, key: Hashable) -> None:
        with self._lock:
            if key in self._items:
                self._items[key].pins += 1

    def unpin(self, key: Hashable) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and item.pins > 0:
                item.pins -= 1

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def stats(self) -> dict[str, Any]:
        with self._lock:
            tiers = {t: {"budget_bytes": self.budgets[t], "used_bytes": self._used[t],
                         "items": sum(1 for it in self._items.values() if it.tier == t)} for t in self.budgets}
            assert all(v["used_bytes"] <= v["budget_bytes"] for v in tiers.values())
            return {"policy": self.policy.name, "tiers": tiers, "hits": self.hits, "misses": self.misses,
                    "evictions": self.evictions, "rejected": self.rejected}
