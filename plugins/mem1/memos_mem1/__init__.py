"""MEM1 for memos (Zhou et al. 2025, "MEM1: Learning to Synergize Memory and Reasoning for Efficient
Long-Horizon Agents").

:class:`MEM1Agent` is a LangGraph loop whose every turn sees only the task, its previous internal state
and action, and the latest observation; the internal states are versions of one memory in a MemCube.
Environments: :class:`CorpusEnvironment` (BM25 over a local folder; the plugin ships a small corpus) and
:class:`ScriptedEnvironment`. Reward: :func:`exact_match_sum`. :class:`MEM1Trainer` trains a LoRA policy
on the local model with GRPO over per-turn samples (:mod:`memos.rl.grpo`).
"""

from memos_mem1.agent import SYSTEM_PROMPT, MEM1Agent, Mem1Config, parse_questions, task_text
from memos_mem1.env import CorpusEnvironment, Environment, ScriptedEnvironment, default_corpus
from memos_mem1.parse import Action, Turn, parse_turn
from memos_mem1.reward import exact_match_sum, normalize_answer
from memos_mem1.train import MEM1Trainer, Task, load_tasks, turn_samples

__all__ = ["SYSTEM_PROMPT", "Action", "CorpusEnvironment", "Environment", "MEM1Agent", "MEM1Trainer", "Mem1Config",
           "ScriptedEnvironment", "Task", "Turn", "default_corpus", "exact_match_sum", "load_tasks",
           "normalize_answer", "parse_questions", "parse_turn", "task_text", "turn_samples"]
