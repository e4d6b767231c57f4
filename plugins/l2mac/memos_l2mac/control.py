"""The L2MAC control unit (Holt et al. 2024) as a LangGraph ``StateGraph``.

::

    START → plan ─┬→ step ─┬→ tools ─┬→ check ─→ step | summarise
                  │        │         ├→ step | summarise
                  │        ├→ step   └→ finish          (last instruction complete)
                  │        ├→ summarise ─→ step | finish (context over budget: summarise, restart the step)
                  └→ finish└→ finish                     (call / turn limits)

* ``plan``: the LLM writes the prompt program; it becomes the instruction registry (a memory in the cube).
* ``step``: one LLM turn for the current instruction. Every instruction starts from a fresh context holding
  the task, the file list and the previous step's summary (and, after a restart, the progress summary).
* ``tools``: write_file / read_file / delete_file / run_file / run_tests / mark_step_complete. Files are
  memories in the cube (:mod:`memos_l2mac.files`). Completing a step runs the checker first; the step
  only advances when it passes.
* ``check``: after every write, py_compile + pytest in a sandbox; the result is the next message.
* ``summarise``: when the context estimate exceeds the budget, the LLM summarises the progress and the
  step restarts from a fresh context (at most ``max_restarts`` times).

The state holds only JSON-able values (file contents live in the cube), so any LangGraph checkpointer can
save a run and ``resume`` continues it after a crash.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from memos.errors import InvalidInput, MemoryNotFound
from memos.llm import ChatBackend, loads_tolerant
from memos_l2mac.config import L2MACConfig
from memos_l2mac.files import CubeFiles
from memos_l2mac.sandbox import check, run_in_sandbox, run_tests, safe_path


class RunState(TypedDict, total=False):
    task: str
    run_id: str
    registry_id: str
    instructions: list[str]
    step: int  # index of the current instruction
    messages: list[dict[str, str]]  # the current step's context
    pending: list[dict[str, Any]]  # tool calls of the last reply
    files: dict[str, str]  # path -> memory id in the cube
    summaries: list[str]  # one per completed instruction
    progress: str  # summary of the current step before a restart
    restarts: int
    step_turns: int
    llm_calls: int
    wrote: bool
    overflow: bool
    status: str  # running | done | no_plan | max_llm_calls | max_turns | max_restarts
    events: list[dict[str, Any]]


def _tool(name: str, description: str, **params: str) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {k: {"type": "string", "description": v}
                                                        for k, v in params.items()},
                       "required": list(params)}}}


TOOLS = [
    _tool("write_file", "Create or overwrite a file.", path="relative path", content="the whole file"),
    _tool("read_file", "Read a file.", path="relative path"),
    _tool("delete_file", "Delete a file.", path="relative path"),
    _tool("run_file", "Run a Python file and see its output.", path="relative path"),
    _tool("run_tests", "Run pytest over all files."),
    _tool("mark_step_complete", "Finish the current instruction (the checker must pass).",
          summary="what was done, for the next step"),
]
TOOL_NAMES = [t["function"]["name"] for t in TOOLS]

PLAN_PROMPT = """You are the planner of an automatic computer that writes code.
Break the user's task into a short list of concrete instructions, each small enough for one step
(write or fix a few files). Include writing pytest tests. Answer with a JSON list of strings."""

STEP_PROMPT = """You execute ONE instruction of a larger program that writes code.
Files persist between steps; you only see the file list, read a file with read_file when you need it.
After each write, a checker compiles the files and runs the tests, and tells you the errors.
When the instruction is done and the checker passes, call mark_step_complete with a short summary."""

SUMMARY_PROMPT = """The context of this step is full. Summarise the progress on the instruction so far:
what files were written, what works, what errors remain and what to do next. Be brief."""


def estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """A model-free estimate: the larger of the word count and characters/4, plus 4 per message."""
    total = 0
    for m in messages:
        text = str(m.get("content", ""))
        total += max(len(text.split()), math.ceil(len(text) / 4)) + 4
    return total


def parse_instructions(text: str) -> list[str]:
    """The prompt program: a JSON list (of strings or {"instruction": ...}), else numbered/bulleted lines."""
    for match in re.finditer(r"\[.*\]", text, re.DOTALL):
        items = loads_tolerant(match.group(0))
        if isinstance(items, list) and items:
            out = [str(i.get("instruction") or i.get("step") or i.get("description") or "") if isinstance(i, dict)
                   else str(i) for i in items]
            out = [o.strip() for o in out if o and o.strip()]
            if out:
                return out
    lines = [re.sub(r"^\s*(?:\d+[.):]|[-*•])\s*", "", line).strip()
             for line in text.splitlines() if re.match(r"^\s*(?:\d+[.):]|[-*•])\s+\S", line)]
    if lines:
        return lines
    return [text.strip()] if text.strip() else []


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


class L2MAC:
    """One control unit: ``chat`` writes, ``cube`` keeps the registry and the files."""

    def __init__(self, chat: ChatBackend, cube: Any, config: L2MACConfig | None = None) -> None:
        self.chat = chat
        self.cube = cube
        self.config = config or L2MACConfig()

    # ------------------------------------------------------------------------- graph
    def build_graph(self, checkpointer: Any = None, **compile_kwargs: Any) -> Any:
        g = StateGraph(RunState)
        g.add_node("plan", self._plan)
        g.add_node("step", self._step)
        g.add_node("tools", self._tools)
        g.add_node("check", self._check)
        g.add_node("summarise", self._summarise)
        g.add_node("finish", self._finish)
        g.add_edge(START, "plan")
        g.add_conditional_edges("plan", lambda s: "step" if s["status"] == "running" else "finish",
                                ["step", "finish"])
        g.add_conditional_edges("step", self._after_step, ["tools", "step", "summarise", "finish"])
        g.add_conditional_edges("tools", self._after_tools, ["check", "step", "summarise", "finish"])
        g.add_conditional_edges("check", self._after_check, ["step", "summarise"])
        g.add_conditional_edges("summarise", lambda s: "step" if s["status"] == "running" else "finish",
                                ["step", "finish"])
        g.add_edge("finish", END)
        return g.compile(checkpointer=checkpointer, **compile_kwargs)

    def run_config(self, thread_id: str | None = None) -> dict[str, Any]:
        c = self.config
        limit = 6 * (c.max_llm_calls + c.max_instructions * (c.max_restarts + 1)) + 20
        cfg: dict[str, Any] = {"recursion_limit": limit}
        if thread_id is not None:
            cfg["configurable"] = {"thread_id": thread_id}
        return cfg

    def run(self, task: str, *, checkpointer: Any = None, thread_id: str | None = None) -> dict[str, Any]:
        """Run ``task`` to the end; with a checkpointer, every super-step is saved under ``thread_id``."""
        if not isinstance(task, str) or not task.strip():
            raise InvalidInput("the task is empty", field="task")
        graph = self.build_graph(checkpointer)
        if checkpointer is not None and thread_id is None:
            thread_id = uuid.uuid4().hex
        state = graph.invoke({"task": task}, self.run_config(thread_id))
        return self.report(state)

    def resume(self, checkpointer: Any, thread_id: str) -> dict[str, Any]:
        """Continue a saved run from its last checkpoint (e.g. after the model or the process failed)."""
        graph = self.build_graph(checkpointer)
        state = graph.invoke(None, self.run_config(thread_id))
        return self.report(state)

    def report(self, state: RunState) -> dict[str, Any]:
        files = {}
        for path, mid in (state.get("files") or {}).items():
            m = self.cube.get(mid)
            files[path] = {"id": mid, "version": m.version, "text": m.text}
        return {"status": state.get("status"), "run_id": state.get("run_id"), "registry_id": state.get("registry_id"),
                "instructions": state.get("instructions", []), "completed": state.get("step", 0),
                "summaries": state.get("summaries", []), "files": files, "llm_calls": state.get("llm_calls", 0),
                "events": state.get("events", [])}

    # ------------------------------------------------------------------------- nodes
    def _plan(self, state: RunState) -> dict[str, Any]:
        run_id = state.get("run_id") or uuid.uuid4().hex[:12]
        reply = self.chat.chat([{"role": "system", "content": PLAN_PROMPT},
                                {"role": "user", "content": state["task"]}], max_tokens=self.config.max_tokens)
        instructions = parse_instructions(reply.content)[: self.config.max_instructions]
        update: dict[str, Any] = {
            "run_id": run_id, "instructions": instructions, "step": 0, "messages": [], "pending": [], "files": {},
            "summaries": [], "progress": "", "restarts": 0, "step_turns": 0, "llm_calls": 0, "wrote": False,
            "overflow": False, "status": "running" if instructions else "no_plan",
            "events": [{"node": "plan", "instructions": len(instructions)}]}
        if instructions:
            registry = self.cube.add("\n".join(f"{i}. {ins}" for i, ins in enumerate(instructions, 1)),
                                     metadata={"l2mac_run": run_id, "l2mac": "registry", "task": state["task"][:500]},
                                     tags=["l2mac-registry"])
            update["registry_id"] = registry.id
        return update

    def _fresh_context(self, state: RunState) -> list[dict[str, str]]:
        i, instructions = state["step"], state["instructions"]
        files = sorted(state.get("files") or {})
        previous = state["summaries"][-1] if state.get("summaries") else "(this is the first step)"
        body = (f"Task: {state['task']}\n\nFiles: {', '.join(files) if files else '(none yet)'}\n\n"
                f"Summary of the previous step: {previous}\n\n")
        if state.get("progress"):
            body += f"Progress on this instruction before the context was reset: {state['progress']}\n\n"
        body += f"Current instruction ({i + 1}/{len(instructions)}): {instructions[i]}"
        return [{"role": "system", "content": STEP_PROMPT}, {"role": "user", "content": body}]

    def _step(self, state: RunState) -> dict[str, Any]:
        c = self.config
        if state["llm_calls"] >= c.max_llm_calls:
            return {"status": "max_llm_calls", "pending": []}
        if state["step_turns"] >= c.max_turns_per_step:
            return {"status": "max_turns", "pending": []}
        messages = list(state.get("messages") or self._fresh_context(state))
        if estimate_tokens(messages) > c.context_budget_tokens:
            return {"messages": messages, "overflow": True, "pending": []}
        reply = self.chat.chat(messages, tools=TOOLS, max_tokens=c.max_tokens)
        messages.append({"role": "assistant", "content": reply.content})
        pending = [{"name": call.name, "arguments": dict(call.arguments)} for call in reply.tool_calls]
        if not pending:
            messages.append({"role": "user", "content": "No tool call found. Call one of the tools "
                             f"({', '.join(TOOL_NAMES)}); call mark_step_complete when the instruction is done."})
        return {"messages": messages, "pending": pending, "overflow": False, "llm_calls": state["llm_calls"] + 1,
                "step_turns": state["step_turns"] + 1,
                "events": [*state["events"], {"node": "step", "step": state["step"] + 1,
                                              "tools": [p["name"] for p in pending]}]}

    def _after_step(self, state: RunState) -> str:
        if state["status"] != "running":
            return "finish"
        if state.get("overflow"):
            return "summarise"
        return "tools" if state.get("pending") else "step"

    def _tools(self, state: RunState) -> dict[str, Any]:
        files = CubeFiles(self.cube, state["run_id"])
        ids = dict(state.get("files") or {})
        messages = list(state["messages"])
        events = list(state["events"])
        update: dict[str, Any] = {"pending": [], "wrote": False}
        limit, t = self.config.output_chars, self.config.time_limit_s
        for call in state.get("pending") or []:
            name, args = call["name"], call["arguments"]
            try:
                if name == "write_file":
                    ids, version = files.write(ids, str(args.get("path", "")), str(args.get("content", "")))
                    out = f"wrote {safe_path(str(args['path']))} (version {version})"
                    update["wrote"] = True
                    events.append({"node": "tools", "tool": name, "path": safe_path(str(args["path"])),
                                   "version": version})
                elif name == "read_file":
                    out = files.read(ids, str(args.get("path", "")))
                elif name == "delete_file":
                    ids = files.delete(ids, str(args.get("path", "")))
                    out = f"deleted {args['path']}"
                elif name == "run_file":
                    path = safe_path(str(args.get("path", "")))
                    if path not in ids:
                        raise KeyError(path)
                    res = run_in_sandbox(files.contents(ids), [path], t)
                    out = f"exit code {res.returncode}{' (timed out)' if res.timed_out else ''}\n{res.output}"
                elif name == "run_tests":
                    res = run_tests(files.contents(ids), t)
                    out = ("tests pass\n" if res.ok else "tests failed\n") + res.output
                elif name == "mark_step_complete":
                    res = check(files.contents(ids), t)
                    if not res.ok:
                        out = "The step is not complete: the checker fails.\n" + res.output
                    else:
                        summaries = [*state["summaries"], str(args.get("summary", "")).strip() or "(no summary)"]
                        events.append({"node": "tools", "tool": name, "step": state["step"] + 1})
                        done = state["step"] + 1 >= len(state["instructions"])
                        update.update({"summaries": summaries, "step": state["step"] + 1, "messages": [],
                                       "progress": "", "restarts": 0, "step_turns": 0, "files": ids,
                                       "wrote": False, "events": events,
                                       "status": "done" if done else "running"})
                        return update
                else:
                    out = f"unknown tool {name!r}; use one of {', '.join(TOOL_NAMES)}"
            except KeyError as exc:
                out = f"error: no file {exc.args[0]!r}; files: {', '.join(sorted(ids)) or '(none)'}"
            except (InvalidInput, MemoryNotFound) as exc:
                out = f"error: {exc.message}"
            messages.append({"role": "user", "content": f"Tool result ({name}):\n{_clip(out, limit)}"})
        update.update({"messages": messages, "files": ids, "events": events})
        return update

    def _over_budget(self, state: RunState) -> bool:
        return estimate_tokens(state.get("messages") or []) > self.config.context_budget_tokens

    def _after_tools(self, state: RunState) -> str:
        if state["status"] != "running":
            return "finish"
        if state.get("wrote") and self.config.check_after_write:
            return "check"
        return "summarise" if self._over_budget(state) else "step"

    def _check(self, state: RunState) -> dict[str, Any]:
        res = check(CubeFiles(self.cube, state["run_id"]).contents(state["files"]), self.config.time_limit_s)
        verdict = "all files compile and the tests pass" if res.ok else "errors found, fix them"
        msg = f"Checker: {verdict}.\n{_clip(res.output, self.config.output_chars)}"
        return {"messages": [*state["messages"], {"role": "user", "content": msg}], "wrote": False,
                "events": [*state["events"], {"node": "check", "step": state["step"] + 1, "ok": res.ok}]}

    def _after_check(self, state: RunState) -> str:
        return "summarise" if self._over_budget(state) else "step"

    def _summarise(self, state: RunState) -> dict[str, Any]:
        restarts = state["restarts"] + 1
        events = [*state["events"], {"node": "summarise", "step": state["step"] + 1, "restart": restarts}]
        if restarts > self.config.max_restarts:
            return {"status": "max_restarts", "events": events, "overflow": False}
        # what fits: the instruction, then the newest messages within the budget
        budget = self.config.context_budget_tokens - estimate_tokens([{"content": SUMMARY_PROMPT}]) - 64
        head, tail = state["messages"][:2], []
        for m in reversed(state["messages"][2:]):
            if estimate_tokens([*head, m, *tail]) > budget:
                break
            tail.insert(0, m)
        shown = "\n\n".join(f"{m['role']}: {_clip(str(m['content']), 4 * budget // 3)}" for m in head[1:] + tail)
        reply = self.chat.chat([{"role": "system", "content": SUMMARY_PROMPT},
                                {"role": "user", "content": _clip(shown, 4 * max(budget, 16))}],
                               max_tokens=self.config.max_tokens)
        return {"restarts": restarts, "progress": reply.content.strip(), "messages": [], "overflow": False,
                "events": events}

    def _finish(self, state: RunState) -> dict[str, Any]:
        return {"events": [*state["events"], {"node": "finish", "status": state["status"]}]}


def replay(cube: Any, report: dict[str, Any]) -> dict[str, list[str]]:
    """Every version of every file of a run, oldest first: ``{path: [text_v1, text_v2, ...]}``."""
    return {path: [m.text for m in cube.history(f["id"])] for path, f in report["files"].items()}


__all__ = ["L2MAC", "TOOLS", "RunState", "estimate_tokens", "parse_instructions", "replay"]
