"""Time to first token with and without an activation memory (DESIGN §8).

    python benchmarks/kv_ttft.py --engine local --prefix-tokens 256,1024,2048 --json
    -> {"engine", "results": [{"prefix_tokens", "ttft_ms_cold", "ttft_ms_kv", "reduction",
                               "same_output", "load_ms", "bytes_per_token"}]}

For each prefix length: a document of that many tokens is stored as an activation memory through the
SDK (``cube.add_activation``). *Cold* answers the question by prefilling document + question from
scratch; *kv* answers it through ``mos.generate(..., kv=[id])`` with the cache resident. Both are greedy;
``same_output`` compares the generated tokens. ``load_ms`` is reading and verifying the cache from the
disk tier (a residency miss). Medians over ``--repeats`` runs.

Engines with an automatic prefix cache (``vllm``) would otherwise serve a "cold" run from blocks an
earlier run left behind: for them each cold run starts from an empty prefix cache, and each kv run
from one holding only the prefix (``engine.warm`` on the loaded activation memory).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

SENTENCES = [
    "The archive of Tessaly records every harvest of blue ferns since the first colony.",
    "Zorblax, the station botanist, keeps a purple llama named Quimby in the greenhouse dome.",
    "Water on the moon is rationed by the council, which meets on the first day of each cycle.",
    "Cargo ships arrive from the inner planets carrying seeds, tools and letters from home.",
    "The old observatory was converted into a school where children learn orbital mechanics.",
]
QUESTION = "According to the text, what is the name of the botanist's llama?"


def make_document(engine, tokens: int) -> str:  # type: ignore[no-untyped-def]
    parts: list[str] = []
    i = 0
    while engine.count_tokens(" ".join(parts)) < tokens:
        parts.append(f"{SENTENCES[i % len(SENTENCES)]} (entry {i})")
        i += 1
    ids = engine.encode(" ".join(parts))[:tokens]
    return engine.decode(ids)


def run(engine_name: str, lengths: list[int], repeats: int, max_tokens: int) -> dict:
    from memos import MemOS

    results = []
    with tempfile.TemporaryDirectory(prefix="memos-kv-") as home, MemOS.open(home) as mos:
        engine = mos.engine(engine_name)
        cube = mos.create_cube("bench")
        act = mos._activation()
        for n in lengths:
            doc = make_document(engine, n)
            mem = cube.add_activation(doc, engine=engine_name)
            cold, warm, loads = [], [], []
            prefix_ids = engine.encode(engine._render_chat([{"role": "system", "content": doc}]))
            q_ids = engine._prompt_ids(QUESTION, chat=True, after_prefix=True)
            reset = getattr(engine, "reset_prefix_cache", None)
            for _ in range(repeats):
                if reset is not None:
                    reset()
                c = engine.generate_ids(prefix_ids + q_ids, max_tokens=max_tokens)
                cold.append(c.ttft_ms)
                act.pool.drop(("bench", mem.payload.sha256))
                t = time.perf_counter()
                cache = act.load("bench", cube.get(mem.id), engine)
                loads.append((time.perf_counter() - t) * 1000)
                if reset is not None:
                    reset()
                    engine.warm(cache)
                w = mos.generate("bench", QUESTION, kv=[mem.id], retrieve=False, max_tokens=max_tokens,
                                 engine=engine_name)
                warm.append(w.ttft_ms)
            cm, wm = statistics.median(cold), statistics.median(warm)
            results.append({
                "prefix_tokens": mem.payload.tokens,
                "ttft_ms_cold": round(cm, 2),
                "ttft_ms_kv": round(wm, 2),
                "reduction": round(1 - wm / cm, 4),
                "same_output": list(c.token_ids) == list(w.token_ids),
                "load_ms": round(statistics.median(loads), 2),
                "bytes_per_token": round(mem.payload.bytes / mem.payload.tokens, 1),
            })
    return {"engine": engine_name, "results": results, "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="local")
    ap.add_argument("--prefix-tokens", default="256,1024,2048",
                    help="comma-separated prefix lengths (tokens)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    lengths = [int(x) for x in str(args.prefix_tokens).split(",") if x]
    if not lengths or min(lengths) < 8 or args.repeats < 1:
        ap.error("--prefix-tokens must be >= 8 and --repeats >= 1")
    out = run(args.engine, lengths, args.repeats, args.max_tokens)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
