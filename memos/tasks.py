"""The background task queue: memory work that must not block a request.

KV builds, migrations, prefetches, expiry sweeps (and, with the method plugins, consolidation and adapter
training) are submitted as tasks (``kind`` + JSON payload) and run by workers with retries, idempotency
keys and a dead-letter list.

* :class:`InProcessQueue` (embedded mode, here): worker threads over ``queue.Queue``.
* ``scheduler.queue.RedisStreamQueue`` (cluster mode): the same interface on a Redis Stream with a
  consumer group, so a task survives the death of the worker running it.

Handlers get ``(payload: dict)`` and must be idempotent (a task may run twice if its worker died after
the work but before the acknowledgement).
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

from memos.errors import InvalidInput

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


