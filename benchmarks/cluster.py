"""Embedded vs cluster latency and throughput, migration and recovery times (DESIGN §8).

    python benchmarks/cluster.py --json
    -> {"embedded": {"add_p50_ms", "search_p50_ms", ...}, "cluster_1": {...}, "cluster_2": {...},
        "migration_s", "recovery_s", "lost_writes"}

``cluster_1``: one client on one cube owned by one worker. ``cluster_2``: two clients on two cubes owned
by two different workers (aggregate ops/s). ``migration_s``: live move of a cube of ``--migrate-n``
memories. ``recovery_s``: SIGKILL of the owning worker in a write burst until the burst completes;
``lost_writes``: acknowledged writes missing afterwards. Needs Redis on 127.0.0.1:6379 and no other Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REDIS = "redis://127.0.0.1:6379/0"


def measure(cubes: list, ops: int) -> dict:
    add_lat: list[float] = []
    search_lat: list[float] = []
    lock = threading.Lock()

    def client(cube, k: int) -> None:
        for i in range(ops):
            t = time.perf_counter()
            cube.add(f"client {k} note {i} about station logistics and crew {i % 17}")
            a = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            cube.search(f"crew {i % 17} logistics {k} #{i}", top_k=5)  # unique: no query-cache hits
            s = (time.perf_counter() - t) * 1000
            with lock:
                add_lat.append(a)
                search_lat.append(s)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c, k)) for k, c in enumerate(cubes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    q = lambda xs, p: sorted(xs)[int(p * (len(xs) - 1))]  # noqa: E731
    return {"add_p50_ms": round(statistics.median(add_lat), 2), "add_p95_ms": round(q(add_lat, 0.95), 2),
            "search_p50_ms": round(statistics.median(search_lat), 2),
            "search_p95_ms": round(q(search_lat, 0.95), 2),
            "ops_per_s": round(2 * len(add_lat) / wall, 1), "clients": len(cubes)}


def run(ops: int, migrate_n: int) -> dict:
    from memos import MemOS
    from scheduler.runtime import connect, down, up

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="memos-bench-emb-") as home, MemOS.open(home) as mos:
        c = mos.create_cube("bench")
        c.add("warm-up")
        c.search("warm-up")
        out["embedded"] = measure([c], ops)

    home = Path(tempfile.mkdtemp(prefix="memos-bench-cluster-"))
    prefix = f"memos-bench-{uuid.uuid4().hex[:8]}:"
    up(workers=2, redis_url=REDIS, home=home, prefix=prefix)
    try:
        mos = connect("auto")
        workers = sorted(mos._kernel.workers())
        cubes = []
        for k, wid in enumerate(workers):
            c = mos.create_cube(f"bench-{k}")
            if mos._kernel.owner(c.name) != wid:
                mos.move_cube(c.name, wid)
            c.add("warm-up")
            c.search("warm-up")
            cubes.append(c)
        out["cluster_1"] = measure(cubes[:1], ops)
        out["cluster_2"] = measure(cubes, ops)

        big = mos.create_cube("bench-migrate")
        for start in range(0, migrate_n, 1000):
            big.add_many([f"migrating memory {i}" for i in range(start, min(migrate_n, start + 1000))])
        src = mos._kernel.owner(big.name)
        dst = next(w for w in workers if w != src)
        out["migration_s"] = mos.move_cube(big.name, dst)["seconds"]
        out["migration_memories"] = migrate_n

        victim = next(w for w in mos.status()["workers"] if big.name in w["owns"])
        acked: list[str] = []

        def burst() -> None:
            for i in range(40):
                acked.append(big.add(f"burst {i}").id)

        t = threading.Thread(target=burst)
        t.start()
        while len(acked) < 5:
            time.sleep(0.02)
        t0 = time.perf_counter()
        os.kill(victim["pid"], signal.SIGKILL)
        t.join()
        out["recovery_s"] = round(time.perf_counter() - t0, 2)
        stored = {m.id for m in big.list(limit=10_000, offset=0)} | {
            m.id for m in big.list(limit=10_000, offset=10_000)}
        out["lost_writes"] = len(set(acked) - stored)
    finally:
        down(home)
        import redis

        r = redis.Redis.from_url(REDIS)
        for key in r.scan_iter(f"{prefix}*"):
            r.delete(key)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=100, help="add+search pairs per client")
    ap.add_argument("--migrate-n", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.ops, args.migrate_n)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
