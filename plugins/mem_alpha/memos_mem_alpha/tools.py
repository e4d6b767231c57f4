"""The Mem-alpha memory tools (Wang et al. 2025; names and arguments as in the authors'
release) as OpenAI function schemas, and their execution on a :class:`~.memory.MemAlphaMemory`.

While memorising a chunk the policy gets the write tools ``new_memory_insert``, ``memory_update`` and
``memory_delete``; ``search_memory`` is the read tool. A call *succeeds* when it runs without error and
is not a skipped duplicate insert: that is what the tool-call reward r_2 counts (see :mod:`.reward`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from memos.errors import InvalidInput
from memos.llm import ToolCall
from memos_mem_alpha.memory import MemAlphaMemory, memory_type


def _tool(name: str, description: str, params: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": params, "required": required}}}


_LIST_TYPES = ["semantic_memory", "episodic_memory"]
_ALL_TYPES = ["core_memory", *_LIST_TYPES]

INSERT = _tool(
    "new_memory_insert", "Add a new item to the semantic or episodic memory (it gets a short id). "
    "Core memory cannot be inserted, only rewritten with memory_update.",
    {"memory_type": {"type": "string", "enum": _LIST_TYPES,
                     "description": "semantic_memory: facts and knowledge; episodic_memory: timestamped events."},
     "content": {"type": "string", "description": "The new item."}},
    ["memory_type", "content"])
UPDATE = _tool(
    "memory_update", "Rewrite memory. core_memory: the new content replaces the whole paragraph. "
    "semantic_memory / episodic_memory: replaces the item with the given id.",
    {"memory_type": {"type": "string", "enum": _ALL_TYPES, "description": "Which memory to change."},
     "new_content": {"type": "string", "description": "The complete new content (combine old and new facts)."},
     "memory_id": {"type": "string", "description": "Id of the item (semantic/episodic only)."}},
    ["memory_type", "new_content"])
DELETE = _tool(
    "memory_delete", "Delete memory. core_memory: clears the paragraph. semantic_memory / episodic_memory: "
    "deletes the item with the given id.",
    {"memory_type": {"type": "string", "enum": _ALL_TYPES, "description": "Which memory to change."},
     "memory_id": {"type": "string", "description": "Id of the item (semantic/episodic only)."}},
    ["memory_type"])
SEARCH = _tool(
    "search_memory", "Search semantic or episodic memory by BM25 keywords or embedding similarity "
    "(core memory is always visible and is not searched).",
    {"memory_type": {"type": "string", "enum": _LIST_TYPES, "description": "Which list to search."},
     "query": {"type": "string", "description": "What to look for."},
     "search_method": {"type": "string", "enum": ["bm25", "text-embedding"], "description": "Default bm25."}},
    ["memory_type", "query"])

WRITE_TOOLS = [INSERT, UPDATE, DELETE]
ALL_TOOLS = [*WRITE_TOOLS, SEARCH]
TOOL_NAMES = [t["function"]["name"] for t in ALL_TOOLS]
#: Tools whose content the memory-type validity reward r_4 judges (they write text into a memory).
CONTENT_TOOLS = ("new_memory_insert", "memory_update")


@dataclass
class ToolOutcome:
    """One executed call: ``ok`` is the success r_2 counts; ``result`` is what the model would read."""

    name: str
    arguments: dict[str, Any]
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)

    def content(self) -> tuple[str, str] | None:
        """(memory type, text) written by an insert/update, for the validity judge; else None."""
        if self.name not in CONTENT_TOOLS:
            return None
        text = self.arguments.get("content" if self.name == "new_memory_insert" else "new_content")
        try:
            return memory_type(self.arguments.get("memory_type")), str(text or "")
        except InvalidInput:
            return str(self.arguments.get("memory_type") or ""), str(text or "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "ok": self.ok, "result": self.result}


def execute(memory: MemAlphaMemory, call: ToolCall, *, allowed: tuple[str, ...] | None = None,
            top_k: int = 20) -> ToolOutcome:
    """Run one tool call on ``memory``. Never raises for a bad call: it becomes a failed outcome."""
    args = dict(call.arguments)
    name = call.name
    try:
        if allowed is not None and name not in allowed:
            raise InvalidInput(f"unknown tool {name!r}; use one of {', '.join(allowed)}", field="name")
        if name == "new_memory_insert":
            item = memory.insert(args.get("memory_type"), args.get("content"))
            if item is None:
                return ToolOutcome(name, args, False, {"status": "skipped",
                                                       "message": "this content is already stored; not inserted"})
            return ToolOutcome(name, args, True, {"status": "ok", "new_memory": {item.id: item.content}})
        if name == "memory_update":
            stored = memory.update(args.get("memory_type"), args.get("new_content"), _id(args))
            return ToolOutcome(name, args, True, {"status": "ok", "updated_memory": stored})
        if name == "memory_delete":
            memory.delete(args.get("memory_type"), _id(args))
            return ToolOutcome(name, args, True, {"status": "ok"})
        if name == "search_memory":
            hits = memory.search(args.get("memory_type"), str(args.get("query") or ""), top_k=top_k,
                                 method=str(args.get("search_method") or "bm25"))
            return ToolOutcome(name, args, True, {"status": "ok", "results": [
                {"id": item.id, "content": item.content, "score": round(score, 4)} for item, score in hits]})
        raise InvalidInput(f"unknown tool {name!r}; use one of {', '.join(TOOL_NAMES)}", field="name")
    except InvalidInput as exc:
        return ToolOutcome(name, args, False, {"status": "error", "message": exc.message})


def _id(args: dict[str, Any]) -> str | None:
    value = args.get("memory_id")
    return None if value is None else str(value)


def describe(outcomes: list[ToolOutcome]) -> str:
    """The outcomes as one line each (what a multi-turn agent would read back)."""
    return "\n".join(f"{o.name}: {json.dumps(o.result, ensure_ascii=False)}" for o in outcomes)


__all__ = ["ALL_TOOLS", "CONTENT_TOOLS", "DELETE", "INSERT", "SEARCH", "TOOL_NAMES", "UPDATE", "WRITE_TOOLS",
           "ToolOutcome", "describe", "execute"]
