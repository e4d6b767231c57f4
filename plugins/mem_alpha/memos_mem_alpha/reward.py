"""The Mem-alpha reward (Wang et al. 2025, the combined reward of the method) for chunk step t of a rollout

    r_t = r_1 + r_{2,t} + β r_3 + γ r_{4,t}

* r_1, **QA accuracy**: the mean score over the instance's questions of the answers a *frozen*
  answerer gives from the final memory (:class:`~.answerer.MemoryAnswerer`). The authors score with a
  per-dataset metric; the default here is theirs for SQuAD/HotpotQA-style data, containment of the gold
  answer in the prediction (``metric="exact"``: SQuAD-normalised exact match).
* r_{2,t}, **tool-call success**: successful calls / calls at step t (0 without calls); a duplicate
  insert that was skipped is not a success (as in the authors' release).
* r_3, **compression**: ``1 - l_m / l_c``, the final memory's tokens over all chunk tokens.
* r_{4,t}, **memory-type validity**: the mean, over step t's calls, of a judge's verdict that the text
  written fits its memory type (core: a real paragraph, not a placeholder; episodic: an event with its
  time; semantic: knowledge). As in the authors' release, every call counts and calls that write no
  content (delete) score 0; ``content_over="writes"`` averages over inserts and updates only.

β and γ default to 0.05 and 0.1, the configuration of the released checkpoint; every weight can be set.
The details follow the authors' release (``verl/workers/reward_manager/naive.py`` for the sum and r_3,
``memalpha/llm_agent/generation.py`` for r_2, ``memory_server.py`` for the r_4 judge and its averaging).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from memos.errors import InvalidInput
from memos.llm import ChatBackend, loads_tolerant
from memos_mem_alpha.tools import ToolOutcome


@dataclass(frozen=True)
class RewardWeights:
    qa: float = 1.0
    """Weight of r_1 (1 in the paper)."""
    tool: float = 1.0
    """Weight of r_2 (1 in the paper)."""
    compression: float = 0.05
    """β, weight of r_3."""
    content: float = 0.1
    """γ, weight of r_4."""
    content_over: str = "all"
    """r_4 averages over ``"all"`` calls of the step (the authors' release) or only the ``"writes"``."""


@dataclass(frozen=True)
class StepReward:
    """The components of one chunk step's reward and their weighted sum ``total``."""

    qa: float
    tool: float
    compression: float
    content: float
    total: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in str(text).lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def qa_score(prediction: str, gold: str | Sequence[str], metric: str = "contains") -> float:
    """1.0 if ``prediction`` answers ``gold`` (any of several aliases), else 0.0.

    ``contains``: the lower-cased gold occurs in the lower-cased prediction; ``exact``: the normalised
    strings are equal."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    if metric == "contains":
        pred = " ".join(str(prediction).lower().split())
        return 1.0 if any(" ".join(g.lower().split()) in pred for g in golds if g.strip()) else 0.0
    if metric == "exact":
        return 1.0 if any(normalize_answer(prediction) == normalize_answer(g) for g in golds) else 0.0
    raise InvalidInput(f"metric must be contains or exact, not {metric!r}", field="metric")


def qa_accuracy(predictions: Sequence[str], golds: Sequence[str | Sequence[str]], metric: str = "contains") -> float:
    """r_1: the mean of :func:`qa_score` over the questions."""
    if len(predictions) != len(golds):
        raise InvalidInput("one prediction per question is needed", field="predictions")
    if not golds:
        raise InvalidInput("no questions to score", field="questions")
    return sum(qa_score(p, g, metric) for p, g in zip(predictions, golds, strict=True)) / len(golds)


def tool_success(outcomes: Sequence[ToolOutcome]) -> float:
    """r_{2,t}: the share of step t's calls that succeeded (0 when it made none)."""
    return sum(o.ok for o in outcomes) / len(outcomes) if outcomes else 0.0


def compression(memory_tokens: int, chunk_tokens: int) -> float:
    """r_3 = 1 - l_m / l_c."""
    if chunk_tokens <= 0:
        raise InvalidInput("the chunks hold no tokens", field="chunk_tokens")
    return 1.0 - memory_tokens / chunk_tokens


class Judge(Protocol):
    def valid(self, memory_type: str, content: str) -> bool: ...


_TIME = re.compile(
    r"\b(\d{1,2}[:h]\d{2}|\d{4}-\d{2}(-\d{2})?|\d{1,2}/\d{1,2}(/\d{2,4})?|(19|20)\d{2}|"
    r"jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sep(tember)?|oct(ober)?|nov(ember)?|"
    r"dec(ember)?|monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|yesterday|tomorrow|"
    r"morning|afternoon|evening|night|week|month|year|ago|last|timestamp|session|day \d+|t=?\d+)\b", re.I)
_PLACEHOLDER = re.compile(r"^\s*(here (we|i) (save|store|keep)|this is (the )?(a )?(summary|placeholder))", re.I)


class RuleJudge:
    """An offline stand-in for the paper's LLM judge, following the same criteria: empty text is
    invalid; core is invalid when it talks about "core memory" or is a placeholder; episodic needs time
    information; semantic takes any other knowledge."""

    def valid(self, memory_type: str, content: str) -> bool:
        text = str(content or "").strip()
        if not text:
            return False
        if memory_type == "core":
            return "core memory" not in text.lower() and not _PLACEHOLDER.match(text)
        if memory_type == "episodic":
            return bool(_TIME.search(text))
        return memory_type == "semantic"


JUDGE_PROMPTS = {
    "core": "Core memory is one paragraph about the user (personality, preferences, goals) or a summary of "
            "what they read, or rules learnt from examples. It is INVALID if it talks about itself (e.g. "
            "'the core memory has been updated') or is a placeholder that does not state its content "
            "(e.g. 'here we save the summary'). Otherwise it is valid.",
    "semantic": "Semantic memory holds knowledge: facts about someone or something, definitions, how-to "
                "knowledge, established findings. Anything that is neither a profile of the user nor a "
                "timed event is semantic.",
    "episodic": "Episodic memory holds experiences or events, with when they happened and what happened.",
}


class LLMJudge:
    """The paper's judge: an LLM decides whether ``content`` is valid for its memory type."""

    def __init__(self, chat: ChatBackend, *, max_tokens: int = 128) -> None:
        self.chat = chat
        self.max_tokens = max_tokens

    def valid(self, memory_type: str, content: str) -> bool:
        if memory_type not in JUDGE_PROMPTS or not str(content or "").strip():
            return False
        system = (f"You check the quality of one memory entry. {JUDGE_PROMPTS[memory_type]}\n"
                  'Answer only with JSON: {"valid": true or false, "issues": [...], "explanation": "..."}')
        reply = self.chat.chat([{"role": "system", "content": system},
                                {"role": "user", "content": f"The {memory_type} memory entry:\n\n{content}"}],
                               temperature=0.0, max_tokens=self.max_tokens).content
        match = re.search(r"\{.*\}", reply, re.S)
        verdict = loads_tolerant(match.group(0)) if match else None
        if isinstance(verdict, dict):
            value = verdict.get("valid", verdict.get("VALID"))
            return value is True or str(value).lower() == "true"
        return False  # an unreadable verdict counts as invalid, as in the authors' release


def content_validity(outcomes: Sequence[ToolOutcome], judge: Judge, over: str = "all") -> float:
    """r_{4,t}: the mean verdict over step t's calls (see the module docstring)."""
    if over not in ("all", "writes"):
        raise InvalidInput(f"content_over must be all or writes, not {over!r}", field="content_over")
    scored = [o for o in outcomes if over == "all" or o.content() is not None]
    if not scored:
        return 0.0
    verdicts = []
    for o in scored:
        written = o.content()
        verdicts.append(1.0 if written is not None and judge.valid(*written) else 0.0)
    return sum(verdicts) / len(verdicts)


def step_rewards(qa: float, compression_: float, steps: Sequence[Sequence[ToolOutcome]], judge: Judge,
                 weights: RewardWeights | None = None) -> list[StepReward]:
    """r_t for every chunk step of a rollout, from its rollout-level r_1 and r_3 and each step's calls."""
    w = weights or RewardWeights()
    out = []
    for outcomes in steps:
        r2 = tool_success(outcomes)
        r4 = content_validity(outcomes, judge, w.content_over)
        total = w.qa * qa + w.tool * r2 + w.compression * compression_ + w.content * r4
        out.append(StepReward(qa=qa, tool=r2, compression=compression_, content=r4, total=total))
    return out


__all__ = ["JUDGE_PROMPTS", "Judge", "LLMJudge", "RewardWeights", "RuleJudge", "StepReward", "compression",
           "content_validity", "normalize_answer", "qa_accuracy", "qa_score", "step_rewards", "tool_success"]

