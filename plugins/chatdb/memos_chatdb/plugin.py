"""memos hooks of the ChatDB plugin: ``memos chatdb init|ask``."""

from __future__ import annotations

from typing import Any

import typer

import memos
from memos.llm import chat_backend

# Typer reads Optional annotations at runtime.


@memos.hookimpl
def memos_register_commands(app: Any) -> None:
    from memos.cli.common import JSON_OPT, STATE, command, open_cube

    chatdb_app = typer.Typer(help="ChatDB: a SQL database as symbolic memory (chain-of-memory).",
                             no_args_is_help=True)

    @chatdb_app.command("init")
    @command
    def init(cube: str, fixture: str = typer.Option("fruit-shop", "--fixture", help="Fixture to load."),
             json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Create the cube's database and load a fixture (schema + records)."""
        from memos.errors import InvalidInput
        from memos_chatdb.database import ChatDatabase
        from memos_chatdb.fixtures import FIXTURES

        if fixture not in FIXTURES:
            raise InvalidInput(f"unknown fixture {fixture!r} (known: {', '.join(FIXTURES)})", field="fixture")
        mos = STATE.mos()
        open_cube(mos, cube)
        with ChatDatabase.for_cube(mos.home, cube) as db:
            if db.tables:
                raise InvalidInput(f"the database of cube {cube!r} already has tables {db.tables}", field="cube")
            tables = FIXTURES[fixture](db)
            return {"cube": cube, "database": str(db.path), "tables": tables}

    @chatdb_app.command("ask")
    @command
    def ask(cube: str, request: str,
            endpoint: str | None = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL."),
            model: str | None = typer.Option(None, "--model", help="Model name at --endpoint."),
            api_key: str | None = typer.Option(None, "--api-key", envvar="MEMOS_CHAT_API_KEY"),
            max_steps: int = typer.Option(10, "--max-steps", help="Most SQL steps run for one request."),
            json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Answer REQUEST with a chain of SQL steps over the cube's database."""
        from memos_chatdb.chain import ChainOfMemory
        from memos_chatdb.database import ChatDatabase

        mos = STATE.mos()
        c = open_cube(mos, cube)
        with ChatDatabase.for_cube(mos.home, cube) as db:
            chain = ChainOfMemory(chat_backend(mos, endpoint, model, api_key), db, c, max_steps=max_steps)
            return chain.ask(request).as_dict()

    app.add_typer(chatdb_app, name="chatdb")
