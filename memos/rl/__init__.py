"""Reinforcement learning of small policies on the local model (used by method plugins).

:mod:`memos.rl.grpo`: group-relative policy optimisation of a LoRA adapter on a frozen copy of the
engine's model; the policy doubles as a chat backend (``LocalChat(policy)``) so agents roll out with it.
Torch is imported only when a policy is built.
"""

from memos.rl.grpo import GRPOSettings, GRPOStep, LoraPolicy, Sample, Sampled, group_advantages

__all__ = ["GRPOSettings", "GRPOStep", "LoraPolicy", "Sample", "Sampled", "group_advantages"]
