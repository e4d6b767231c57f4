"""MemRead: which entries of the memory go into the prompt for a new problem.

* ``model``: the model reads the whole entry list beside the problem and names the entries that apply
  (the paper's reasoning-based selection, used with concepts).
* ``topk``: the model writes a description of the problem (or the caller gives one), and the ``top_k``
  entries closest to it are retrieved by the cube's hybrid search.
* ``none``: no memory (the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memos.errors import InvalidInput
from memos.llm import ChatBackend
from memos_arcmemo import prompts
from memos_arcmemo.concepts import normalise
from memos_arcmemo.memory import ConceptMemory, StoredEntry

METHODS = ("model", "topk", "none")


@dataclass(frozen=True)
class Selection:
    method: str
    entries: tuple[StoredEntry, ...] = ()
    description: str = ""
    """The problem description searched with (``topk``)."""
    unknown: tuple[str, ...] = field(default=())
    """Names the model gave that are not in the memory (``model``)."""

    @property
    def names(self) -> list[str]:
        return [s.entry.name for s in self.entries]

    def public(self) -> dict[str, Any]:
        return {"method": self.method, "concepts": self.names, "description": self.description,
                "unknown": list(self.unknown)}


def select(chat: ChatBackend, memory: ConceptMemory, problem_text: str, *, method: str = "model",
           top_k: int = 5, description: str | None = None, max_tokens: int = 256) -> Selection:
    """Pick the entries of ``memory`` for a problem (see the module docstring). An empty memory costs no
    model call."""
    if method not in METHODS:
        raise InvalidInput(f"selection must be one of {METHODS}, got {method!r}", field="selection")
    if not isinstance(top_k, int) or top_k < 1:
        raise InvalidInput(f"top_k must be a positive integer, got {top_k!r}", field="top_k")
    if method == "none":
        return Selection(method)
    entries = memory.entries()
    if not entries:
        return Selection(method)

    def ask(system: str, user: str) -> str:
        return chat.chat([{"role": "system", "content": system}, {"role": "user", "content": user}],
                         max_tokens=max_tokens).content

    if method == "topk":
        text = description if description is not None else prompts.strip_fences(
            ask(prompts.DESCRIBE, f"Puzzle:\n{problem_text}"))
        return Selection(method, tuple(memory.search(text, top_k)), description=text)
    reply = ask(prompts.SELECT.format(k=top_k), f"Library:\n{memory.render(entries)}\n\nPuzzle:\n{problem_text}")
    by_key = {s.entry.key: s for s in entries}
    chosen: dict[str, StoredEntry] = {}
    unknown: list[str] = []
    for name in prompts.parse_list(reply) or []:
        if isinstance(name, dict):  # {"name": ...} objects instead of bare names
            name = name.get("name") or name.get("situation")
        if not isinstance(name, str):
            continue
        hit = by_key.get(normalise(name))
        if hit is None:
            unknown.append(name)
        elif hit.entry.key not in chosen and len(chosen) < top_k:
            chosen[hit.entry.key] = hit
    return Selection(method, tuple(chosen.values()), unknown=tuple(unknown))
