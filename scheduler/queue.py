"""``RedisStreamQueue``: the cluster's background task queue on a Redis Stream with a consumer group.

Same interface as :class:`memos.tasks.InProcessQueue`. A worker that dies mid-task leaves the entry
pending; another worker reclaims it after ``claim_idle_ms`` (XAUTOCLAIM), so a task is never lost.
Idempotency: ``SET key NX`` before ``XADD``, so resubmitting the same key returns the first task's id and
enqueues nothing. Retries re-add the task with its attempt count; exhausted tasks go to a dead-letter
stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from memos.errors import BackendError
from memos.tasks import InProcessQueue, Task, TaskQueue

__all__ = ["InProcessQueue", "RedisStreamQueue", "Task", "TaskQueue"]


class RedisStreamQueue(TaskQueue):
    def __init__(self, client: Any, *, prefix: str = "memos:", consumer: str | None = None,
                 max_attempts: int = 3, claim_idle_ms: int = 30_000, key_ttl_s: int = 86_400) -> None:
        super().__init__(max_attempts)
        self.r = client
        self.stream = f"{prefix}tasks"
        self.dead_stream = f"{prefix}tasks:dead"
        self.group = "memos-workers"
        self.keys_prefix = f"{prefix}tasks:key:"
        self.consumer = consumer or uuid.uuid4().hex[:12]
        self.claim_idle_ms = claim_idle_ms
        self.key_ttl_s = key_ttl_s
        self._guard(lambda: self._ensure_group())

    def _guard(self, fn: Callable[[], Any]) -> Any:
        import redis

        try:
            return fn()
        except redis.RedisError as exc:
            raise BackendError("redis-queue", str(exc)) from exc

    def _ensure_group(self) -> None:
        import redis

        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def submit(self, kind: str, payload: dict[str, Any], key: str | None = None) -> str:
        self._check(kind, payload)
        task = Task(kind, payload, key=key)

        def go() -> str:
            if key is not None:
                if not self.r.set(self.keys_prefix + key, task.id, nx=True, ex=self.key_ttl_s):
                    existing = self.r.get(self.keys_prefix + key)
                    return existing.decode() if isinstance(existing, bytes) else str(existing)
            self.r.xadd(self.stream, {"task": task.to_json()})
            return task.id

        return self._guard(go)

    def _fetch(self, timeout_s: float) -> list[tuple[Any, Task]]:
        claimed = self.r.xautoclaim(self.stream, self.group, self.consumer, self.claim_idle_ms, "0-0", count=10)
        entries = list(claimed[1]) if claimed else []
        if not entries:
            got = self.r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=10,
                                    block=max(1, int(timeout_s * 1000)))
            entries = [e for _, batch in (got or []) for e in batch]
        return [(eid, Task.from_json(fields[b"task"] if b"task" in fields else fields["task"]))
                for eid, fields in entries if fields]

    def run_once(self, timeout_s: float = 0.1) -> int:
        finished = 0
        for eid, task in self._guard(lambda: self._fetch(timeout_s)):
            ok = self._execute(task)
            pipe = self.r.pipeline(transaction=True)
            if ok:
                self.done += 1
                finished += 1
            elif task.attempts >= self.max_attempts:
                self.failed += 1
                finished += 1
                pipe.xadd(self.dead_stream, {"task": task.to_json()})
            else:
                pipe.xadd(self.stream, {"task": task.to_json()})  # retry with its attempt count
            pipe.xack(self.stream, self.group, eid)
            pipe.xdel(self.stream, eid)
            self._guard(pipe.execute)
        return finished

    def dead_letters(self) -> list[Task]:
        rows = self._guard(lambda: self.r.xrange(self.dead_stream))
        return [Task.from_json(f[b"task"] if b"task" in f else f["task"]) for _, f in rows]

    def depth(self) -> int:
        return int(self._guard(lambda: self.r.xlen(self.stream)))
