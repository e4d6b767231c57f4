"""L2MAC plugin (plugins/l2mac): the LangGraph control unit driven by ScriptedChat, files in a real cube."""

from __future__ import annotations

import json

import pytest

from memos.cli import main
from memos.errors import BackendError
from memos.llm import ScriptedChat

l2mac = pytest.importorskip("memos_l2mac", reason="pip install -e plugins/l2mac")
from memos_l2mac import L2MAC, L2MACConfig, check, estimate_tokens, parse_instructions, replay

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
PLAN = json.dumps(["Write calc.py with add(a, b) and test_calc.py testing it", "Write a README.md"])


def call(name: str, **arguments: str) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def script(seen: dict) -> list:
    def second_step(messages):
        seen["step2"] = messages[-1]["content"]
        return call("write_file", path="README.md", content="calc: add two numbers")

    def fix(messages):
        seen["checker"] = messages[-1]["content"]
        return call("write_file", path="calc.py", content=FIXED)

    return [
        PLAN,
        call("write_file", path="calc.py", content=BUGGY) + call("write_file", path="test_calc.py", content=TEST),
        fix,
        call("mark_step_complete", summary="calc.add implemented; test_calc passes"),
        second_step,
        call("mark_step_complete", summary="README written"),
    ]


def test_plan_write_fail_fix_complete_summary_reaches_next_step(cube):
    seen: dict = {}
    chat = ScriptedChat(script(seen))
    report = L2MAC(chat, cube, L2MACConfig(time_limit_s=60)).run("a calculator library")
    assert report["status"] == "done", report["events"]
    assert report["instructions"] == json.loads(PLAN) and report["completed"] == 2
    # the checker's failure was fed back as the next message
    assert seen["checker"].startswith("Checker: errors found") and "assert -1 == 5" in seen["checker"]
    # the second step starts from a fresh context: task, file list, previous summary, its instruction
    ctx = seen["step2"]
    assert "Summary of the previous step: calc.add implemented; test_calc passes" in ctx
    assert "Files: calc.py, test_calc.py" in ctx and "(2/2): Write a README.md" in ctx
    assert "return a - b" not in ctx
    assert chat.remaining == 0
    # files are memories in the cube, with versions; the fixed file is version 2
    files = report["files"]
    assert sorted(files) == ["README.md", "calc.py", "test_calc.py"]
    assert files["calc.py"]["version"] == 2 and files["calc.py"]["text"].strip() == FIXED.strip()
    assert files["test_calc.py"]["version"] == 1
    assert [t.strip() for t in replay(cube, report)["calc.py"]] == [BUGGY.strip(), FIXED.strip()]
    assert cube.get(files["calc.py"]["id"]).metadata["path"] == "calc.py"
    registry = cube.get(report["registry_id"])
    assert registry.metadata["l2mac"] == "registry" and "Write a README.md" in registry.text
    assert report["summaries"] == ["calc.add implemented; test_calc passes", "README written"]


def test_step_cannot_complete_while_the_checker_fails(cube):
    chat = ScriptedChat([
        '["Write calc.py"]',
        call("write_file", path="calc.py", content="def add(a, b)\n    return a + b\n"),
        call("mark_step_complete", summary="done"),
        call("write_file", path="calc.py", content=FIXED),
        call("mark_step_complete", summary="done now"),
    ])
    report = L2MAC(chat, cube, L2MACConfig(time_limit_s=60)).run("calculator")
    assert report["status"] == "done" and report["summaries"] == ["done now"]
    refused = chat.requests[3]["messages"][-1]["content"]
    assert "not complete" in refused and "SyntaxError" in refused


def test_context_overflow_summarises_and_restarts_the_step(cube):
    chat = ScriptedChat([
        '["Write notes.py"]',
        "I am thinking about it. " * 60,  # no tool call, long: the context goes over the budget
        "Nothing written yet; next write notes.py",  # the summary
        lambda m: call("write_file", path="notes.py", content="X = 1\n") if "Nothing written yet" in m[-1]["content"]
        else "lost the summary",
        call("mark_step_complete", summary="notes.py written"),
    ])
    report = L2MAC(chat, cube, L2MACConfig(context_budget_tokens=300, time_limit_s=60)).run("notes")
    assert report["status"] == "done", report["events"]
    assert any(e["node"] == "summarise" for e in report["events"])
    assert "Progress on this instruction before the context was reset" in chat.requests[3]["messages"][1]["content"]


def test_restarts_are_bounded(cube):
    talk = "blah " * 400
    chat = ScriptedChat(['["Write x.py"]', talk, "summary 1", talk, "summary 2"])
    report = L2MAC(chat, cube, L2MACConfig(context_budget_tokens=200, max_restarts=1)).run("x")
    assert report["status"] == "max_restarts"


def test_llm_call_limit(cube):
    chat = ScriptedChat(['["Write x.py"]', "hmm", "hmm"])
    assert L2MAC(chat, cube, L2MACConfig(max_llm_calls=2)).run("x")["status"] == "max_llm_calls"


def test_resume_from_checkpoint_after_a_crash(cube):
    from langgraph.checkpoint.memory import MemorySaver

    seen: dict = {}
    replies = script(seen)
    saver = MemorySaver()
    crashing = ScriptedChat(replies[:3])  # the model goes away before the step is marked complete
    with pytest.raises(BackendError):
        L2MAC(crashing, cube, L2MACConfig(time_limit_s=60)).run("a calculator library", checkpointer=saver,
                                                                 thread_id="t1")
    resumed = ScriptedChat(replies[3:])
    report = L2MAC(resumed, cube, L2MACConfig(time_limit_s=60)).resume(saver, "t1")
    assert report["status"] == "done" and resumed.remaining == 0
    assert report["files"]["calc.py"]["version"] == 2
    assert "calc.add implemented" in seen["step2"]
    assert len(crashing.requests) == 4 and len(resumed.requests) == 3  # nothing before the crash re-asked


def test_graph_is_embeddable_and_interruptible(cube):
    from langgraph.checkpoint.memory import MemorySaver

    seen: dict = {}
    agent = L2MAC(ScriptedChat(script(seen)), cube, L2MACConfig(time_limit_s=60))
    graph = agent.build_graph(MemorySaver(), interrupt_after=["plan"])
    cfg = agent.run_config("t2")
    state = graph.invoke({"task": "a calculator library"}, cfg)
    assert state["instructions"] == json.loads(PLAN) and state["files"] == {}
    assert graph.get_state(cfg).next == ("step",)
    state = graph.invoke(None, cfg)
    assert state["status"] == "done"


def test_sandbox_paths_and_time_limit(cube):
    chat = ScriptedChat(['["x"]', call("write_file", path="../evil.py", content="x = 1"),
                         call("write_file", path="loop.py", content="while True:\n    pass\n")
                         + call("run_file", path="loop.py"),
                         lambda m: call("delete_file", path="loop.py"),
                         call("mark_step_complete", summary="ok")])
    report = L2MAC(chat, cube, L2MACConfig(time_limit_s=2)).run("x")
    assert report["status"] == "done" and report["files"] == {}
    assert "must be relative" in chat.requests[2]["messages"][-1]["content"]
    assert "timed out" in chat.requests[3]["messages"][-2]["content"]


def test_parse_instructions_and_estimate():
    assert parse_instructions('Plan: ["a", "b"]') == ["a", "b"]
    assert parse_instructions("1. write a\n2. test a") == ["write a", "test a"]
    assert parse_instructions('[{"instruction": "a"}]') == ["a"]
    assert estimate_tokens([{"content": "one two three"}]) == 4 + 4
    assert check({"t.py": "def f(:\n"}, 30).ok is False


def test_cli_run_json(home, monkeypatch, capsys):
    from memos_l2mac import plugin

    monkeypatch.setattr(plugin, "chat_backend", lambda *a, **k: ScriptedChat(
        ['["Write hello.py"]', call("write_file", path="hello.py", content="print('hi')\n"),
         call("mark_step_complete", summary="hello.py prints hi")]))
    assert main(["--home", str(home), "l2mac", "run", "say hi", "--cube", "code", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "done" and out["cube"] == "code" and out["files"]["hello.py"]["version"] == 1
