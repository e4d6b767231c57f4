"""Which memories searches keep returning: the "hot" set consolidation promotes to activation memory.

Each search through the SDK credits its hits with their reciprocal rank (the top hit 1, the second
1/2 ...). Counts live in the kernel's services (this process, since it started); they decay with a
half-life so yesterday's topics cool down.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any

HALF_LIFE_S = 6 * 3600.0


class AccessCounter:
    def __init__(self, half_life_s: float = HALF_LIFE_S) -> None:
        self.half_life_s = half_life_s
        self._heat: dict[str, dict[str, tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def _decayed(self, value: float, at: float, now: float) -> float:
        return value * math.exp(-math.log(2) * (now - at) / self.half_life_s)

    def record(self, cube: str, ids: Sequence[str]) -> None:
        now = time.time()
        with self._lock:
            per = self._heat.setdefault(cube, {})
            for rank, mid in enumerate(ids, 1):
                value, at = per.get(mid, (0.0, now))
                per[mid] = (self._decayed(value, at, now) + 1.0 / rank, now)

    def heat(self, cube: str) -> dict[str, float]:
        now = time.time()
        with self._lock:
            return {mid: self._decayed(v, at, now) for mid, (v, at) in self._heat.get(cube, {}).items()}


def access_counter(kernel: Any) -> AccessCounter:
    services = kernel.services
    counter = services.get("access")
    if counter is None:
        counter = services.setdefault("access", AccessCounter())
    return counter


def record_hits(kernel: Any, cube: str, hits: Sequence[Any]) -> None:
    if hits:
        access_counter(kernel).record(cube, [h.memory.id for h in hits])
