"""The embedded home directory and its process lock.

SQLite in WAL mode tolerates several processes, but each process keeps derived state (FAISS indexes,
BM25) that another writer would silently invalidate. So one process owns a home at a time: a second
``MemOS.open`` on the same home gets :class:`memos.errors.HomeLocked` immediately, never a corrupt index.
The lock is an ``flock`` on ``<home>/LOCK``: the kernel releases it when a process dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from memos.errors import HomeLocked


class HomeLock:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "LOCK"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or None
            os.close(fd)
            raise HomeLocked(str(self.home), holder=f"pid {holder}" if holder else None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
