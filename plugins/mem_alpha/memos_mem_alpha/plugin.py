"""memos hooks of the Mem-alpha plugin: ``memos mem-alpha build|show|train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

import memos
from memos.errors import InvalidInput
from memos.llm import chat_backend

# Typer reads Optional annotations at runtime.


@memos.hookimpl
def memos_register_commands(app: Any) -> None:
    from memos.cli.common import JSON_OPT, STATE, command, open_cube

    ma_app = typer.Typer(help="Mem-alpha: an RL-trained writer of core/semantic/episodic memory.",
                         no_args_is_help=True)

    @ma_app.command("build")
    @command
    def build_cmd(cube: str, input: Path = typer.Option(..., "--input", help="Text file, or JSON with chunks."),
                  policy: str = typer.Option("prompted", "--policy", help="prompted | endpoint"),
                  endpoint: str | None = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL."),
                  model: str | None = typer.Option(None, "--model", help="Model name at --endpoint."),
                  api_key: str | None = typer.Option(None, "--api-key", envvar="MEMOS_CHAT_API_KEY"),
                  call_format: str = typer.Option("qwen", "--call-format", help="endpoint: qwen | openai"),
                  adapter: Path | None = typer.Option(None, "--adapter", help="A policy saved by mem-alpha train."),
                  namespace: str = typer.Option("default", "--namespace", help="Memory name inside the cube."),
                  chunk_tokens: int = typer.Option(512, "--chunk-tokens", help="Chunk size for text input."),
                  max_tokens: int = typer.Option(512, "--max-tokens", help="Longest policy reply per chunk."),
                  prompt: str = typer.Option("full", "--prompt", help="prompted: full | compact"),
                  json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Build the Mem-alpha memory of --input in CUBE (each item a plaintext memory)."""
        from rich.console import Console
        from rich.progress import Progress

        from memos.llm import LocalChat
        from memos_mem_alpha.answerer import MemoryAnswerer
        from memos_mem_alpha.data import read_instances
        from memos_mem_alpha.memory import MemAlphaMemory, approx_tokens
        from memos_mem_alpha.policy import EndpointPolicy, PromptedPolicy
        from memos_mem_alpha.rollout import build, score

        if policy not in ("prompted", "endpoint"):
            raise InvalidInput(f"--policy must be prompted or endpoint, not {policy!r}", field="policy")
        if policy == "endpoint" and not endpoint:
            raise InvalidInput("--policy endpoint needs --endpoint URL", field="endpoint")
        mos = STATE.mos()
        local = policy == "prompted" and not endpoint
        engine = mos.engine("local") if local or adapter else None
        count = engine.count_tokens if engine is not None else approx_tokens
        instances = read_instances(input, chunk_tokens=chunk_tokens, count_tokens=count)
        if len(instances) != 1:
            raise InvalidInput(f"{input} holds {len(instances)} instances; build takes one", field="input")
        inst = instances[0]
        if policy == "endpoint":
            writer: Any = EndpointPolicy(str(endpoint), model or "YuWangX/Memalpha-4B", api_key=api_key,
                                         call_format=call_format, max_tokens=max_tokens)
        elif adapter is not None:
            from memos.rl import LoraPolicy

            writer = PromptedPolicy(LocalChat(LoraPolicy.load(adapter, engine)), max_tokens=max_tokens, style=prompt)
        else:
            writer = PromptedPolicy(chat_backend(mos, endpoint, model, api_key), max_tokens=max_tokens, style=prompt)
        memory = MemAlphaMemory.open(open_cube(mos, cube), namespace, count_tokens=count)
        quiet = json_out or STATE.json
        with Progress(transient=True, console=Console(stderr=True), disable=quiet) as progress:
            task = progress.add_task(f"memorising {len(inst.chunks)} chunks into {cube}", total=len(inst.chunks))
            rollout = build(writer, memory, inst.chunks, on_step=lambda _s: progress.advance(task))
        out: dict[str, Any] = {
            "cube": cube, "namespace": namespace, "chunks": len(inst.chunks),
            "calls": sum(len(s.outcomes) for s in rollout.steps),
            "succeeded": sum(o.ok for s in rollout.steps for o in s.outcomes),
            "steps": [s.to_dict() for s in rollout.steps], "memory": memory.snapshot(),
            "memory_tokens": memory.total_tokens(), "chunk_tokens": rollout.chunk_tokens,
            "core_id": memory.core_memory_id,
        }
        if inst.questions:
            answer_chat = LocalChat(engine) if engine is not None else chat_backend(mos, endpoint, model, api_key)
            out["score"] = score(rollout, inst.questions, MemoryAnswerer(answer_chat)).to_dict()
        return out

    @ma_app.command("show")
    @command
    def show_cmd(cube: str, namespace: str = typer.Option("default", "--namespace"),
                 recent: int = typer.Option(5, "--recent", help="Items shown per list in the view."),
                 json_out: bool = JSON_OPT) -> dict[str, Any]:
        """The Mem-alpha memory kept in CUBE: its snapshot, the policy's view and the memory ids."""
        from memos_mem_alpha.memory import LISTS, MemAlphaMemory

        memory = MemAlphaMemory.open(STATE.mos().cube(cube), namespace)
        return {"cube": cube, "namespace": namespace, "memory": memory.snapshot(), "view": memory.render(recent),
                "memory_tokens": memory.total_tokens(), "core_id": memory.core_memory_id,
                "ids": {t: {i.id: i.memory_id for i in memory.items[t]} for t in LISTS}}

    @ma_app.command("train")
    @command
    def train_cmd(steps: int = typer.Option(..., "--steps", help="GRPO updates."),
                  data: Path | None = typer.Option(None, "--data", help="Training instances (JSON)."),
                  out: Path | None = typer.Option(None, "--out", help="Folder of the saved policy."),
                  resume: Path | None = typer.Option(None, "--resume", help="Continue a saved policy."),
                  group_size: int = typer.Option(4, "--group-size", help="Rollouts per instance."),
                  lr: float = typer.Option(1e-4, "--lr"), rank: int = typer.Option(8, "--rank"),
                  max_tokens: int = typer.Option(96, "--max-tokens", help="Longest policy reply per chunk."),
                  seed: int = typer.Option(0, "--seed"),
                  prompt: str = typer.Option("compact", "--prompt", help="compact | full"),
                  json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Train the memory writer with GRPO (LoRA on the frozen local model); save it to --out."""
        from rich.console import Console
        from rich.progress import Progress

        from memos.llm import LocalChat
        from memos.rl import GRPOSettings, LoraPolicy
        from memos_mem_alpha.answerer import MemoryAnswerer
        from memos_mem_alpha.data import load_instances
        from memos_mem_alpha.train import MemAlphaTrainer

        if steps < 1:
            raise InvalidInput("--steps must be >= 1", field="steps")
        mos = STATE.mos()
        engine = mos.engine("local")
        instances = load_instances(data)
        policy = (LoraPolicy.load(resume, engine) if resume is not None
                  else LoraPolicy(engine, GRPOSettings(lr=lr, rank=rank, alpha=2.0 * rank, seed=seed)))
        trainer = MemAlphaTrainer(policy, MemoryAnswerer(LocalChat(engine), max_tokens=32), group_size=group_size,
                                  max_tokens=max_tokens, style=prompt)
        quiet = json_out or STATE.json
        with Progress(transient=True, console=Console(stderr=True), disable=quiet) as progress:
            task = progress.add_task(f"GRPO on {len(instances)} instances", total=steps)
            history = trainer.train(instances, steps, on_step=lambda _r: progress.advance(task))
        folder = out or Path(mos.home) / "policies" / "mem-alpha"
        policy.save(folder, meta={"method": "mem-alpha", "group_size": group_size, "max_tokens": max_tokens,
                                  "prompt": prompt})
        return {"out": str(folder), "steps": history}

    app.add_typer(ma_app, name="mem-alpha")
