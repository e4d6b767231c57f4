"""A real two-node memos cluster for tests: Ray head + a second raylet on this machine, Redis on loopback.

Booted once per test session (about 30 s) by the ``cluster`` fixture in tests/conftest.py and torn down
with ``memos down`` semantics, after which no Ray process may remain.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

REDIS_URL = "redis://127.0.0.1:6379/0"


class Cluster:
    def __init__(self, home: Path) -> None:
        from scheduler.runtime import connect, up
        from tests.otlp_collector import Collector

        self.home = home
        self.prefix = f"memos-test-{uuid.uuid4().hex[:8]}:"
        # the workers export their spans to a collector in this process: `memos up` hands its OTEL_*
        # variables to the workers it starts (set only while starting them, so the rest of the test
        # session exports nothing)
        self.collector = Collector()
        saved = {k: os.environ.get(k) for k in self.collector.env()}
        os.environ.update(self.collector.env())
        try:
            head = up(workers=1, redis_url=REDIS_URL, home=home, prefix=self.prefix)
            self.address = head["address"]
            node_ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[0]
            joined = up(workers=1, redis_url=REDIS_URL, home=home, address=f"{node_ip}:6380")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.workers = joined["workers"]
        self.mos = connect(self.address)

    def close(self) -> None:
        import redis

        from scheduler.runtime import down

        self.collector.close()
        down(self.home)
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{self.prefix}*"):
            r.delete(key)


def ray_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-fa", "raylet|gcs_server"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]
