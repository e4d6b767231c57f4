"""Hook implementations that register the scheduler's policies (entry point ``memos.scheduler``)."""

from __future__ import annotations

from memos.hookspecs import hookimpl


@hookimpl
def memos_register_policies() -> list[type]:
    from scheduler.heat import HeatPolicy
    from scheduler.placement import PLACEMENT_POLICIES

    return [*PLACEMENT_POLICIES, HeatPolicy]
