"""GRPO training of the Mem-alpha memory writer on the local model (Wang et al. 2025).

Per training step: for each instance, ``group_size`` rollouts are sampled from the policy (a LoRA on
the frozen local model, :class:`memos.rl.LoraPolicy`); each rollout is scored by the frozen answerer;
every chunk step of every rollout becomes one sample (prompt = the memorising prompt with M_{t-1} and
c_t, completion = the policy's tool-call text) whose reward is that step's r_t, and samples are grouped
by instance for the group-relative advantage (the authors' verl setup: chunk samples carry their
instance's group id). The update itself is :meth:`memos.rl.LoraPolicy.step`, without KL (as the paper).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from memos.errors import InvalidInput
from memos.llm import LocalChat
from memos.rl import LoraPolicy, Sample
from memos_mem_alpha.answerer import MemoryAnswerer
from memos_mem_alpha.data import Instance
from memos_mem_alpha.memory import MemAlphaMemory
from memos_mem_alpha.policy import PromptedPolicy
from memos_mem_alpha.reward import Judge, RewardWeights, RuleJudge
from memos_mem_alpha.rollout import Rollout, Scored, build, score


class MemAlphaTrainer:
    def __init__(self, policy: LoraPolicy, answerer: MemoryAnswerer, *, group_size: int = 4,
                 temperature: float = 1.0, max_tokens: int = 96, judge: Judge | None = None,
                 weights: RewardWeights | None = None, metric: str = "contains", recent: int = 5,
                 style: str = "compact") -> None:
        """
        Args:
            policy: the trainable policy (its sampling and its updates).
            answerer: the frozen answerer of r_1 (e.g. ``MemoryAnswerer(LocalChat(engine))``).
            group_size: rollouts per instance (G).
            temperature: sampling temperature of the rollouts.
            max_tokens: longest reply of the policy per chunk.
            judge: the memory-type validity judge of r_4 (default: :class:`RuleJudge`).
            weights: reward weights (default: the released configuration).
            metric: QA metric of r_1 (``contains`` or ``exact``).
            recent: items of each list shown to the policy.
            style: the memorising prompt, ``compact`` (default: a quarter of the tokens, CPU-sized)
                or ``full`` (see :func:`~memos_mem_alpha.policy.memorise_messages`).
        """
        if group_size < 2:
            raise InvalidInput("group_size must be >= 2: advantages are relative to the group", field="group_size")
        self.policy = policy
        self.answerer = answerer
        self.group_size = group_size
        self.writer = PromptedPolicy(LocalChat(policy), temperature=temperature, max_tokens=max_tokens,
                                     style=style)
        self.judge = judge or RuleJudge()
        self.weights = weights or RewardWeights()
        self.metric = metric
        self.recent = recent

    def rollout(self, inst: Instance, seed: int = 0, *, greedy: bool = False) -> tuple[Rollout, Scored]:
        """One rollout of ``inst`` with the current policy, scored."""
        if not inst.questions:
            raise InvalidInput(f"instance {inst.id!r} has no questions to reward", field="questions")
        memory = MemAlphaMemory(count_tokens=self.policy.count_tokens, seed=seed)
        temperature = self.writer.temperature
        if greedy:
            self.writer.temperature = 0.0
        try:
            ro = build(self.writer, memory, inst.chunks, recent=self.recent)
        finally:
            self.writer.temperature = temperature
        return ro, score(ro, inst.questions, self.answerer, judge=self.judge, weights=self.weights,
                         metric=self.metric)

    def samples(self, inst: Instance, group: Sequence[tuple[Rollout, Scored]]) -> list[Sample]:
        out = []
        for ro, sc in group:
            for step, reward in zip(ro.steps, sc.rewards, strict=True):
                raw = step.decision.raw
                if raw is None or not raw.token_ids:
                    continue
                out.append(Sample(raw.prompt_ids, raw.token_ids, reward.total, inst.id))
        return out

    def step(self, instances: Sequence[Instance]) -> dict[str, Any]:
        """One GRPO update from ``group_size`` rollouts of each instance."""
        started = time.perf_counter()
        samples, scored = [], []
        for inst in instances:
            group = [self.rollout(inst, seed=g) for g in range(self.group_size)]
            scored += [sc for _, sc in group]
            samples += self.samples(inst, group)
        report = self.policy.step(samples)
        return {"step": report.step, "instances": [i.id for i in instances], **_summary(scored),
                "grpo": {k: v for k, v in asdict(report).items() if k != "advantages"},
                "seconds": round(time.perf_counter() - started, 3)}

    def evaluate(self, instances: Sequence[Instance]) -> dict[str, Any]:
        """Greedy rollouts of ``instances``: the policy's current rewards."""
        return _summary([self.rollout(inst, greedy=True)[1] for inst in instances])

    def train(self, instances: Sequence[Instance], steps: int, *, per_step: int = 1,
              on_step: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """``steps`` updates, each on the next ``per_step`` instances (cycling)."""
        if steps < 1 or per_step < 1 or not instances:
            raise InvalidInput("steps and per_step must be >= 1 and instances non-empty", field="steps")
        history = []
        for s in range(steps):
            batch = [instances[(s * per_step + k) % len(instances)] for k in range(per_step)]
            report = self.step(batch)
            history.append(report)
            if on_step is not None:
                on_step(report)
        return history


def _summary(scored: Sequence[Scored]) -> dict[str, Any]:
    rewards = [r.total for sc in scored for r in sc.rewards]
    return {"reward_mean": round(statistics.fmean(rewards), 6) if rewards else 0.0,
            "qa": round(statistics.fmean(sc.qa for sc in scored), 6),
            "tool": round(statistics.fmean(r.tool for sc in scored for r in sc.rewards), 6) if rewards else 0.0,
            "compression": round(statistics.fmean(sc.compression for sc in scored), 6),
            "content": round(statistics.fmean(r.content for sc in scored for r in sc.rewards), 6) if rewards else 0.0,
            "rollouts": len(scored)}


__all__ = ["MemAlphaTrainer"]
