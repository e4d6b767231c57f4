"""What a few CPU GRPO steps do: the shared harness, the Mem-alpha writer and the MEM1 agent.

    python benchmarks/policies.py --json
    -> {"model", "threads", "harness": {...}, "mem_alpha": {...}, "mem1": {...}}

Every policy is a LoRA on the frozen SmolLM2-135M-Instruct (``memos.rl.LoraPolicy``), trained with GRPO
on this machine's CPU. Nothing here measures paper-level accuracy: a 135M model and a handful of steps
cannot get there. The figures say what the machinery does in a few steps, and what a step costs.

* ``harness``: a toy reward the base model sometimes earns -- 1 if a reply to "Name a colour." says
  "blue" -- to show the update direction is right: ``reward_before`` / ``reward_after`` are the share of
  ``--eval-samples`` sampled replies (fixed seeds) that earn it before and after ``--harness-steps``
  updates of ``--harness-group`` rollouts each.
* ``mem_alpha``: the paper's reward r_t = r_1 + r_2,t + 0.05 r_3 + 0.1 r_4,t (frozen answerer: the same
  local model without the adapter; rule-based validity judge) on the plugin's training instances, the
  compact memorising prompt. ``reward_before`` / ``reward_after``: mean r_t of greedy rollouts of the
  evaluation instances; ``train_rewards``: mean sampled r_t of each step; ``skipped_steps``: updates
  without signal (every rollout of a group scored the same).
* ``mem1``: the paper's reward (exact match summed over the 2 sub-questions) on the plugin's own corpus
  and tasks; same fields, plus ``peak_context_tokens`` (largest context of any turn).
* ``s_per_step``: wall seconds per GRPO step (rollouts + scoring + update), mean over the steps.

On a shared CPU the seconds depend on the load (``--threads 1`` is often fastest under contention).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from typing import Any


def _engine(models_dir: str) -> Any:
    from memos.engines.registry import get_engine

    return get_engine("local", models_dir)


def harness(engine: Any, steps: int, group: int, eval_samples: int) -> dict[str, Any]:
    from memos.llm import LocalChat
    from memos.rl import GRPOSettings, LoraPolicy, Sample

    policy = LoraPolicy(engine, GRPOSettings(rank=8, alpha=16.0, lr=2e-3, seed=0))
    chat = LocalChat(policy)
    msgs = [{"role": "user", "content": "Name a colour."}]

    def reward(text: str) -> float:
        return 1.0 if "blue" in text.lower() else 0.0

    def evaluate() -> float:
        ids = policy.encode(policy._render_chat(msgs, reply=True))
        outs = [policy.generate_ids(ids, max_tokens=8, temperature=1.0, seed=10_000 + i) for i in range(eval_samples)]
        return statistics.fmean(reward(o.text) for o in outs)

    before = evaluate()
    seconds, curve, skipped = [], [], 0
    for _ in range(steps):
        t = time.perf_counter()
        outs = [chat.chat(msgs, temperature=1.0, max_tokens=8).raw for _ in range(group)]
        report = policy.step([Sample(o.prompt_ids, o.token_ids, reward(o.text), "colour") for o in outs])
        seconds.append(time.perf_counter() - t)
        curve.append(round(report.mean_reward, 4))
        skipped += report.skipped
    return {"task": "reply to 'Name a colour.' mentions blue", "steps": steps, "group_size": group,
            "reward_before": round(before, 4), "reward_after": round(evaluate(), 4), "train_rewards": curve,
            "skipped_steps": skipped, "s_per_step": round(statistics.fmean(seconds), 2)}


def mem_alpha(engine: Any, steps: int, group: int, n_eval: int, max_tokens: int) -> dict[str, Any]:
    from memos_mem_alpha import MemAlphaTrainer, MemoryAnswerer, load_instances

    from memos.llm import LocalChat
    from memos.rl import GRPOSettings, LoraPolicy

    instances = load_instances()
    policy = LoraPolicy(engine, GRPOSettings(rank=8, alpha=16.0, lr=1e-4, seed=0))
    trainer = MemAlphaTrainer(policy, MemoryAnswerer(LocalChat(engine), max_tokens=24), group_size=group,
                              max_tokens=max_tokens)
    before = trainer.evaluate(instances[:n_eval])
    history = trainer.train(instances, steps)
    after = trainer.evaluate(instances[:n_eval])
    return {"steps": steps, "group_size": group, "eval_instances": n_eval, "max_tokens": max_tokens,
            "reward_before": before["reward_mean"], "reward_after": after["reward_mean"],
            "qa_before": before["qa"], "qa_after": after["qa"], "tool_before": before["tool"],
            "tool_after": after["tool"], "train_rewards": [h["reward_mean"] for h in history],
            "skipped_steps": sum(h["grpo"]["skipped"] for h in history),
            "samples_per_step": statistics.fmean(h["grpo"]["samples"] for h in history),
            "s_per_step": round(statistics.fmean(h["seconds"] for h in history), 2)}


def mem1(engine: Any, steps: int, group: int, n_eval: int, max_turns: int, max_tokens: int) -> dict[str, Any]:
    from memos_mem1 import CorpusEnvironment, Mem1Config, MEM1Trainer, default_corpus, load_tasks

    from memos.rl import GRPOSettings, LoraPolicy

    tasks = load_tasks()
    policy = LoraPolicy(engine, GRPOSettings(rank=8, alpha=16.0, lr=1e-4, seed=0))
    trainer = MEM1Trainer(policy, CorpusEnvironment(default_corpus()), group_size=group,
                          config=Mem1Config(max_turns=max_turns, max_tokens=max_tokens))
    before = trainer.evaluate(tasks[:n_eval])
    history = trainer.train(tasks, steps)
    after = trainer.evaluate(tasks[:n_eval])
    return {"steps": steps, "group_size": group, "eval_tasks": n_eval, "max_turns": max_turns,
            "max_tokens": max_tokens, "reward_before": before["reward_mean"], "reward_after": after["reward_mean"],
            "answered_before": before["answered"], "answered_after": after["answered"],
            "train_rewards": [h["reward_mean"] for h in history],
            "skipped_steps": sum(h["grpo"]["skipped"] for h in history),
            "samples_per_step": statistics.fmean(h["grpo"]["samples"] for h in history),
            "peak_context_tokens": max([before["peak_context_tokens"], after["peak_context_tokens"],
                                        *(h["peak_context_tokens"] for h in history)]),
            "s_per_step": round(statistics.fmean(h["seconds"] for h in history), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--harness-steps", type=int, default=8)
    parser.add_argument("--harness-group", type=int, default=8)
    parser.add_argument("--eval-samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="GRPO steps of each plugin")
    parser.add_argument("--group-size", type=int, default=4, help="rollouts per instance/task")
    parser.add_argument("--eval", type=int, default=2, help="instances/tasks evaluated before and after")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest policy reply (chunk or turn)")
    parser.add_argument("--max-turns", type=int, default=3, help="MEM1 turns per task")
    parser.add_argument("--only", choices=["harness", "mem_alpha", "mem1"], default=None)
    parser.add_argument("--models-dir", default=None, help="converted models (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    models_dir = args.models_dir or tempfile.mkdtemp(prefix="memos-bench-models-")
    engine = _engine(models_dir)
    result: dict[str, Any] = {"model": engine.fingerprint().model_id, "threads": torch.get_num_threads()}
    if args.only in (None, "harness"):
        result["harness"] = harness(engine, args.harness_steps, args.harness_group, args.eval_samples)
    if args.only in (None, "mem_alpha"):
        result["mem_alpha"] = mem_alpha(engine, args.steps, args.group_size, args.eval, args.max_tokens)
    if args.only in (None, "mem1"):
        result["mem1"] = mem1(engine, args.steps, args.group_size, args.eval, args.max_turns, args.max_tokens)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>10}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
