"""Hook implementations of the scheduler (entry point ``memos.scheduler``): policies, the Ray runtime and
the cluster CLI commands (``memos up``, ``memos down``, ``memos cube move``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from memos.hookspecs import hookimpl


@hookimpl
def memos_register_policies() -> list[type]:
    from scheduler.heat import HeatPolicy
    from scheduler.placement import PLACEMENT_POLICIES

    return [*PLACEMENT_POLICIES, HeatPolicy]


@hookimpl
def memos_register_runtimes() -> list[type]:
    from scheduler.runtime import RayRuntime

    return [RayRuntime]


@hookimpl
def memos_register_commands(app: Any) -> None:
    import typer

    from memos.cli.common import JSON_OPT, STATE, command
    from memos.config import default_home

    def home() -> Path:
        return Path(STATE.home) if STATE.home else default_home()

    @app.command("up")
    @command
    def up_cmd(workers: int = typer.Option(2, "--workers", help="Kernel workers to start on this node."),
               redis_url: str = typer.Option("redis://127.0.0.1:6379/0", "--redis-url"),
               address: Optional[str] = typer.Option(None, "--address", help="Join the cluster at HEAD:PORT."),
               placement: str = typer.Option("least-loaded", "--placement", help="hash | least-loaded | affinity"),
               json_out: bool = JSON_OPT) -> dict[str, Any]:  # noqa: UP007
        """Boot a memos cluster on Ray (or join one with --address)."""
        from scheduler.runtime import up

        return up(workers=workers, redis_url=redis_url, home=home(), address=address, placement=placement)

    @app.command("down")
    @command
    def down_cmd(json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Stop the memos cluster processes on this machine."""
        from scheduler.runtime import down

        return down(home())

    cube_group = next(g for g in app.registered_groups if g.name == "cube")

    @cube_group.typer_instance.command("move")
    @command
    def move_cmd(name: str, to: str = typer.Option(..., "--to", help="Target worker id."),
                 json_out: bool = JSON_OPT) -> dict[str, Any]:
        """Live-migrate a cube to another kernel worker."""
        from memos.errors import InvalidInput

        mos = STATE.mos()
        if not hasattr(mos, "move_cube"):
            raise InvalidInput("cube move needs a running cluster (memos up)", field="to")
        return mos.move_cube(name, to)
