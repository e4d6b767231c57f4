"""GRPO training of the MEM1 agent on the local model.

Zhou et al. 2025 ("masked trajectory") train on one sequence per rollout in which a 2-D attention
mask makes every turn see only the context it really had, and an information mask keeps the
environment's tokens out of the loss. Training per turn is the same computation written out: each turn
of a rollout is one sample whose prompt is exactly the pruned context the model saw and whose completion
is what it wrote (internal state + action, generation stopped after ``</search>`` / ``</answer>``); the
observation only ever appears in a later turn's prompt, so it is never in the loss. Every turn of a
rollout gets the rollout's reward (the summed exact match of its final answer) and the group is the
task, for the group-relative advantage (:meth:`memos.rl.LoraPolicy.step`). The paper optimises with PPO
and a critic; GRPO replaces the critic by the group baseline, as the issue for this plugin asks.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from memos.errors import InvalidInput
from memos.llm import LocalChat
from memos.rl import LoraPolicy, Sample
from memos_mem1.agent import MEM1Agent, Mem1Config
from memos_mem1.env import Environment

STOP = ("</search>", "</answer>")


@dataclass(frozen=True)
class Task:
    id: str
    questions: tuple[str, ...]
    answers: tuple[tuple[str, ...], ...]


def load_tasks(path: str | Path | None = None) -> list[Task]:
    """Multi-objective tasks ``[{"id", "questions": [...], "answers": [[aliases], ...]}]`` from ``path``, or
    the plugin's own (over its own corpus)."""
    if path is None:
        text = resources.files("memos_mem1").joinpath("data/tasks.json").read_text(encoding="utf-8")
    else:
        if not Path(path).is_file():
            raise InvalidInput(f"no such file: {path}", field="tasks")
        text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"tasks file is not JSON: {exc}", field="tasks") from exc
    tasks = []
    for i, t in enumerate(data if isinstance(data, list) else []):
        qs, ans = t.get("questions") if isinstance(t, dict) else None, t.get("answers") if isinstance(t, dict) else None
        if not qs or not isinstance(ans, list) or len(ans) != len(qs):
            raise InvalidInput("a task is {'questions': [...], 'answers': [[aliases] per question]}", field="tasks")
        tasks.append(Task(str(t.get("id") or f"task-{i}"), tuple(map(str, qs)),
                          tuple(tuple([a] if isinstance(a, str) else map(str, a)) for a in ans)))
    if not tasks:
        raise InvalidInput("no tasks", field="tasks")
    return tasks


def turn_samples(group: str, reports: Sequence[dict[str, Any]]) -> list[Sample]:
    """One sample per turn of every rollout report: prompt = the pruned context the model saw, completion =
    the tokens it wrote (state + action), reward = the rollout's reward. Observations are only ever in a
    later turn's prompt, never in a completion, so they stay out of the loss."""
    out = []
    for rep in reports:
        for turn in rep["turns"]:
            if turn.get("prompt_ids") and turn.get("completion_ids"):
                out.append(Sample(tuple(turn["prompt_ids"]), tuple(turn["completion_ids"]), float(rep["reward"]),
                                  group))
    return out


class MEM1Trainer:
    def __init__(self, policy: LoraPolicy, env: Environment, *, group_size: int = 4,
                 config: Mem1Config | None = None, temperature: float = 1.0) -> None:
        """
        Args:
            policy: the trainable policy; its generation is set to stop after an action's closing tag.
            env: the search environment.
            group_size: rollouts per task (G).
            config: the agent's settings (turns, reply length); rollouts sample at ``temperature``.
        """
        if group_size < 2:
            raise InvalidInput("group_size must be >= 2: advantages are relative to the group", field="group_size")
        policy.stop_strings = STOP
        self.policy = policy
        self.env = env
        self.group_size = group_size
        self.config = (config or Mem1Config()).model_copy(update={"temperature": temperature})
        self.agent = MEM1Agent(LocalChat(policy), env, config=self.config, count_tokens=policy.count_tokens)

    def rollout(self, task: Task, *, greedy: bool = False) -> dict[str, Any]:
        agent = self.agent
        if greedy:
            greedy_config = self.config.model_copy(update={"temperature": 0.0})
            agent = MEM1Agent(LocalChat(self.policy), self.env, config=greedy_config,
                              count_tokens=self.policy.count_tokens)
        return agent.run(list(task.questions), golds=[list(a) for a in task.answers])

    def samples(self, task: Task, reports: Sequence[dict[str, Any]]) -> list[Sample]:
        return turn_samples(task.id, reports)

    def step(self, tasks: Sequence[Task]) -> dict[str, Any]:
        started = time.perf_counter()
        samples, reports = [], []
        for task in tasks:
            group = [self.rollout(task) for _ in range(self.group_size)]
            reports += group
            samples += self.samples(task, group)
        grpo = self.policy.step(samples)
        return {"step": grpo.step, "tasks": [t.id for t in tasks], **_summary(reports),
                "grpo": {k: v for k, v in asdict(grpo).items() if k != "advantages"},
                "seconds": round(time.perf_counter() - started, 3)}

    def evaluate(self, tasks: Sequence[Task]) -> dict[str, Any]:
        return _summary([self.rollout(t, greedy=True) for t in tasks])

    def train(self, tasks: Sequence[Task], steps: int, *, per_step: int = 1,
              on_step: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        if steps < 1 or per_step < 1 or not tasks:
            raise InvalidInput("steps and per_step must be >= 1 and tasks non-empty", field="steps")
        history = []
        for s in range(steps):
            report = self.step([tasks[(s * per_step + k) % len(tasks)] for k in range(per_step)])
            history.append(report)
            if on_step is not None:
                on_step(report)
        return history


def _summary(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"reward_mean": round(statistics.fmean(r["reward"] for r in reports), 6),
            "answered": sum(r["status"] == "answered" for r in reports), "rollouts": len(reports),
            "turns_mean": round(statistics.fmean(len(r["turns"]) for r in reports), 3),
            "peak_context_tokens": max(r["peak_context_tokens"] for r in reports)}


__all__ = ["STOP", "MEM1Trainer", "Task", "load_tasks", "turn_samples"]
