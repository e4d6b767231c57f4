"""Mem-alpha for memos (Wang et al. 2025, "Mem-α: Learning Memory Construction via Reinforcement Learning").

A memory writer reads a stream of chunks and keeps a core paragraph plus semantic and episodic item
lists (:class:`MemAlphaMemory`, write-through to a MemCube) with tool calls (:mod:`.tools`). Policies:
:class:`PromptedPolicy` (any chat backend) and :class:`EndpointPolicy` (the released checkpoint behind an
OpenAI-compatible endpoint). The reward (:mod:`.reward`) is the paper's r_t = r_1 + r_2,t + β r_3 + γ r_4,t;
:class:`MemAlphaTrainer` trains a LoRA policy on the local model with GRPO (:mod:`memos.rl.grpo`).
"""

from memos_mem_alpha.answerer import MemoryAnswerer
from memos_mem_alpha.data import QA, Instance, load_instances, read_instances, split_chunks
from memos_mem_alpha.memory import MemAlphaMemory, approx_tokens
from memos_mem_alpha.policy import Decision, EndpointPolicy, Policy, PromptedPolicy, parse_qwen_calls
from memos_mem_alpha.reward import (
    LLMJudge,
    RewardWeights,
    RuleJudge,
    StepReward,
    compression,
    content_validity,
    qa_accuracy,
    qa_score,
    step_rewards,
    tool_success,
)
from memos_mem_alpha.rollout import Rollout, Scored, build, score
from memos_mem_alpha.tools import ALL_TOOLS, WRITE_TOOLS, ToolOutcome, execute
from memos_mem_alpha.train import MemAlphaTrainer

__all__ = ["ALL_TOOLS", "QA", "WRITE_TOOLS", "Decision", "EndpointPolicy", "Instance", "LLMJudge", "MemAlphaMemory",
           "MemAlphaTrainer",
           "MemoryAnswerer", "Policy", "PromptedPolicy", "RewardWeights", "Rollout", "RuleJudge", "Scored",
           "StepReward", "ToolOutcome", "approx_tokens", "build", "compression", "content_validity", "execute",
           "load_instances", "parse_qwen_calls", "qa_accuracy", "qa_score", "read_instances", "score",
           "split_chunks", "step_rewards", "tool_success"]
