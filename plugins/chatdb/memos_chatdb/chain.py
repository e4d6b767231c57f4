"""Chain-of-memory (ChatDB, Hu et al. 2023): the LLM turns a request into numbered SQL steps that run in order.

1. One LLM call writes the chain: ``Step 1: <sql>`` ... (numbered lines or ```sql blocks).
2. Every step is checked against the allow-list *before anything runs* (placeholders read as NULL), so an
   unsafe chain leaves the database untouched.
3. Steps run one transaction each. A step with ``<placeholder>``s is completed by a second LLM call that
   sees the step and the previous results and answers a JSON object of values; the values are rendered
   as SQL literals by us (never pasted as SQL), then the step is checked again.
4. A failing step is rolled back and reported; the chain stops there. A refused step raises
   :class:`memos_chatdb.errors.UnsafeSQL`.
5. Each step is recorded as a plaintext memory in the cube (metadata: request id, step, sql, status).
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any

from memos.llm import ChatBackend, loads_tolerant
from memos_chatdb.database import ChatDatabase
from memos_chatdb.errors import UnsafeSQL

PLACEHOLDER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
_STEP_MARK = re.compile(r"^\s*(?:[-*]\s*)?(?:step\s*)?(\d+)\s*[.:)]\s*", re.IGNORECASE | re.MULTILINE)
_FENCE = re.compile(r"```(?:sql|sqlite)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)

PLAN_PROMPT = """You manage a SQLite database that is the memory of a shop assistant.
Schema:
{schema}

Turn the user's request into a chain of SQL steps, one statement per step, numbered:
Step 1: <SQL>
Step 2: <SQL>
When a step needs a value that only an earlier step's result gives, write it as a <placeholder>
(for example <purchase_id>). Answer with the steps only."""

FILL_PROMPT = """Earlier SQL steps returned these results:
{results}

Fill the placeholders of the next step: {sql}
Answer with one JSON object mapping each placeholder name ({names}) to its value."""


@dataclass
class ChainResult:
    request: str
    request_id: str
    status: str = "ok"  # ok | error
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def result(self) -> dict[str, Any] | None:
        done = [s for s in self.steps if s["status"] == "ok"]
        return done[-1]["result"] if done else None

    def as_dict(self) -> dict[str, Any]:
        return {"request": self.request, "request_id": self.request_id, "status": self.status,
                "steps": self.steps, "error": self.error, "result": self.result}


def parse_steps(text: str) -> list[str]:
    """The SQL statements of a chain, in order (numbered steps, else fenced blocks, else the whole text)."""
    marks = list(_STEP_MARK.finditer(text))
    if marks:
        chunks = [text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)]
                  for i, m in enumerate(marks)]
    else:
        chunks = _FENCE.findall(text) or [text]
    steps = []
    for chunk in chunks:
        fenced = _FENCE.findall(chunk)
        sql = (fenced[0] if fenced else chunk.replace("```", "")).strip()
        sql = re.sub(r";\s*$", "", sql).strip()
        if sql:
            steps.append(sql)
    return steps


def sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


class ChainOfMemory:
    """Runs ChatDB chains for one cube's database; ``cube`` (optional) receives a memory per step."""

    def __init__(self, chat: ChatBackend, db: ChatDatabase, cube: Any = None, *, max_steps: int = 10,
                 max_tokens: int = 512) -> None:
        self.chat = chat
        self.db = db
        self.cube = cube
        self.max_steps = max_steps
        self.max_tokens = max_tokens

    def plan(self, request: str) -> list[str]:
        messages = [{"role": "system", "content": PLAN_PROMPT.format(schema=self.db.schema())},
                    {"role": "user", "content": request}]
        reply = self.chat.chat(messages, max_tokens=self.max_tokens)
        return parse_steps(reply.content)[: self.max_steps]

    def ask(self, request: str) -> ChainResult:
        out = ChainResult(request, uuid.uuid4().hex[:12])
        steps = self.plan(request)
        if not steps:
            out.status, out.error = "error", "the model wrote no SQL steps"
            return out
        for n, sql in enumerate(steps, 1):  # all-or-nothing safety check before anything runs
            try:
                self.db.check(PLACEHOLDER.sub("NULL", sql), step=n)
            except UnsafeSQL as exc:
                self._record(out, n, sql, "refused", error=exc.message)
                raise
        results: list[dict[str, Any]] = []
        for n, template in enumerate(steps, 1):
            sql = template
            names = list(dict.fromkeys(PLACEHOLDER.findall(template)))
            if names:
                try:
                    sql = self._fill(template, names, results)
                except ValueError as exc:
                    self._record(out, n, template, "error", error=str(exc))
                    break
            try:
                res = self.db.execute(sql, step=n)
            except UnsafeSQL as exc:
                self._record(out, n, sql, "refused", error=exc.message)
                raise
            except sqlite3.Error as exc:  # rolled back by execute(); report and stop the chain
                self._record(out, n, sql, "error", error=f"{type(exc).__name__}: {exc}")
                break
            results.append({"step": n, **res.as_dict()})
            self._record(out, n, sql, "ok", result=res.as_dict())
        if any(s["status"] != "ok" for s in out.steps):
            out.status = "error"
            out.error = next(s["error"] for s in out.steps if s["status"] != "ok")
        for n in range(len(out.steps) + 1, len(steps) + 1):
            out.steps.append({"step": n, "sql": steps[n - 1], "status": "skipped"})
        return out

    def _fill(self, template: str, names: list[str], results: list[dict[str, Any]]) -> str:
        shown = "\n".join(f"Step {r['step']}: {r['sql']}\n  columns={r['columns']} rows={r['rows']} "
                          f"rowcount={r['rowcount']} lastrowid={r['lastrowid']}" for r in results) or "(none)"
        prompt = FILL_PROMPT.format(results=shown, sql=template, names=", ".join(names))
        reply = self.chat.chat([{"role": "user", "content": prompt}], max_tokens=self.max_tokens)
        match = re.search(r"\{.*\}", reply.content, re.DOTALL)
        values = loads_tolerant(match.group(0)) if match else None
        if not isinstance(values, dict) or any(k not in values for k in names):
            raise ValueError(f"could not fill placeholders {names} from the model's answer "
                             f"{reply.content[:200]!r}")
        return PLACEHOLDER.sub(lambda m: sql_literal(values[m.group(1)]) if m.group(1) in values
                               else m.group(0), template)

    def _record(self, out: ChainResult, n: int, sql: str, status: str, *, result: dict[str, Any] | None = None,
                error: str | None = None) -> None:
        entry: dict[str, Any] = {"step": n, "sql": sql, "status": status}
        if result is not None:
            entry["result"] = result
        if error is not None:
            entry["error"] = error
        if self.cube is not None:
            detail = json.dumps(result["rows"] if result and result["columns"] else
                                {"rowcount": result["rowcount"]} if result else error, default=str)
            memory = self.cube.add(
                f"ChatDB step {n} ({status}) for {out.request!r}: {sql}\n-> {detail[:2000]}",
                metadata={"chatdb_request": out.request_id, "step": n, "sql": sql, "status": status},
                tags=["chatdb"])
            entry["memory_id"] = memory.id
        out.steps.append(entry)
