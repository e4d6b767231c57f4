"""The background task queue: memory work that must not block a request.

Embedding backfill, consolidation, KV builds and adapter training are submitted as tasks
(``kind`` + JSON payload) and run by workers with retries, idempotency keys and a dead-letter list.

* :class:`InProcessQueue` (embedded mode): a thread pool over ``queue.Queue``.
* :class:`RedisStreamQueue` (cluster mode): a Redis Stream with a consumer group. A worker that dies
  mid-task leaves the entry pending; another worker reclaims it after ``claim_idle_ms`` (XAUTOCLAIM),
  so a task is never lost. Idempotency: ``SET key NX`` before ``XADD``, so resubmitting the same key
  returns the first task's id and enqueues nothing.

Handlers get ``(payload: dict)`` and must be idempotent themselves (a reclaimed task may run twice
if its worker died after the work but before the acknowledgement).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import traceback
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from memos.errors import BackendError, InvalidInput

Handler = Callable[[dict[str, Any]], Any]


@dataclass
class Task:
    kind: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    key: str | None = None
    attempts: int = 0
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Task:
        return cls(**json.loads(raw))


class TaskQueue(ABC):
    def __init__(self, max_attempts: int = 3) -> None:
        if max_attempts < 1:
            raise InvalidInput("max_attempts must be >= 1", field="max_attempts")
        self.max_attempts = max_attempts
        self._handlers: dict[str, Handler] = {}
        self.done = 0
        self.failed = 0

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def _check(self, kind: str, payload: Any) -> None:
        if not isinstance(kind, str) or not kind:
            raise InvalidInput("task kind must be a non-empty string", field="kind")
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"task payload must be JSON-serialisable: {exc}", field="payload") from exc

    def _execute(self, task: Task) -> bool:
        """Run one attempt; True on success. Unknown kinds go straight to the dead letters."""
        handler = self._handlers.get(task.kind)
        task.attempts += 1
        if handler is None:
            task.error = f"no handler for task kind {task.kind!r}"
            task.attempts = self.max_attempts
            return False
        try:
            handler(task.payload)
            return True
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
            task.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
            return False

    @abstractmethod
    def submit(self, kind: str, payload: dict[str, Any], key: str | None = None) -> str: ...

    @abstractmethod
    def run_once(self, timeout_s: float = 0.1) -> int:
        """Process what is available (waiting up to ``timeout_s``); return how many tasks finished."""

    @abstractmethod
    def dead_letters(self) -> list[Task]: ...

    @abstractmethod
    def depth(self) -> int: ...

    def drain(self, timeout_s: float = 30.0) -> None:
        """Run tasks until the queue is empty (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self.depth() and time.monotonic() < deadline:
            self.run_once(0.05)

    def stats(self) -> dict[str, Any]:
        return {"depth": self.depth(), "done": self.done, "failed": self.failed,
                "dead_letters": len(self.dead_letters())}


class InProcessQueue(TaskQueue):
    def __init__(self, max_attempts: int = 3) -> None:
        super().__init__(max_attempts)
        self._q: queue.Queue[Task] = queue.Queue()
        self._keys: dict[str, str] = {}
        self._dead: list[Task] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def submit(self, kind: str, payload: dict[str, Any], key: str | None = None) -> str:
        self._check(kind, payload)
        with self._lock:
            if key is not None and key in self._keys:
                return self._keys[key]
            task = Task(kind, payload, key=key)
            if key is not None:
                self._keys[key] = task.id
        self._q.put(task)
        return task.id

    def run_once(self, timeout_s: float = 0.1) -> int:
        try:
            task = self._q.get(timeout=timeout_s)
        except queue.Empty:
            return 0
        try:
            if self._execute(task):
                self.done += 1
                return 1
            if task.attempts >= self.max_attempts:
                self.failed += 1
                with self._lock:
                    self._dead.append(task)
                return 1
            self._q.put(task)
            return 0
        finally:
            self._q.task_done()

    def dead_letters(self) -> list[Task]:
        with self._lock:
            return list(self._dead)

    def depth(self) -> int:
        return self._q.unfinished_tasks

    def start(self, workers: int = 1) -> None:
        self._stop.clear()
        for _ in range(workers):
            t = threading.Thread(target=self._loop, daemon=True, name="memos-task-worker")
            t.start()
            self._threads.append(t)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once(0.2)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()


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
