"""MemWrite: solution trace -> pseudocode -> abstraction (the current memory in the prompt) -> merge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memos.errors import InvalidInput
from memos.llm import ChatBackend
from memos.telemetry import span
from memos_arcmemo import prompts
from memos_arcmemo.concepts import Entry
from memos_arcmemo.memory import ConceptMemory, WriteOutcome


@dataclass(frozen=True)
class WriteResult:
    problem_id: str
    pseudocode: str
    entries: tuple[Entry, ...]
    outcome: WriteOutcome
    rejected: tuple[str, ...] = field(default=())
    """Why parts of the model's abstraction were not stored (unparseable, invalid fields)."""

    def public(self) -> dict[str, Any]:
        return {"problem": self.problem_id, "pseudocode": self.pseudocode, **self.outcome.public(),
                "rejected": list(self.rejected)}


class MemoryWriter:
    """Abstracts solutions into ``memory`` with ``chat``. ``pseudocode``: run the pseudocode step first
    (default: for concepts, as the paper does; lessons are written from the trace itself)."""

    def __init__(self, chat: ChatBackend, memory: ConceptMemory, *, pseudocode: bool | None = None,
                 max_tokens: int = 768) -> None:
        self.chat, self.memory, self.max_tokens = chat, memory, max_tokens
        self.pseudocode = memory.format == "ps" if pseudocode is None else pseudocode

    def _ask(self, system: str, user: str) -> str:
        reply = self.chat.chat([{"role": "system", "content": system}, {"role": "user", "content": user}],
                               max_tokens=self.max_tokens)
        return reply.content

    def write(self, problem_id: str, problem_text: str, trace: str) -> WriteResult:
        """Abstract the solution ``trace`` of a problem (shown as ``problem_text``) into the memory."""
        if not isinstance(problem_id, str) or not problem_id.strip():
            raise InvalidInput("a problem id is required (it becomes the entries' provenance)", field="problem")
        if not isinstance(trace, str) or not trace.strip():
            raise InvalidInput("the solution trace is empty", field="trace")
        with span("arcmemo.write", cube=self.memory.cube.name, problem=problem_id, format=self.memory.format):
            solution = trace
            if self.pseudocode:
                solution = prompts.strip_fences(self._ask(prompts.PSEUDOCODE,
                                                          f"Puzzle:\n{problem_text}\n\nSolution:\n{trace}"))
            if self.memory.format == "ps":
                reply = self._ask(prompts.ABSTRACT_PS, f"Library:\n{self.memory.render()}\n\n"
                                                       f"Pseudocode of a solved puzzle:\n{solution}")
            else:
                reply = self._ask(prompts.ABSTRACT_OE, f"Lessons so far:\n{self.memory.render()}\n\n"
                                                       f"Puzzle:\n{problem_text}\n\nSolution:\n{solution}")
            entries, rejected = self.parse(reply)
            outcome = self.memory.write(entries, problem_id) if entries else WriteOutcome()
            return WriteResult(problem_id, solution if self.pseudocode else "", tuple(entries), outcome,
                               tuple(rejected))

    def parse(self, reply: str) -> tuple[list[Entry], list[str]]:
        """Valid entries of an abstraction reply, and a reason for each part that is not."""
        items = prompts.parse_list(reply)
        if items is None:
            return [], [f"the abstraction is not a JSON list: {reply.strip()[:200]!r}"]
        entries: list[Entry] = []
        rejected: list[str] = []
        for i, item in enumerate(items):
            if isinstance(item, dict):  # provenance is ours to write, not the model's
                item = {k: v for k, v in item.items() if k != "problems"}
            try:
                entries.append(self.memory.type.from_obj(item))
            except InvalidInput as exc:
                rejected.append(f"item {i}: {exc.message}")
        return entries, rejected
