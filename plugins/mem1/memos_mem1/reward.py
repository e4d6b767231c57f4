"""The MEM1 reward for multi-objective QA (Zhou et al. 2025, multi-objective tasks): the exact matches summed
over the sub-questions of a task.

The final ``<answer>`` holds the answers in question order, separated by ``;``. Each answer is
compared, after SQuAD normalisation (lower case, no punctuation, no articles), with the gold aliases of
its sub-question; every match scores 1, so a task of n questions scores 0..n. As in the authors'
evaluation code, an answer list whose length differs from the number of questions scores 0
(``strict_count=False`` scores the positions that are there instead). No answer scores 0.
Reference: ``compute_score`` in the authors' ``Mem1/inference/eval.py`` and ``compute_score_em`` in
``Mem1/train/verl/utils/reward_score/qa_multiple.py``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCT)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def split_answers(answer: str) -> list[str]:
    return [a.strip() for a in str(answer).split(";")]


def exact_match_sum(answer: str | None, golds: Sequence[Sequence[str]], *, strict_count: bool = True) -> float:
    """Σ_i EM(answer_i, golds_i) over the task's sub-questions (see the module docstring)."""
    if answer is None or not str(answer).strip():
        return 0.0
    answers = split_answers(answer)
    if strict_count and len(answers) != len(golds):
        return 0.0
    score = 0.0
    for pred, aliases in zip(answers, golds, strict=False):
        aliases = [aliases] if isinstance(aliases, str) else aliases
        if normalize_answer(pred) in {normalize_answer(g) for g in aliases}:
            score += 1.0
    return score


__all__ = ["exact_match_sum", "normalize_answer", "split_answers"]
