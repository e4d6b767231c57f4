"""The cluster client: the same SDK (``MemOS``, ``Cube``) with calls routed to the owning kernel worker.

:class:`ClusterKernel` stands in for :class:`memos.kernel.Kernel` inside an ordinary ``MemOS`` handle:
cube-scoped operations go to the worker that owns the cube (placement cached, refreshed when a worker
says it moved or died), cluster-wide ones to any worker. Each call carries a fresh request id, so Ray's
retry of a call interrupted by a worker crash cannot write twice. Errors raised by the kernel arrive as
the same typed ``memos.errors`` exceptions as in embedded mode.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from memos.config import Settings
from memos.errors import BackendError, InvalidInput, MemosError
from memos.models import Memory
from memos.sdk import Cube, MemOS
from scheduler.actors import NAMESPACE, worker_actor_name

# Kernel methods whose first positional argument is the cube name.
_CUBE_SCOPED = frozenset({"get_cube", "delete_cube", "grant", "set_policy", "add_many", "update", "set_state",
                          "delete", "rollback", "sweep_expired", "get", "history", "list_memories", "log",
                          "search", "stats", "migrate_kind"})
_ANY_WORKER = frozenset({"list_cubes"})


def _unwrap(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, MemosError) else exc


class ClusterKernel:
    def __init__(self, registry: Any, config: dict[str, Any]) -> None:
        self._reg = registry
        self.config = config
        self.settings = Settings(home=config["cluster_home"])
        self.services: dict[str, Any] = {}
        self._owners: dict[str, str] = {}
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._backend: Any = None

    @property
    def backend(self) -> Any:
        """The cluster's shared Redis store, for records outside cubes (API keys of a REST server in front
        of the cluster). Cube data always goes through the owning worker."""
        if self._backend is None:
            from memos.plugins import lookup
            from scheduler.actors import storage_url

            self._backend = lookup("backends", "redis")(storage_url(self.config["redis_url"], self.config["prefix"]))
        return self._backend

    # ------------------------------------------------------------------------------ plumbing
    def _ray(self) -> Any:
        import ray

        return ray

    def handle(self, worker_id: str) -> Any:
        with self._lock:
            h = self._handles.get(worker_id)
        if h is None:
            try:
                h = self._ray().get_actor(worker_actor_name(worker_id), namespace=NAMESPACE)
            except ValueError as exc:  # Ray's "actor not found"
                raise BackendError("ray", f"worker {worker_id} is unavailable: {exc}") from exc
            with self._lock:
                self._handles[worker_id] = h
        return h

    def workers(self) -> dict[str, dict[str, Any]]:
        return self._ray().get(self._reg.workers.remote())

    def owner(self, cube: str, refresh: bool = False) -> str:
        with self._lock:
            wid = None if refresh else self._owners.get(cube)
        if wid is None:
            wid = self._ray().get(self._reg.owner.remote(cube))
            with self._lock:
                self._owners[cube] = wid
        return wid

    def _invoke(self, worker_id: str, fn: str, *args: Any) -> Any:
        ray = self._ray()
        try:
            return ray.get(getattr(self.handle(worker_id), fn).remote(*args))
        except ray.exceptions.RayTaskError as exc:
            raise _unwrap(exc) from None
        except ray.exceptions.RayActorError as exc:
            raise BackendError("ray", f"worker {worker_id} is unavailable: {exc}") from exc

    def call(self, worker_id: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._invoke(worker_id, "kernel_call", uuid.uuid4().hex, method, args, kwargs)

    def _routed(self, cube: str, fn: str, *args: Any) -> Any:
        """Call ``fn`` on the cube's owner. If the owner is gone (it left the cluster, or a restart gave
        workers new ids), the placement is refreshed and the call retried once on the new owner under
        the same request id, so a write that did reach the old owner is not applied twice."""
        wid = self.owner(cube)
        try:
            return self._invoke(wid, fn, *args)
        except BackendError:
            self._forget_handle(wid)
            fresh = self.owner(cube, refresh=True)
            if fresh == wid:
                raise
            return self._invoke(fresh, fn, *args)

    def sdk_call(self, cube: str, principal: str | None, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._routed(cube, "sdk_call", uuid.uuid4().hex, principal, method, args, kwargs)

    def _forget_handle(self, worker_id: str) -> None:
        with self._lock:
            self._handles.pop(worker_id, None)
            for cube in [c for c, w in self._owners.items() if w == worker_id]:
                del self._owners[cube]

    def any_worker(self) -> str:
        workers = sorted(self.workers())
        if not workers:
            raise BackendError("ray", "the cluster has no kernel workers")
        return workers[0]

    # ---------------------------------------------------------------------- kernel surface
    def __getattr__(self, name: str) -> Any:
        if name in _CUBE_SCOPED:
            def routed(cube: str, *args: Any, **kwargs: Any) -> Any:
                return self._routed(cube, "kernel_call", uuid.uuid4().hex, name, (cube, *args), kwargs)

            return routed
        if name in _ANY_WORKER:
            return lambda *a, **kw: self.call(self.any_worker(), name, *a, **kw)
        raise AttributeError(name)

    def create_cube(self, name: str, **kwargs: Any) -> Any:
        policy = kwargs.get("policy") or {}
        hints = dict(policy.get("hints", {})) if isinstance(policy, dict) else {}
        wid = self._ray().get(self._reg.owner.remote(name, hints))
        try:
            cube = self.call(wid, "create_cube", name, **kwargs)
        except MemosError:
            if not self._exists(name):
                self._ray().get(self._reg.forget.remote(name))
            raise
        with self._lock:
            self._owners[name] = wid
        return cube

    def _exists(self, name: str) -> bool:
        return any(c.name == name for c in self.call(self.any_worker(), "list_cubes"))

    def delete_cube(self, name: str, *, principal: str | None = None) -> bool:
        out = self.call(self.owner(name), "delete_cube", name, principal=principal)
        self._ray().get(self._reg.forget.remote(name))
        with self._lock:
            self._owners.pop(name, None)
        return out

    def move(self, cube: str, to: str) -> dict[str, Any]:
        """Live migration: the target loads the cube's index, placement switches, the source lets go.

        Storage is shared, so any worker serves a cube correctly at any time (writes are optimistic
        commits on the shared log); ownership only decides where indexes and payloads stay resident.
        Clients with a stale placement keep reading and writing through the old owner meanwhile.
        """
        import time

        src = self.owner(cube, refresh=True)
        if to not in self.workers():
            raise InvalidInput(f"no worker {to!r}", field="to")
        t0 = time.perf_counter()
        head = self._invoke(to, "warm", cube)
        self._ray().get(self._reg.set_owner.remote(cube, to))
        with self._lock:
            self._owners[cube] = to
        released = True
        if src != to:
            try:
                self._invoke(src, "release", cube)
            except BackendError:  # the old owner is gone: nothing of the cube is resident there
                self._forget_handle(src)
                released = False
        return {"cube": cube, "from": src, "to": to, "head": head, "released": released,
                "seconds": round(time.perf_counter() - t0, 3)}

    def checkpoint(self) -> None:
        for wid in self.workers():
            self.call(wid, "checkpoint")

    def close(self) -> None:
        """Nothing to release: workers outlive clients."""


class ClusterCube(Cube):
    def add_activation(self, text: str, engine: str | None = None, metadata: dict[str, Any] | None = None,
                       tags: list[str] | None = None) -> Memory:
        self._writable()
        return self._mos._kernel.sdk_call(self.name, self._p, "cube.add_activation", self.name, text,
                                          engine=engine, metadata=metadata, tags=tags)


class ClusterMemOS(MemOS):
    """``MemOS.connect("ray://...")``: the SDK over a memos cluster."""

    _kernel: ClusterKernel

    def as_principal(self, principal: str | None) -> ClusterMemOS:
        return ClusterMemOS(self._kernel, principal, _owner=False)

    def create_cube(self, name: str, owner: str | None = None, description: str = "",
                    policy: dict[str, Any] | None = None) -> Cube:
        self._kernel.create_cube(name, owner=owner, description=description, policy=policy,
                                 principal=self.principal)
        return ClusterCube(self, name)

    def cube(self, name: str) -> Cube:
        self._kernel.get_cube(name, principal=self.principal)
        return ClusterCube(self, name)

    def export_cube(self, cube: str, path: Any) -> dict[str, Any]:
        raise InvalidInput("export a cube from a worker's host (memos export with the cluster's home)",
                           field="cube")

    def import_cube(self, path: Any, name: str | None = None) -> Cube:
        raise InvalidInput("import bundles on a worker's host", field="path")

    def engine(self, name: str | None = None) -> Any:
        raise InvalidInput("model engines run on the cluster's workers; use generate()/migrate()", field="engine")

    def generate(self, cube: str, prompt: str, **kwargs: Any) -> Any:
        return self._kernel.sdk_call(cube, self.principal, "generate", cube, prompt, **kwargs)

    def migrate(self, cube: str, memory_id: str | list[str], to: str, *, engine: str | None = None,
                format: str = "lora") -> Memory:
        return self._kernel.sdk_call(cube, self.principal, "migrate", cube, memory_id, to, engine=engine,
                                     format=format)

    def _queue(self) -> Any:
        import redis

        from scheduler.queue import RedisStreamQueue

        if "queue" not in self._kernel.services:
            cfg = self._kernel.config
            self._kernel.services["queue"] = RedisStreamQueue(redis.Redis.from_url(cfg["redis_url"]),
                                                              prefix=cfg["prefix"], consumer="client")
        return self._kernel.services["queue"]

    def submit(self, kind: str, payload: dict[str, Any], key: str | None = None) -> str:
        """Queue background work on the cluster's Redis Streams queue (any worker runs it)."""
        from memos.sdk import check_task_access

        check_task_access(self._kernel, self.principal, payload)
        return self._queue().submit(kind, {**payload, "principal": self.principal}, key=key)

    def tasks(self) -> Any:
        return self._queue()

    def move_cube(self, cube: str, to: str) -> dict[str, Any]:
        self._kernel.get_cube(cube, principal=self.principal)
        return self._kernel.move(cube, to)

    def status(self) -> dict[str, Any]:
        k = self._kernel
        placements = k._ray().get(k._reg.placements.remote())
        workers = []
        for wid in sorted(k.workers()):
            try:
                info = k._invoke(wid, "info")
            except BackendError as exc:
                info = {"id": wid, "error": str(exc)}
            info["owns"] = sorted(c for c, w in placements.items() if w == wid)
            workers.append(info)
        return {"mode": "cluster", "address": k.config.get("address"), "redis_url": k.config.get("redis_url"),
                "principal": self.principal, "cubes": len(placements), "workers": workers,
                "queue": {"depth": self._queue().depth(), "dead_letters": len(self._queue().dead_letters())}}
