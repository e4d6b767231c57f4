"""memos hooks of the L2MAC plugin: ``memos l2mac run "task" --cube C``."""

from __future__ import annotations

from typing import Any

import typer

import memos
from memos.errors import CubeNotFound
from memos.llm import chat_backend

# Typer reads Optional annotations at runtime.


@memos.hookimpl
def memos_register_commands(app: Any) -> None:
    from memos.cli.common import JSON_OPT, STATE, command

    l2mac_app = typer.Typer(help="L2MAC: an LLM automatic computer that writes code into a cube.",
                            no_args_is_help=True)

    @l2mac_app.command("run")
    @command
    def run(task: str, cube: str = typer.Option(..., "--cube", help="Cube holding the registry and files."),
            endpoint: str | None = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL."),
            model: str | None = typer.Option(None, "--model", help="Model name at --endpoint."),
            api_key: str | None = typer.Option(None, "--api-key", envvar="MEMOS_CHAT_API_KEY"),
            max_llm_calls: int = typer.Option(40, "--max-llm-calls", help="Most LLM calls inside steps."),
            max_instructions: int = typer.Option(8, "--max-instructions"),
            budget: int = typer.Option(6000, "--context-budget", help="Context budget (estimated tokens)."),
            json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Write code for TASK: plan, run each instruction, check, keep the files in --cube."""
        from memos_l2mac.config import L2MACConfig
        from memos_l2mac.control import L2MAC

        mos = STATE.mos()
        try:
            c = mos.cube(cube)
        except CubeNotFound:
            c = mos.create_cube(cube)
        config = L2MACConfig(max_llm_calls=max_llm_calls, max_instructions=max_instructions,
                             context_budget_tokens=budget)
        report = L2MAC(chat_backend(mos, endpoint, model, api_key), c, config).run(task)
        return {"cube": cube, **report}

    app.add_typer(l2mac_app, name="l2mac")
