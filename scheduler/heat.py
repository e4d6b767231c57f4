"""``heat``: a MemoryOS-style residency policy (Kang et al., 2025, "Memory OS of AI Agent").

MemoryOS ranks memory segments for promotion/eviction by a heat score combining how often a segment was
visited, how much interaction it carried and how recently it was touched:

    heat = alpha * visits + beta * interaction_length + gamma * exp(-age / tau)

The coldest resident item is evicted first. ``interaction_length`` is what a caller reports through
:meth:`HeatPolicy.record` (e.g. prompt tokens served with the item); by default it is the item's size in
KiB so large, expensive-to-reload caches are kept longer. Registered as the ``heat`` residency policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import ClassVar


class HeatPolicy:
    name: ClassVar[str] = "heat"
    kind: ClassVar[str] = "residency"

    def __init__(self, alpha: float = 1.0, beta: float = 0.001, gamma: float = 1.0, tau_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.alpha, self.beta, self.gamma, self.tau_s = alpha, beta, gamma, tau_s
        self._clock = clock
        self._visits: dict[Hashable, int] = {}
        self._length: dict[Hashable, float] = {}
        self._last: dict[Hashable, float] = {}

    def heat(self, key: Hashable) -> float:
        age = self._clock() - self._last.get(key, self._clock())
        return (self.alpha * self._visits.get(key, 0) + self.beta * self._length.get(key, 0.0)
                + self.gamma * math.exp(-age / self.tau_s))

    def touch(self, key: Hashable) -> None:
        self._visits[key] = self._visits.get(key, 0) + 1
        self._last[key] = self._clock()

    def record(self, key: Hashable, interaction_length: float) -> None:
        self._length[key] = self._length.get(key, 0.0) + interaction_length

    def insert(self, key: Hashable, nbytes: int) -> None:
        self._visits.setdefault(key, 0)
        self._length.setdefault(key, nbytes / 1024.0)
        self._last[key] = self._clock()

    def remove(self, key: Hashable) -> None:
        self._visits.pop(key, None)
        self._length.pop(key, None)
        self._last.pop(key, None)

    def victim(self, candidates: list[Hashable]) -> Hashable:
        return min(candidates, key=self.heat)
