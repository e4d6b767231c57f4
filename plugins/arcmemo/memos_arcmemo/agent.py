"""ArcMemo as one object: a concept memory in a cube, the writer that fills it, the solver that reads it,
and the continual run (solve a batch with the memory as it is, then write what the solved problems
taught, then the next batch)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from memos.errors import InvalidInput
from memos.llm import ChatBackend
from memos.telemetry import span
from memos_arcmemo.domain import Domain, JsonDomain, Problem, render_problem
from memos_arcmemo.memory import ConceptMemory
from memos_arcmemo.solver import SolveConfig, Solver, SolveResult
from memos_arcmemo.write import MemoryWriter, WriteResult


class ArcMemo:
    """``ArcMemo(chat, cube).solve(problem)``; ``format`` ``"ps"`` (concepts) or ``"oe"`` (lessons)."""

    def __init__(self, chat: ChatBackend, cube: Any, *, format: str = "ps", domain: Domain | None = None,
                 config: SolveConfig | None = None) -> None:
        self.memory = ConceptMemory(cube, format)
        self.domain: Domain = domain or JsonDomain()
        self.config = config or SolveConfig()
        self.writer = MemoryWriter(chat, self.memory, max_tokens=max(768, self.config.max_tokens))
        self.solver = Solver(chat, self.domain, self.memory, self.config)

    def learn(self, problem: Problem, trace: str) -> WriteResult:
        """MemWrite from a solution of ``problem`` (a program, reasoning, or both)."""
        return self.writer.write(problem.id, render_problem(self.domain, problem, with_test=False), trace)

    def solve(self, problem: Problem, *, update: bool = False) -> tuple[SolveResult, WriteResult | None]:
        """Solve with the memory; with ``update``, a solved problem's trace is then written to memory."""
        result = self.solver.solve(problem)
        written = self.learn(problem, result.trace) if update and result.status == "solved" else None
        return result, written

    def run(self, problems: Iterable[Problem], *, batch_size: int = 5, continual: bool = True,
            on_result: Callable[[SolveResult], None] | None = None) -> dict[str, Any]:
        """Solve ``problems`` in batches. ``continual``: after each batch, the problems it solved (every
        example reproduced; the test answers are never looked at) are written to memory, so the next batch
        reads a larger memory. Without it the memory stays as it was (the fixed-memory setting)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInput(f"batch_size must be a positive integer, got {batch_size!r}", field="batch_size")
        todo = list(problems)
        results: list[SolveResult] = []
        batches: list[dict[str, Any]] = []
        with span("arcmemo.run", cube=self.memory.cube.name, items=len(todo), continual=continual):
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                solved: list[tuple[Problem, SolveResult]] = []
                for problem in batch:
                    result = self.solver.solve(problem)
                    results.append(result)
                    if result.status == "solved":
                        solved.append((problem, result))
                    if on_result is not None:
                        on_result(result)
                writes = [self.learn(p, r.trace) for p, r in solved] if continual else []
                batches.append({"problems": [p.id for p in batch], "solved": len(solved),
                                "writes": [w.public() for w in writes], "memory_size": len(self.memory)})
        scored = [r for r in results if r.correct is not None]
        return {"tasks": len(results), "solved": sum(r.status == "solved" for r in results),
                "correct": sum(bool(r.correct) for r in scored), "scored": len(scored),
                "continual": continual, "batch_size": batch_size, "memory_size": len(self.memory),
                "batches": batches, "results": [r.public() for r in results]}
