"""A real two-node memos cluster for tests: Ray head + a second raylet on this machine, Redis on loopback.

Booted once per test session (about 30 s) by the ``cluster`` fixture in tests/conftest.py and torn down
with ``memos down`` semantics, after which no Ray process may remain.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

REDIS_URL = "redis://127.0.0.1:6379/0"


class Cluster:
    def __init__(self, home: Path) -> None:
        from scheduler.runtime import connect, up

        self.home = home
        self.prefix = f"memos-test-{uuid.uuid4().hex[:8]}:"
        head = up(workers=1, redis_url=REDIS_URL, home=home, prefix=self.prefix)
        self.address = head["address"]
        node_ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[0]
        joined = up(workers=1, redis_url=REDIS_URL, home=home, address=f"{node_ip}:6380")
        self.workers = joined["workers"]
        self.mos = connect(self.address)

    def close(self) -> None:
        import redis

        from scheduler.runtime import down

        down(self.home)
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{self.prefix}*"):
            r.delete(key)


def ray_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-fa", "raylet|gcs_server"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]
