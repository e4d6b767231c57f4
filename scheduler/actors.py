"""Ray actors of a memos cluster: kernel workers and the registry.

* ``KernelWorker``: one kernel (the same :class:`memos.kernel.Kernel` as embedded mode) on the shared
  Redis backend, with its own index folder and the cluster's shared blob folder. It owns a shard of
  cubes: their FAISS/BM25 indexes and resident payloads. Restarted by Ray when its process dies
  (``max_restarts=-1``); a restarted worker rebuilds indexes from the Redis log on first use, and calls
  in flight are retried (``max_task_retries``) under the same request id, so a write the dead worker had
  already committed is returned, not written twice.
* ``Registry``: cluster configuration, the worker list and cube placement (``<prefix>placement`` hash in
  Redis: cube -> worker id). New cubes are placed by the configured placement policy.

The classes are plain Python; :func:`remote_classes` wraps them with ``ray.remote`` on first use so
importing this module does not import ray.
"""

from __future__ import annotations

import json
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any

from memos.errors import BackendError, CubeNotFound, InvalidInput

NAMESPACE = "memos"
REGISTRY = "memos-registry"


def worker_actor_name(worker_id: str) -> str:
    return f"memos-worker-{worker_id}"


def storage_url(redis_url: str, prefix: str) -> str:
    sep = "&" if "?" in redis_url else "?"
    return f"{redis_url}{sep}prefix={prefix}"


class KernelWorker:
    def __init__(self, worker_id: str, cluster_home: str, redis_url: str, prefix: str) -> None:
        from memos.config import load_settings
        from memos.kernel import open_kernel
        from memos.sdk import MemOS
        from memos.telemetry import configure_from_env

        # spans of this worker's kernel operations go where `memos up`'s OTEL_* variables say
        self.telemetry = configure_from_env(service="memos-worker", instance=worker_id)
        home = Path(cluster_home)
        settings = load_settings(home / "workers" / worker_id,
                                 storage={"backend": "redis", "url": storage_url(redis_url, prefix)},
                                 blobs_dir=str(home / "blobs"), models_dir=str(home / "models"))
        self.id = worker_id
        self.kernel = open_kernel(settings)
        self.mos = MemOS(self.kernel)
        self.kernel.embedder.embed_query("warm-up")  # load the embedding model before the first request
        self._start_task_consumer(redis_url, prefix)

    def _start_task_consumer(self, redis_url: str, prefix: str) -> None:
        """Consume the cluster's Redis Streams task queue in a background thread."""
        import threading

        import redis

        from scheduler.queue import RedisStreamQueue

        self.queue = RedisStreamQueue(redis.Redis.from_url(redis_url), prefix=prefix, consumer=self.id)
        self.mos.register_task_handlers(self.queue)

        def loop() -> None:
            while True:
                self.queue.run_once(1.0)

        threading.Thread(target=loop, daemon=True, name="memos-tasks").start()

    def ping(self) -> int:
        return os.getpid()

    def kernel_call(self, request_id: str | None, method: str, args: tuple, kwargs: dict) -> Any:
        from memos.kernel.kernel import request_scope

        if method.startswith("_"):
            raise InvalidInput(f"{method!r} is not a kernel operation", field="method")
        with request_scope(request_id):
            out = getattr(self.kernel, method)(*args, **kwargs)
        if method == "search" and kwargs.get("at_commit") is None:
            self.mos._after_query(args[0])  # prefetch the cube's KV caches on this worker
        return out

    def sdk_call(self, request_id: str | None, principal: str | None, method: str, args: tuple,
                 kwargs: dict) -> Any:
        """MemOS-level calls that need this worker's engines (``generate``, ``migrate``, ``cube.*``)."""
        from memos.kernel.kernel import request_scope
        from memos.sdk import Cube

        if method.removeprefix("cube.").startswith("_"):
            raise InvalidInput(f"{method!r} is not an SDK operation", field="method")
        mos = self.mos.as_principal(principal)
        with request_scope(request_id):
            if method.startswith("cube."):
                return getattr(Cube(mos, args[0]), method[5:])(*args[1:], **kwargs)
            return getattr(mos, method)(*args, **kwargs)

    def warm(self, cube: str) -> int:
        """Load (or catch up) the cube's index here; returns the head it reflects."""
        state = self.kernel._state(cube, refresh=True)
        with state.lock:
            return self.kernel._indexer(state).head

    def release(self, cube: str) -> bool:
        """Forget the cube's derived state (after it moved away): index saved, then dropped."""
        with self.kernel._registry_lock:
            state = self.kernel._cubes.pop(cube, None)
        if state is None:
            return False
        with state.lock:
            if state.indexer is not None:
                state.indexer.save()
        return True

    def info(self) -> dict[str, Any]:
        import ray

        act = self.kernel.services.get("activation")
        return {"id": self.id, "node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                "pid": os.getpid(), "cubes": sorted(self.kernel._cubes),
                "resident": act.stats() if act is not None else {}, "engines": ["local"],
                "tasks": {"done": self.queue.done, "failed": self.queue.failed}, "telemetry": self.telemetry}

    def shutdown(self) -> None:
        self.kernel.close()


#: Redis compare-and-set on a hash field: set ARGV[2] only while the field still holds ARGV[1].
_CAS = ("if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then "
        "redis.call('hset', KEYS[1], ARGV[1], ARGV[3]) end return 1")


class Registry:
    def __init__(self, config: dict[str, Any]) -> None:
        import redis

        self._config = config
        self.r = redis.Redis.from_url(config["redis_url"])
        self.key = f"{config['prefix']}placement"
        self.workers_key = f"{config['prefix']}workers"

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def add_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        self.r.hset(self.workers_key, worker_id, json.dumps(info))

    def remove_worker(self, worker_id: str) -> None:
        self.r.hdel(self.workers_key, worker_id)

    def workers(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(self.workers_key).items()}

    def placements(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.key).items()}

    def owner(self, cube: str, hints: dict[str, Any] | None = None) -> str:
        """The worker owning ``cube``, placing it with the policy if it has none yet, or if its
        owner has left the cluster (``memos down`` then ``up`` gives workers new ids: a placement
        naming a worker that is no longer registered is stale and the cube is placed again)."""
        from memos.plugins import lookup
        from scheduler.placement import WorkerInfo

        current = self.r.hget(self.key, cube)
        workers = self.workers()
        if current is not None and current.decode() in workers:
            return current.decode()
        if not workers:
            raise BackendError("ray", "the cluster has no kernel workers")
        counts: dict[str, int] = {}
        for w in self.placements().values():
            counts[w] = counts.get(w, 0) + 1
        infos = [WorkerInfo(wid, node=i.get("node", ""), cubes=counts.get(wid, 0),
                            engines=tuple(i.get("engines", ()))) for wid, i in sorted(workers.items())]
        chosen = lookup("policies", self._config.get("placement", "least-loaded"))().choose(cube, infos, hints or {})
        if current is None:
            self.r.hsetnx(self.key, cube, chosen)
        else:  # replace the stale owner only if nobody replaced it meanwhile
            self.r.eval(_CAS, 1, self.key, cube, current, chosen)
        return self.r.hget(self.key, cube).decode()

    def set_owner(self, cube: str, worker_id: str) -> None:
        if worker_id not in self.workers():
            raise InvalidInput(f"no worker {worker_id!r}", field="to")
        self.r.hset(self.key, cube, worker_id)

    def forget(self, cube: str) -> None:
        if not self.r.hdel(self.key, cube):
            raise CubeNotFound(cube)


@lru_cache(maxsize=1)
def remote_classes() -> tuple[Any, Any]:
    import ray

    worker = ray.remote(max_restarts=-1, max_task_retries=-1, max_concurrency=8, num_cpus=0)(KernelWorker)
    registry = ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)(Registry)
    return worker, registry
