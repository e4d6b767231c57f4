"""CLI commands of memory reading: ``memos ingest CUBE FILE.jsonl`` and ``memos consolidate CUBE``.

:func:`register` adds them to the ``memos`` Typer app (``memos.cli.app.build_app`` calls it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from memos.cli.common import JSON_OPT, STATE, command
from memos.errors import CubeNotFound, InvalidInput

# Typer reads Optional annotations at runtime.
# ruff: noqa: UP045

LLM_OPT = typer.Option("none", "--llm", help="none (turns only) | local | scripted (--script) | endpoint "
                                             "(--endpoint, --model).")
ENDPOINT_OPT = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL (--llm endpoint).")
MODEL_OPT = typer.Option(None, "--model", help="Model name at --endpoint.")
KEY_OPT = typer.Option(None, "--api-key", envvar="MEMOS_CHAT_API_KEY", help="API key of --endpoint.")
SCRIPT_OPT = typer.Option(None, "--script", help="JSON file: a list of replies (--llm scripted).")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One message object per non-empty line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field="file") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise InvalidInput(f"{path.name}:{n}: not JSON ({exc.msg})", field="file") from exc
        if not isinstance(obj, dict):
            raise InvalidInput(f"{path.name}:{n}: expected a message object", field="file")
        out.append(obj)
    if not out:
        raise InvalidInput(f"{path} holds no messages", field="file")
    return out


def chat_from_options(llm: str, endpoint: str | None, model: str | None, api_key: str | None,
                      script: Path | None) -> Any:
    """The ``llm`` argument for the SDK from the CLI options."""
    if llm == "none":
        return None
    if llm == "local":
        return "local"
    if llm == "endpoint":
        if not endpoint:
            raise InvalidInput("--llm endpoint needs --endpoint URL", field="endpoint")
        return {"endpoint": endpoint, "model": model, "api_key": api_key}
    if llm == "scripted":
        from memos.llm import ScriptedChat

        if script is None:
            raise InvalidInput("--llm scripted needs --script FILE (a JSON list of replies)", field="script")
        try:
            replies = json.loads(script.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"cannot read the script {script}: {exc}", field="script") from exc
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            raise InvalidInput("the script must be a JSON list of strings", field="script")
        return ScriptedChat(replies)
    raise InvalidInput(f"unknown --llm {llm!r}: none, local, scripted or endpoint", field="llm")


@command
def ingest(cube: str, file: Path,
           session: Optional[str] = typer.Option(None, "--session", help="Session of messages that name none."),
           event_time: Optional[str] = typer.Option(None, "--event-time", help="ISO time of messages without one."),
           llm: str = LLM_OPT, endpoint: Optional[str] = ENDPOINT_OPT, model: Optional[str] = MODEL_OPT,
           api_key: Optional[str] = KEY_OPT, script: Optional[Path] = SCRIPT_OPT,
           reconcile: Optional[str] = typer.Option(None, "--reconcile",
                                                   help="accumulate | update | invalidate (default: the cube's)."),
           window: int = typer.Option(6, "--window", help="Turns per extraction call."),
           create: bool = typer.Option(False, "--create", help="Create the cube if it does not exist."),
           consolidate: bool = typer.Option(False, "--consolidate", help="Queue consolidation afterwards."),
           json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Read a conversation (JSONL: one {"speaker"|"role", "text"|"content", "time"?, "session"?} per line)
    into a cube: raw turns always, facts with --llm."""
    messages = read_jsonl(file)
    sess: str | int | None = int(session) if session is not None and session.isdigit() else session
    backend = chat_from_options(llm, endpoint, model, api_key, script)
    mos = STATE.mos()
    try:
        c = mos.cube(cube)
    except CubeNotFound:
        if not create:
            raise
        c = mos.create_cube(cube)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(transient=True, console=Console(stderr=True), disable=json_out or STATE.json) as bar:
        task = bar.add_task(f"reading {file.name} into {cube}", total=len(messages))
        from memos.reading import add_messages

        report = add_messages(mos, c.name, messages, session=sess, event_time=event_time, llm=backend,
                              reconcile=reconcile, window=window, consolidate=consolidate,
                              progress=lambda done, total: bar.update(task, completed=done))
    return report.as_dict()


@command
def consolidate_cmd(cube: str, llm: str = LLM_OPT, endpoint: Optional[str] = ENDPOINT_OPT,
                    model: Optional[str] = MODEL_OPT, api_key: Optional[str] = KEY_OPT,
                    script: Optional[Path] = SCRIPT_OPT,
                    related: float = typer.Option(0.6, "--related", help="Least similarity within a group."),
                    min_group: int = typer.Option(3, "--min-group", help="Fewest facts a summary merges."),
                    promote_top: int = typer.Option(0, "--promote-top",
                                                    help="Build the N hottest memories into a KV prefix."),
                    background: bool = typer.Option(False, "--background", help="Queue it as a task."),
                    json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Sleep-time consolidation: expire, merge duplicates, summarise related facts, promote hot memories."""
    backend = chat_from_options(llm, endpoint, model, api_key, script)
    mos = STATE.mos()
    options = {"related": related, "min_group": min_group, "max_group": max(8, min_group),
               "promote_top": promote_top}
    if background:
        if backend is not None and not isinstance(backend, (str, dict)):
            raise InvalidInput("a background task cannot use --llm scripted", field="llm")
        mos.cube(cube)
        return {"task": mos.submit("consolidate", {"cube": cube, "llm": backend, "options": options})}
    return mos.cube(cube).consolidate(llm=backend, **options).as_dict()


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("consolidate")(consolidate_cmd)
