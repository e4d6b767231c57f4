"""memos hooks of the MEM1 plugin: ``memos mem1 run|train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

import memos
from memos.errors import InvalidInput
from memos.llm import chat_backend

# Typer reads Optional annotations at runtime.


def _public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the token ids kept for training."""
    turns = [{k: v for k, v in t.items() if k not in ("prompt_ids", "completion_ids")} for t in report["turns"]]
    return {**report, "turns": turns}


@memos.hookimpl
def memos_register_commands(app: Any) -> None:
    from memos.cli.common import JSON_OPT, STATE, command, open_cube

    mem1_app = typer.Typer(help="MEM1: a constant-memory agent that reasons and searches.", no_args_is_help=True)

    @mem1_app.command("run")
    @command
    def run_cmd(task: str, corpus: Path | None = typer.Option(None, "--corpus", help="Folder of .txt/.md documents."),
                cube: str | None = typer.Option(None, "--cube", help="Keep the internal states in this cube."),
                max_turns: int = typer.Option(6, "--max-turns"),
                max_tokens: int = typer.Option(256, "--max-tokens", help="Longest reply per turn."),
                top_k: int = typer.Option(3, "--top-k", help="Passages per search."),
                endpoint: str | None = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL."),
                model: str | None = typer.Option(None, "--model", help="Model name at --endpoint."),
                api_key: str | None = typer.Option(None, "--api-key", envvar="MEMOS_CHAT_API_KEY"),
                adapter: Path | None = typer.Option(None, "--adapter", help="A policy saved by mem1 train."),
                json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Answer TASK ("q1; q2; q3") by searching --corpus (default: the plugin's own corpus)."""
        from rich.console import Console
        from rich.progress import Progress

        from memos.llm import LocalChat
        from memos_mem1.agent import MEM1Agent, Mem1Config, parse_questions
        from memos_mem1.env import CorpusEnvironment, default_corpus
        from memos_mem1.train import STOP

        questions = parse_questions(task)
        env = CorpusEnvironment(corpus or default_corpus(), top_k=top_k)
        mos = STATE.mos()
        count = None
        if adapter is not None:
            from memos.rl import LoraPolicy

            policy = LoraPolicy.load(adapter, mos.engine("local"))
            policy.stop_strings = STOP
            chat: Any = LocalChat(policy)
            count = policy.count_tokens
        else:
            chat = chat_backend(mos, endpoint, model, api_key)
            if not endpoint:
                count = mos.engine("local").count_tokens
        agent = MEM1Agent(chat, env, cube=open_cube(mos, cube) if cube else None, count_tokens=count,
                          config=Mem1Config(max_turns=max_turns, max_tokens=max_tokens))
        with Progress(transient=True, console=Console(stderr=True), disable=json_out or STATE.json) as progress:
            progress.add_task(f"MEM1 on {len(questions)} questions", total=None)
            report = agent.run(questions)
        return {"cube": cube, **_public(report)}

    @mem1_app.command("train")
    @command
    def train_cmd(steps: int = typer.Option(..., "--steps", help="GRPO updates."),
                  corpus: Path | None = typer.Option(None, "--corpus", help="Folder of .txt/.md documents."),
                  tasks: Path | None = typer.Option(None, "--tasks", help="Tasks JSON (default: the plugin's)."),
                  out: Path | None = typer.Option(None, "--out", help="Folder of the saved policy."),
                  resume: Path | None = typer.Option(None, "--resume", help="Continue a saved policy."),
                  group_size: int = typer.Option(4, "--group-size", help="Rollouts per task."),
                  max_turns: int = typer.Option(4, "--max-turns"),
                  max_tokens: int = typer.Option(96, "--max-tokens", help="Longest reply per turn."),
                  lr: float = typer.Option(1e-4, "--lr"), rank: int = typer.Option(8, "--rank"),
                  seed: int = typer.Option(0, "--seed"),
                  json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Train the agent with GRPO over per-turn samples (LoRA on the frozen local model)."""
        from rich.console import Console
        from rich.progress import Progress

        from memos.rl import GRPOSettings, LoraPolicy
        from memos_mem1.agent import Mem1Config
        from memos_mem1.env import CorpusEnvironment, default_corpus
        from memos_mem1.train import MEM1Trainer, load_tasks

        if steps < 1:
            raise InvalidInput("--steps must be >= 1", field="steps")
        mos = STATE.mos()
        engine = mos.engine("local")
        task_list = load_tasks(tasks)
        env = CorpusEnvironment(corpus or default_corpus())
        policy = (LoraPolicy.load(resume, engine) if resume is not None
                  else LoraPolicy(engine, GRPOSettings(lr=lr, rank=rank, alpha=2.0 * rank, seed=seed)))
        trainer = MEM1Trainer(policy, env, group_size=group_size,
                              config=Mem1Config(max_turns=max_turns, max_tokens=max_tokens))
        with Progress(transient=True, console=Console(stderr=True), disable=json_out or STATE.json) as progress:
            bar = progress.add_task(f"GRPO on {len(task_list)} tasks", total=steps)
            history = trainer.train(task_list, steps, on_step=lambda _r: progress.advance(bar))
        folder = out or Path(mos.home) / "policies" / "mem1"
        policy.save(folder, meta={"method": "mem1", "group_size": group_size, "max_turns": max_turns,
                                  "max_tokens": max_tokens})
        return {"out": str(folder), "steps": history}

    app.add_typer(mem1_app, name="mem1")
