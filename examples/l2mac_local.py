"""L2MAC on the local model: plan a tiny coding task, run its steps, keep every file version in a cube.

    pip install -e plugins/l2mac
    python examples/l2mac_local.py

The default local model is tiny (SmolLM2-135M): expect it to stop at the call limit rather than finish
the task. The point is the control flow: the plan, each step's tool calls, checker verdicts and the
files (with their versions) in the cube. Point it at a real model with
``L2MAC_ENDPOINT=http://host:8000/v1 L2MAC_MODEL=name``.
"""

from __future__ import annotations

import os
import tempfile

from memos_l2mac import L2MAC, L2MACConfig, replay

import memos
from memos.llm import LocalChat, OpenAIChat

TASK = "Write greet.py with a function greet(name) that returns 'Hello, <name>!', and a pytest test for it."


def main(home: str) -> None:
    with memos.MemOS.open(home) as mos:
        if any(c.name == "l2mac-demo" for c in mos.list_cubes()):
            mos.delete_cube("l2mac-demo")
        cube = mos.create_cube("l2mac-demo")
        endpoint = os.environ.get("L2MAC_ENDPOINT")
        chat = (OpenAIChat(endpoint, os.environ.get("L2MAC_MODEL", "default")) if endpoint
                else LocalChat(mos.engine("local")))
        config = L2MACConfig(max_instructions=2, max_llm_calls=2, max_turns_per_step=2, max_tokens=96,
                             context_budget_tokens=1500, time_limit_s=20)
        report = L2MAC(chat, cube, config).run(TASK)
        print(f"backend: {chat.name}")
        print(f"plan ({len(report['instructions'])} instructions):")
        for i, ins in enumerate(report["instructions"], 1):
            print(f"  {i}. {ins[:100]}")
        print("events:")
        for e in report["events"]:
            print("  ", {k: v for k, v in e.items()})
        print(f"status: {report['status']} after {report['llm_calls']} step calls, "
              f"{report['completed']} instruction(s) complete")
        versions = replay(cube, report)
        print(f"files in cube {cube.name!r}: " + (", ".join(f"{p} (v{len(v)})" for p, v in versions.items())
                                                  or "(none)"))
        print(f"memories in the cube: {len(cube.list())}")


if __name__ == "__main__":
    home = os.environ.get("MEMOS_HOME")
    if home:
        main(home)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
