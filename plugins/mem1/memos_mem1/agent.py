"""The MEM1 agent loop (Zhou et al. 2025, "memory as part of reasoning") as a LangGraph
``StateGraph``::

    START → reason ─┬→ observe → reason ...        (<search>: the environment answers)
                    ├→ reason                       (no action parsed: told so, next turn)
                    └→ finish → END                 (<answer>, or max_turns reached)

Every turn the model sees a context of constant shape: the system instructions, the task, **its
previous turn only** (internal state + action) and the **latest observation** (with a turns-left hint);
everything older is pruned. It writes a new internal state ``<IS>...</IS>`` that must carry whatever it
still needs, and one action. The context therefore stays bounded however many turns are taken;
``report["turns"][i]["context_tokens"]`` measures it.

The internal states are memories of a MemCube when one is given: one memory per run, one version per
turn (``cube.history(report["state_id"])`` replays the agent's working memory). The graph state is
JSON-able, so any LangGraph checkpointer can save and resume a run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from memos.errors import InvalidInput
from memos.llm import ChatBackend, Message
from memos.telemetry import span
from memos_mem1.env import Environment
from memos_mem1.parse import parse_turn
from memos_mem1.reward import exact_match_sum

SYSTEM_PROMPT = """You answer questions by searching a collection of documents. You only ever see the \
questions, your previous turn and the result of its action: everything older is erased.
In every turn:
1. Write your internal state inside <IS> </IS>: what you have found so far for each question and what \
is still missing. It is all you will remember.
2. Then do exactly one action: <search>a query</search> to look something up, or, once you know every \
answer, <answer>answer 1; answer 2; ...</answer> with short answers in the order of the questions, \
separated by semicolons."""


class Mem1Config(BaseModel):
    max_turns: int = Field(6, ge=1)
    """Most model turns per task (the authors' inference loop allows 6)."""
    max_tokens: int = Field(256, ge=8)
    """Longest reply (internal state + action) per turn."""
    temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature of the model (0: greedy)."""
    observation_chars: int = Field(2000, ge=50)
    """An observation longer than this is cut (bounds the context)."""


class Mem1State(TypedDict, total=False):
    task: str
    questions: list[str]
    run_id: str
    turn: int
    previous: str  # the model's previous turn (internal state + action), as kept
    observation: str  # the latest observation (with the turns-left hint)
    internal_state: str
    state_id: str
    answer: str | None
    status: str  # running | answered | max_turns
    turns: list[dict[str, Any]]


def parse_questions(task: str | Sequence[str]) -> list[str]:
    """``"q1; q2; q3"`` (or a list) -> the sub-questions."""
    items = task.split(";") if isinstance(task, str) else list(task)
    questions = [str(q).strip() for q in items if str(q).strip()]
    if not questions:
        raise InvalidInput("the task holds no question", field="task")
    return questions


def task_text(questions: Sequence[str]) -> str:
    listed = "\n".join(f"({i}) {q}" for i, q in enumerate(questions, 1))
    return f"Answer these {len(questions)} questions:\n{listed}" if len(questions) > 1 else f"Answer: {questions[0]}"


def _approx_tokens(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


class MEM1Agent:
    """One MEM1 agent: ``chat`` reasons, ``env`` answers searches, ``cube`` (optional) keeps the states."""

    def __init__(self, chat: ChatBackend, env: Environment, *, cube: Any = None, config: Mem1Config | None = None,
                 count_tokens: Callable[[str], int] | None = None) -> None:
        self.chat = chat
        self.env = env
        self.cube = cube
        self.config = config or Mem1Config()
        self.count_tokens = count_tokens or _approx_tokens

    # ----------------------------------------------------------------------------- graph
    def build_graph(self, checkpointer: Any = None) -> Any:
        g = StateGraph(Mem1State)
        g.add_node("reason", self._reason)
        g.add_node("observe", self._observe)
        g.add_node("finish", self._finish)
        g.add_edge(START, "reason")
        g.add_conditional_edges("reason", self._route, ["observe", "reason", "finish"])
        g.add_edge("observe", "reason")
        g.add_edge("finish", END)
        return g.compile(checkpointer=checkpointer)

    def run(self, task: str | Sequence[str], *, golds: Sequence[Sequence[str]] | None = None,
            checkpointer: Any = None, thread_id: str | None = None) -> dict[str, Any]:
        """Run ``task`` (``"q1; q2"`` or a list of questions) to an answer or ``max_turns``.

        With ``golds`` (aliases per question) the report carries ``reward``: the summed exact match."""
        questions = parse_questions(task)
        if golds is not None and len(golds) != len(questions):
            raise InvalidInput(f"{len(golds)} gold answers for {len(questions)} questions", field="golds")
        cfg: dict[str, Any] = {"recursion_limit": 3 * self.config.max_turns + 10}
        if checkpointer is not None:
            cfg["configurable"] = {"thread_id": thread_id or uuid.uuid4().hex}
        with span("mem1.run", cube=getattr(self.cube, "name", None), items=len(questions)):
            state = self.build_graph(checkpointer).invoke(
                {"task": task_text(questions), "questions": questions, "run_id": uuid.uuid4().hex[:12], "turn": 0,
                 "previous": "", "observation": "", "internal_state": "", "answer": None, "status": "running",
                 "turns": []}, cfg)
        return self.report(state, golds)

    def report(self, state: Mem1State, golds: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
        turns = state.get("turns", [])
        out = {"status": state.get("status"), "answer": state.get("answer"), "questions": state.get("questions"),
               "run_id": state.get("run_id"), "state_id": state.get("state_id"),
               "internal_state": state.get("internal_state", ""), "turns": turns,
               "peak_context_tokens": max((t["context_tokens"] for t in turns), default=0)}
        if golds is not None:
            out["reward"] = exact_match_sum(state.get("answer"), golds)
        return out

    # --------------------------------------------------------------------------- context
    def context(self, state: Mem1State) -> list[Message]:
        """The pruned context of the next turn: system, task, previous turn, latest observation."""
        left = self.config.max_turns - state["turn"]
        hint = (f"[HINT]You have {left} turns left.[/HINT]" if left > 1
                else "[HINT]This is your last turn: you must answer now.[/HINT]")
        messages: list[Message] = [{"role": "system", "content": SYSTEM_PROMPT}]
        if not state.get("previous"):
            messages.append({"role": "user", "content": f"{state['task']}\n\n{hint}"})
            return messages
        messages.append({"role": "user", "content": state["task"]})
        messages.append({"role": "assistant", "content": state["previous"]})
        messages.append({"role": "user", "content": f"<information>\n{hint}\n{state['observation']}\n</information>"})
        return messages

    # ----------------------------------------------------------------------------- nodes
    def _reason(self, state: Mem1State) -> dict[str, Any]:
        messages = self.context(state)
        reply = self.chat.chat(messages, temperature=self.config.temperature, max_tokens=self.config.max_tokens)
        turn = parse_turn(reply.content)
        n = state["turn"] + 1
        internal = turn.state if turn.state is not None else turn.text
        update: dict[str, Any] = {"turn": n, "previous": turn.text, "internal_state": internal}
        if self.cube is not None and internal.strip():
            if state.get("state_id"):
                self.cube.update(state["state_id"], internal)
            else:
                update["state_id"] = self.cube.add(internal, metadata={"mem1_run": state["run_id"], "mem1": "state"},
                                                   tags=["mem1"]).id
        record: dict[str, Any] = {
            "turn": n, "context_tokens": self.count_tokens("\n".join(str(m["content"]) for m in messages)),
            "completion_tokens": self.count_tokens(turn.text), "state": internal,
            "action": {"type": turn.action.type, "content": turn.action.content} if turn.action else None}
        raw = reply.raw
        if raw is not None and hasattr(raw, "prompt_ids") and hasattr(raw, "token_ids"):
            record["prompt_ids"], record["completion_ids"] = list(raw.prompt_ids), list(raw.token_ids)
        update["turns"] = [*state["turns"], record]
        if turn.action is not None and turn.action.type == "answer":
            update.update(answer=turn.action.content, status="answered")
        elif n >= self.config.max_turns:
            update["status"] = "max_turns"
        elif turn.action is None:
            update["observation"] = ("No action found. Write your state in <IS> </IS>, then <search>query</search> "
                                     "or <answer>answers</answer>.")
        return update

    def _route(self, state: Mem1State) -> str:
        if state["status"] != "running":
            return "finish"
        last = state["turns"][-1]["action"]
        return "observe" if last is not None and last["type"] == "search" else "reason"

    def _observe(self, state: Mem1State) -> dict[str, Any]:
        query = state["turns"][-1]["action"]["content"]
        result = self.env.search(query)
        limit = self.config.observation_chars
        if len(result) > limit:
            result = result[:limit] + " [...]"
        turns = [*state["turns"][:-1], {**state["turns"][-1], "observation_tokens": self.count_tokens(result)}]
        return {"observation": result, "turns": turns}

    def _finish(self, state: Mem1State) -> dict[str, Any]:
        return {}


__all__ = ["SYSTEM_PROMPT", "MEM1Agent", "Mem1Config", "Mem1State", "parse_questions", "task_text"]
