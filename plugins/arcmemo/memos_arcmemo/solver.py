"""Solving one problem: read the memory, let the model write the program, run it in the sandbox on the
examples, feed the failures back and retry (``max_retries`` times), then predict the test outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from memos.llm import ChatBackend, Message
from memos.telemetry import span
from memos_arcmemo import prompts
from memos_arcmemo.domain import Domain, Problem, render_problem
from memos_arcmemo.memory import ConceptMemory
from memos_arcmemo.read import Selection, select
from memos_arcmemo.sandbox import ProgramRun, run_program


class SolveConfig(BaseModel):
    """Settings of the solver (every default works offline on CPU)."""

    max_retries: int = Field(3, ge=0, le=10)
    """Retries after the first program when it fails an example (the model sees what failed)."""
    selection: Literal["model", "topk", "none"] = "model"
    """How entries are read from memory (see :mod:`memos_arcmemo.read`)."""
    top_k: int = Field(5, ge=1, le=50)
    """Most entries put into the prompt."""
    time_limit_s: float = Field(10.0, gt=0, le=600)
    """Wall-clock limit of one sandboxed run (all examples and test inputs of one program)."""
    memory_mb: int = Field(1024, ge=64, le=2048)
    """Address-space limit of the sandboxed program."""
    max_tokens: int = Field(1024, ge=16)
    """Most tokens the model writes per reply."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)


@dataclass(frozen=True)
class Attempt:
    code: str | None
    passed: int
    """Examples reproduced exactly."""
    total: int
    failures: tuple[str, ...] = ()
    error: str | None = None
    """Why the program could not be run or finished (no code, load error, time-out)."""

    @property
    def ok(self) -> bool:
        return self.code is not None and self.error is None and self.passed == self.total

    def public(self) -> dict[str, Any]:
        return {"passed": self.passed, "total": self.total, "error": self.error, "failures": list(self.failures),
                "code": self.code}


@dataclass(frozen=True)
class SolveResult:
    problem_id: str
    status: Literal["solved", "failed"]
    """``solved``: a program reproduced every example (its test predictions are then reported)."""
    attempts: tuple[Attempt, ...]
    selection: Selection
    predictions: tuple[Any, ...] = ()
    correct: bool | None = None
    """Predictions equal the known test outputs (a failed problem: ``False``); ``None`` where the test outputs
    are not known."""
    trace: str = ""
    """The model's reply that gave the accepted program (reasoning and code): what memory is written from."""
    isolation: tuple[str, ...] = field(default=())

    @property
    def code(self) -> str | None:
        return self.attempts[-1].code if self.status == "solved" else None

    def public(self) -> dict[str, Any]:
        return {"problem": self.problem_id, "status": self.status, "correct": self.correct,
                "attempts": len(self.attempts), "retries": max(0, len(self.attempts) - 1),
                "concepts": self.selection.names, "selection": self.selection.public(),
                "predictions": list(self.predictions), "code": self.code, "isolation": list(self.isolation),
                "history": [a.public() for a in self.attempts]}


class Solver:
    """Writes and checks programs for problems of ``domain``, reading ``memory`` (optional)."""

    def __init__(self, chat: ChatBackend, domain: Domain, memory: ConceptMemory | None = None,
                 config: SolveConfig | None = None) -> None:
        self.chat, self.domain, self.memory = chat, domain, memory
        self.config = config or SolveConfig()

    def solve(self, problem: Problem) -> SolveResult:
        cfg = self.config
        cube = self.memory.cube.name if self.memory is not None else None
        with span("arcmemo.solve", cube=cube, problem=problem.id, selection=cfg.selection):
            text = render_problem(self.domain, problem)
            selection = Selection("none")
            if self.memory is not None:
                selection = select(self.chat, self.memory, render_problem(self.domain, problem, with_test=False),
                                   method=cfg.selection, top_k=cfg.top_k)
            messages: list[Message] = [
                {"role": "system", "content": prompts.SOLVE.format(signature=self.domain.signature)},
                {"role": "user", "content": self._user_prompt(text, selection)}]
            attempts: list[Attempt] = []
            run: ProgramRun | None = None
            reply = ""
            for _ in range(cfg.max_retries + 1):
                reply = self.chat.chat(messages, max_tokens=cfg.max_tokens, temperature=cfg.temperature).content
                attempt, run = self._check(problem, prompts.extract_code(reply, self.domain.entry))
                attempts.append(attempt)
                if attempt.ok:
                    break
                messages += [{"role": "assistant", "content": reply},
                             {"role": "user", "content": prompts.RETRY.format(failures=self._feedback(attempt))}]
            known = [ex.output for ex in problem.test]
            scored = bool(known) and all(o is not None for o in known)
            if not attempts[-1].ok or run is None:
                return SolveResult(problem.id, "failed", tuple(attempts), selection, correct=False if scored else None,
                                   isolation=run.isolation if run else ())
            predictions = tuple(c.output if c.ok else None for c in run.calls[len(problem.train):])
            correct = all(self.domain.same(o, p) for o, p in zip(known, predictions)) if scored else None
            return SolveResult(problem.id, "solved", tuple(attempts), selection, predictions, correct, reply,
                               run.isolation)

    def _user_prompt(self, problem_text: str, selection: Selection) -> str:
        if not selection.entries:
            return f"Puzzle:\n{problem_text}"
        concepts = "\n".join(s.entry.render() for s in selection.entries)
        return f"Concepts from memory that may help:\n{concepts}\n\nPuzzle:\n{problem_text}"

    def _check(self, problem: Problem, code: str | None) -> tuple[Attempt, ProgramRun | None]:
        total = len(problem.train)
        if code is None:
            return Attempt(None, 0, total, error=f"no ```python block defining {self.domain.entry}()"), None
        inputs = [ex.input for ex in problem.train] + [ex.input for ex in problem.test]
        run = run_program(code, inputs, entry=self.domain.entry, time_limit_s=self.config.time_limit_s,
                          memory_mb=self.config.memory_mb, as_array=self.domain.as_array)
        if run.error is not None:
            return Attempt(code, 0, total, error=run.error), run
        failures = []
        for i, (ex, call) in enumerate(zip(problem.train, run.calls), 1):
            if not call.ok:
                failures.append(f"Example {i} raised {call.error}")
            elif not self.domain.same(ex.output, call.output):
                failures.append(f"Example {i}: {self.domain.explain(ex.output, call.output)}")
        return Attempt(code, total - len(failures), total, tuple(failures)), run

    @staticmethod
    def _feedback(attempt: Attempt) -> str:
        if attempt.error is not None:
            return attempt.error
        shown = list(attempt.failures[:3])
        more = len(attempt.failures) - len(shown)
        return "\n\n".join(shown + ([f"(and {more} more examples fail)"] if more > 0 else []))
