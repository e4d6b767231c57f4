"""The embedded home directory and its process lock.

SQLite in WAL mode tolerates several processes, but each process keeps derived state (FAISS indexes,
BM25) that another writer would silently invalidate. So one process owns a home at a time: a second
``MemOS.open`` on the same home gets :class:`memos.errors.HomeLocked` immediately, never a corrupt index.
The lock is an ``flock`` on ``<home>/LOCK``: the kernel releases it when a process dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from memos.errors import CorruptPayload, HomeLocked, ModelMismatch

EMBEDDER_FILE = "embedder.json"


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


def check_embedder(home: Path, identity: dict[str, Any]) -> None:
    """Stamp the home with the embedder its vectors come from, or refuse another one.

    A home's stored vectors (and their sentence parts) only make sense to the embedder that wrote them; a
    vector of another model, or of a multiple of the dimension, would be read as garbage without an
    error. A different embedder raises :class:`ModelMismatch`: export the cubes with the old embedder and
    import them with the new one (import re-embeds). A dimension of 0 (an endpoint that has not answered
    yet) is not compared. A stamp that is not JSON raises :class:`CorruptPayload` naming the file.
    """
    path = home / EMBEDDER_FILE
    try:
        stamped = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(identity), encoding="utf-8")
        os.replace(tmp, path)
        return
    except ValueError as exc:
        raise CorruptPayload(str(path), f"not the JSON memos writes ({exc}); delete it to stamp the home with "
                                        "the embedder it is opened with") from exc
    same = stamped.get("name") == identity["name"] and stamped.get("model") == identity["model"] and (
        not stamped.get("dim") or not identity["dim"] or stamped.get("dim") == identity["dim"])
    if not same:
        raise ModelMismatch(stamped, identity,
                            what=f"home {str(home)!r} (export its cubes with that embedder, import them with this one)")
