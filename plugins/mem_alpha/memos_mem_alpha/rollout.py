"""Building a memory from chunks (one Mem-alpha rollout) and scoring it.

``build(policy, memory, chunks)``: for each chunk t the policy sees the rendered memory M_{t-1} and the
chunk c_t, and its write calls a_t^(1..K_t) are applied in order (Wang et al. 2025, the MDP of the method: M_t is
M_{t-1} after the K_t operations). ``score(rollout, questions, answerer)`` asks the frozen answerer the
instance's questions about the final memory and returns r_t for every step (:mod:`.reward`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memos.telemetry import span
from memos_mem_alpha.answerer import MemoryAnswerer
from memos_mem_alpha.data import QA
from memos_mem_alpha.memory import MemAlphaMemory
from memos_mem_alpha.policy import Decision
from memos_mem_alpha.reward import (
    Judge,
    RewardWeights,
    RuleJudge,
    StepReward,
    compression,
    qa_accuracy,
    step_rewards,
)
from memos_mem_alpha.tools import WRITE_TOOLS, ToolOutcome, execute

WRITE_NAMES = tuple(t["function"]["name"] for t in WRITE_TOOLS)


@dataclass
class ChunkStep:
    index: int
    chunk: str
    decision: Decision
    outcomes: list[ToolOutcome]

    def to_dict(self) -> dict[str, Any]:
        return {"chunk": self.index, "calls": [o.to_dict() for o in self.outcomes],
                "succeeded": sum(o.ok for o in self.outcomes), "text": self.decision.text}


@dataclass
class Rollout:
    memory: MemAlphaMemory
    steps: list[ChunkStep]
    chunk_tokens: int


@dataclass
class Scored:
    answers: list[str]
    qa: float
    compression: float
    memory_tokens: int
    chunk_tokens: int
    rewards: list[StepReward] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"qa": round(self.qa, 6), "compression": round(self.compression, 6),
                "memory_tokens": self.memory_tokens, "chunk_tokens": self.chunk_tokens, "answers": self.answers,
                "step_rewards": [r.to_dict() for r in self.rewards]}


def build(policy: Any, memory: MemAlphaMemory, chunks: Sequence[str], *, recent: int = 5,
          on_step: Callable[[ChunkStep], None] | None = None) -> Rollout:
    """Feed ``chunks`` to ``policy`` one by one, applying its write calls to ``memory``."""
    steps = []
    with span("mem_alpha.build", cube=getattr(memory.cube, "name", None), items=len(chunks)):
        for i, chunk in enumerate(chunks):
            view = memory.render(recent)
            if hasattr(policy, "decide"):
                decision = policy.decide(view, chunk)
            else:  # any object with act(memory_view, chunk) -> tool calls
                decision = Decision(policy.act(view, chunk), "")
            outcomes = [execute(memory, call, allowed=WRITE_NAMES) for call in decision.calls]
            step = ChunkStep(i, chunk, decision, outcomes)
            steps.append(step)
            if on_step is not None:
                on_step(step)
    return Rollout(memory, steps, sum(memory.count_tokens(c) for c in chunks))


def score(rollout: Rollout, questions: Sequence[QA], answerer: MemoryAnswerer, *, judge: Judge | None = None,
          weights: RewardWeights | None = None, metric: str = "contains") -> Scored:
    """Answer ``questions`` from the rollout's final memory and compute r_t for each of its steps."""
    with span("mem_alpha.score", items=len(questions)):
        answers = [answerer.answer(rollout.memory, q.question) for q in questions]
        qa = qa_accuracy(answers, [q.answer for q in questions], metric)
        memory_tokens = rollout.memory.total_tokens()
        r3 = compression(memory_tokens, rollout.chunk_tokens)
        rewards = step_rewards(qa, r3, [s.outcomes for s in rollout.steps], judge or RuleJudge(), weights)
    return Scored(answers, qa, r3, memory_tokens, rollout.chunk_tokens, rewards)


__all__ = ["ChunkStep", "Rollout", "Scored", "WRITE_NAMES", "build", "score"]
