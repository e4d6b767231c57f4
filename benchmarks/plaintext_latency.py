"""Plaintext memory throughput and latency on the embedded default (DESIGN §8).

    python benchmarks/plaintext_latency.py --n 10000 --json
    -> {"n", "add_per_s", "search_p50_ms", "search_p95_ms", "rss_mb_per_1k", ...}

Memories are synthetic but varied sentences (people x activities x places x times), added with
``add_many`` in batches (embedding included). Searches use distinct queries, so the query-embedding cache
never hides the embedding cost: the latency is end to end (embed + dense + BM25 + fusion + fetch).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

PEOPLE = ["Alice", "Bob", "Chen", "Dara", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kemal", "Lior",
          "Maya", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tomas", "Uma", "Viktor", "Wen", "Yara"]
ACTS = ["visited", "wrote about", "cooked dinner in", "took photos of", "went hiking near", "bought a flat in",
        "ran a marathon in", "studied architecture in", "lost a wallet in", "adopted a cat in", "played chess in",
        "started a bakery in", "met an old friend in", "learned salsa in", "painted a mural in"]
PLACES = ["Lisbon", "Porto", "Kyoto", "Nairobi", "Lima", "Oslo", "Hanoi", "Quito", "Tbilisi", "Accra", "Perth",
          "Bergen", "Cusco", "Dakar", "Izmir", "Leeds", "Malmo", "Nantes", "Seville", "Tartu"]
WHEN = ["last spring", "in 2019", "two weeks ago", "during the holidays", "after graduating", "on a rainy day",
        "with her sister", "with his team", "for the first time", "before the pandemic"]
DETAIL = ["and loved the food", "but the weather was awful", "and plans to return", "which cost too much",
          "and made new friends", "despite a broken ankle", "and kept a journal", "to celebrate a promotion"]


def sentence(rng: random.Random, i: int) -> str:
    return (f"{rng.choice(PEOPLE)} {rng.choice(ACTS)} {rng.choice(PLACES)} {rng.choice(WHEN)} "
            f"{rng.choice(DETAIL)} (note {i}).")


def query(rng: random.Random, i: int) -> str:
    return f"when did {rng.choice(PEOPLE)} {rng.choice(ACTS).split()[0]} {rng.choice(PLACES)} #{i}"


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def run(n: int, batch: int, queries: int, seed: int) -> dict:
    from memos import MemOS

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="memos-bench-") as home, MemOS.open(home) as mos:
        cube = mos.create_cube("bench")
        cube.add_many(["warm-up memory"])  # loads the embedder: not part of the timed adds
        cube.search("warm-up", top_k=1)
        base_rss = rss_mb()
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            cube.add_many([sentence(rng, i) for i in range(start, min(n, start + batch))])
        add_s = time.perf_counter() - t0
        lat = []
        for i in range(queries):
            q = query(rng, i)
            t = time.perf_counter()
            hits = cube.search(q, top_k=10)
            lat.append((time.perf_counter() - t) * 1000)
            assert hits, q
        lat.sort()
        stats = cube.stats()
        return {
            "n": n,
            "add_per_s": round(n / add_s, 1),
            "search_p50_ms": round(statistics.median(lat), 3),
            "search_p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 3),
            "rss_mb_per_1k": round((rss_mb() - base_rss) / (n / 1000), 3),
            "add_s": round(add_s, 2),
            "queries": queries,
            "dense_index": stats["dense"],
            "threads": os.cpu_count(),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    args = ap.parse_args(argv)
    if args.n < 1 or args.batch < 1 or args.queries < 1:
        ap.error("--n, --batch and --queries must be positive")
    result = run(args.n, args.batch, args.queries, args.seed)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
