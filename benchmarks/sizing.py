"""Sizing figures for operators (docs/operations.md): memory and disk per 1k plaintext memories, KV-cache
bytes per token, adapter bytes.

    python benchmarks/sizing.py --json [--parts plaintext,redis,kv,adapters] [--formats lora,tokmem,pkm]
    -> {"machine", "plaintext": {"n", "rss_mb_per_1k_ingest", "rss_mb_per_1k_serving", "disk_mb_per_1k", ...},
        "redis": {"n", "used_memory_mb_per_1k", ...}, "kv": {"model", "bytes_per_token", ...},
        "adapters": {"lora": {"rank", "bytes", ...}, ...}}

* plaintext, on the embedded default (SQLite + FAISS + BM25), ``--n`` synthetic memories (the sentences of
  benchmarks/plaintext_latency.py) added with ``add_many``:
  ``rss_mb_per_1k_ingest``: growth of this process's RSS while adding them (embedder already loaded);
  ``rss_mb_per_1k_serving``: RSS of a fresh process that opens the home and answers one search on the cube,
  minus the same for an empty cube (``rss_mb_serving_empty_cube``: the process with the embedder loaded):
  the resident cost of a loaded cube;
  ``disk_mb_per_1k``: bytes under the home after close (database and index files), per 1k.
* redis (``--parts ...,redis``: a private ``redis-server`` on a free loopback port, nothing else on it): Redis
  ``used_memory`` growth for the same memories through the redis backend (the shared store of a cluster).
* kv: an activation memory of ``--kv-tokens`` tokens for the local engine (SmolLM2-135M-Instruct):
  stored bytes per token, and ``2 * layers * kv_heads * head_dim * dtype bytes`` from its fingerprint.
* adapters: a parametric memory per ``--formats`` entry, trained for one step on 8 memories at the
  trainer's default settings (the size does not depend on the steps): stored payload bytes. A format that
  fails is reported as ``{"error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parametric import nonce_facts
from plaintext_latency import rss_mb, sentence


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
        with open("/proc/meminfo", encoding="ascii") as fh:
            mem_gib = round(int(next(ln.split()[1] for ln in fh if ln.startswith("MemTotal"))) / 1024**2, 1)
    except OSError:
        mem_gib = None
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": mem_gib, "os": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def _tree_bytes(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_file():
            out[entry.name] = entry.stat().st_size
        else:
            out[entry.name + "/"] = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
    return out


_SERVING = """
import json, sys
from memos import MemOS
from plaintext_latency import rss_mb
with MemOS.open(sys.argv[1]) as mos:
    mos.cube("bench").search("where did Alice travel", top_k=5)
    print(json.dumps({"rss_mb": rss_mb()}))
"""


def _serving_rss(home: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent),
                                                       os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _SERVING, str(home)], capture_output=True, text=True, env=env,
                         timeout=600, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rss_mb"])


def _add(cube: Any, n: int, batch: int, seed: int) -> float:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        cube.add_many([sentence(rng, i) for i in range(start, min(n, start + batch))])
    return time.perf_counter() - t0


def plaintext(n: int, batch: int, seed: int, work: Path) -> dict[str, Any]:
    from memos import MemOS

    empty, full = work / "empty", work / "full"
    with MemOS.open(empty) as mos:
        mos.create_cube("bench").add_many(["warm-up memory"])
    with MemOS.open(full) as mos:
        cube = mos.create_cube("bench")
        cube.add_many(["warm-up memory"])  # loads the embedder before the baseline
        cube.search("warm-up", top_k=1)
        base = rss_mb()
        add_s = _add(cube, n, batch, seed)
        grown = rss_mb() - base
    files = _tree_bytes(full)
    files_empty = _tree_bytes(empty)
    disk = sum(files.values()) - sum(files_empty.values())
    empty_rss = _serving_rss(empty)
    serving = _serving_rss(full) - empty_rss
    per_k = n / 1000
    return {"n": n, "add_per_s": round(n / add_s, 1),
            "rss_mb_per_1k_ingest": round(grown / per_k, 3),
            "rss_mb_per_1k_serving": round(serving / per_k, 3),
            "rss_mb_serving_empty_cube": round(empty_rss, 1),
            "disk_mb_per_1k": round(disk / 1024**2 / per_k, 3),
            "disk_bytes": files, "disk_bytes_empty_home": files_empty}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_store(n: int, batch: int, seed: int, work: Path) -> dict[str, Any]:
    import redis

    from memos import MemOS

    exe = shutil.which("redis-server")
    if exe is None:
        return {"error": "redis-server is not on PATH"}
    port = _free_port()
    server = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        url = f"redis://127.0.0.1:{port}/0?prefix=sizing:"
        with MemOS.open(work / "redis-home", storage={"backend": "redis", "url": url}) as mos:
            cube = mos.create_cube("bench")
            cube.add_many(["warm-up memory"])
            before = client.info("memory")["used_memory"]
            _add(cube, n, batch, seed)
            after = client.info("memory")["used_memory"]
        return {"n": n, "used_memory_mb_per_1k": round((after - before) / 1024**2 / (n / 1000), 3),
                "keys": client.dbsize(), "redis_version": client.info("server")["redis_version"]}
    finally:
        server.terminate()
        server.wait(timeout=30)


def kv(tokens: int, work: Path) -> dict[str, Any]:
    import torch

    from memos import MemOS

    with MemOS.open(work / "kv", models_dir=str(work / "models")) as mos:
        engine = mos.engine("local")
        parts: list[str] = []
        i = 0
        facts = [f["text"] for f in nonce_facts(20)]
        while engine.count_tokens(" ".join(parts)) < tokens:
            parts.append(f"{facts[i % len(facts)]} (entry {i})")
            i += 1
        doc = engine.decode(engine.encode(" ".join(parts))[:tokens])
        mem = mos.create_cube("bench").add_activation(doc, engine="local")
        fp = engine.fingerprint()
        itemsize = torch.empty(0, dtype=getattr(torch, fp.dtype)).element_size()
        return {"model": fp.model_id, "dtype": fp.dtype, "n_layers": fp.n_layers, "n_kv_heads": fp.n_kv_heads,
                "head_dim": fp.head_dim, "prefix_tokens": mem.payload.tokens, "file_bytes": mem.payload.bytes,
                "bytes_per_token": round(mem.payload.bytes / mem.payload.tokens, 1),
                "bytes_per_token_formula": 2 * fp.n_layers * fp.n_kv_heads * fp.head_dim * itemsize}


def adapters(formats: list[str], work: Path) -> dict[str, Any]:
    from memos import MemOS
    from memos.errors import MemosError

    out: dict[str, Any] = {}
    with MemOS.open(work / "adapters", models_dir=str(work / "models")) as mos:  # one converted model
        cube = mos.create_cube("bench")
        ids = [m.id for m in cube.add_many([f["text"] for f in nonce_facts(8)])]
        for fmt in formats:
            t0 = time.perf_counter()
            try:
                mem = cube.train_adapter(ids, format=fmt, steps=1, engine="local")
            except MemosError as exc:  # e.g. memories a format cannot use: reported, the other figures still count
                out[fmt] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            extra = mem.payload.model_extra or {}
            training = extra.get("training", {})
            out[fmt] = {"bytes": mem.payload.bytes, "format": mem.payload.format,
                        "rank": training.get("rank"), "train_s_one_step": round(time.perf_counter() - t0, 2),
                        "settings": training}
    if "lora" in out and "error" not in out["lora"] and out["lora"]["rank"] is None:
        from memos.parametric.lora import LoraSettings

        out["lora"]["rank"] = LoraSettings().rank
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="plaintext memories")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--parts", default="plaintext,kv,adapters",
                    help="comma-separated: plaintext, redis (a private redis-server), kv, adapters")
    ap.add_argument("--kv-tokens", type=int, default=512)
    ap.add_argument("--formats", default="lora", help="comma-separated adapter formats: lora, tokmem, pkm")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.n < 1000 or args.batch < 1 or args.kv_tokens < 8:
        ap.error("--n must be >= 1000, --batch >= 1, --kv-tokens >= 8")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - {"plaintext", "redis", "kv", "adapters"}:
        ap.error(f"unknown --parts {sorted(unknown)}")
    result: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="memos-sizing-") as tmp:
        work = Path(tmp)
        if "plaintext" in parts:
            result["plaintext"] = plaintext(args.n, args.batch, args.seed, work)
        if "redis" in parts:
            result["redis"] = redis_store(args.n, args.batch, args.seed, work)
        if "kv" in parts:
            result["kv"] = kv(args.kv_tokens, work)
        if "adapters" in parts:
            result["adapters"] = adapters([f for f in args.formats.split(",") if f], work)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
