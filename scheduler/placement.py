"""Placement policies: which kernel worker owns a cube.

A policy sees the cube name, its scheduler hints (``policy.hints`` of the cube) and the live workers,
and returns a worker id. Policies are plugins (``memos_register_policies``) with ``kind = "placement"``.

* ``hash``: rendezvous (highest-random-weight) hashing: stable, and when a worker joins or leaves only
  the cubes that hash to it move.
* ``least-loaded``: the worker owning the fewest cubes (ties by id), for even spread.
* ``affinity``: cubes with activation/parametric memories (hint ``engine``) go to workers that run that
  model engine, so KV caches and adapters stay next to the model; others fall back to least-loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from memos.errors import InvalidInput


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    node: str = ""
    pid: int = 0
    cubes: int = 0
    engines: tuple[str, ...] = ()
    resident_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class PlacementPolicy(Protocol):
    name: str
    kind: str

    def choose(self, cube: str, workers: Sequence[WorkerInfo], hints: dict[str, Any]) -> str: ...


def _need(workers: Sequence[WorkerInfo]) -> None:
    if not workers:
        raise InvalidInput("no kernel workers are running", field="workers")


class HashPlacement:
    name: ClassVar[str] = "hash"
    kind: ClassVar[str] = "placement"

    def choose(self, cube: str, workers: Sequence[WorkerInfo], hints: dict[str, Any]) -> str:
        _need(workers)

        def weight(w: WorkerInfo) -> int:
            return int.from_bytes(hashlib.blake2b(f"{cube}\x00{w.id}".encode(), digest_size=8).digest(), "big")

        return max(workers, key=weight).id


class LeastLoadedPlacement:
    name: ClassVar[str] = "least-loaded"
    kind: ClassVar[str] = "placement"

    def choose(self, cube: str, workers: Sequence[WorkerInfo], hints: dict[str, Any]) -> str:
        _need(workers)
        return min(workers, key=lambda w: (w.cubes, w.resident_bytes, w.id)).id


class AffinityPlacement:
    name: ClassVar[str] = "affinity"
    kind: ClassVar[str] = "placement"

    def choose(self, cube: str, workers: Sequence[WorkerInfo], hints: dict[str, Any]) -> str:
        _need(workers)
        engine = hints.get("engine")
        if engine:
            runs = [w for w in workers if engine in w.engines]
            if runs:
                return LeastLoadedPlacement().choose(cube, runs, hints)
        return LeastLoadedPlacement().choose(cube, workers, hints)


PLACEMENT_POLICIES: tuple[type, ...] = (HashPlacement, LeastLoadedPlacement, AffinityPlacement)
