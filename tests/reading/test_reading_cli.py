"""``memos ingest`` and ``memos consolidate``: JSON reports, typed errors, exit codes."""

from __future__ import annotations

import json

import pytest



@pytest.fixture
def run(run_cli):
    return run_cli


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return path


def test_ingest_turns_then_facts(run, tmp_path):
    conv = write_jsonl(tmp_path / "conv.jsonl", [
        {"speaker": "Alice", "text": "I moved to Lisbon", "time": "2023-05-01"},
        {"speaker": "Bob", "text": "Congrats!", "time": "2023-05-01"}])
    run("ingest", "alice", str(conv), "--json", code=1)  # no such cube
    rep = run("ingest", "alice", str(conv), "--create", "--session", "3", "--json")
    assert len(rep["turns"]) == 2 and rep["llm"] is None and rep["policy"] == "accumulate"
    turn = run("get", "alice", rep["turns"][0], "--json")
    assert turn["text"] == "Alice: I moved to Lisbon" and turn["metadata"]["session"] == 3
    script = tmp_path / "script.json"
    script.write_text(json.dumps(['{"facts": [{"text": "Alice lives in Lisbon", "turns": [1]}]}']))
    rep = run("ingest", "alice", str(conv), "--llm", "scripted", "--script", str(script), "--json")
    assert rep["llm"] == "scripted" and len(rep["facts_added"]) == 1 and rep["failures"] == []
    fact = run("get", "alice", rep["facts_added"][0], "--json")
    assert fact["provenance"]["derived_from"] == [{"id": rep["turns"][0], "version": 1}]
    cons = run("consolidate", "alice", "--json")
    assert set(cons) >= {"expired", "deduplicated", "summaries", "promoted", "failures"}
    task = run("consolidate", "alice", "--background", "--json")
    assert task["task"]


def test_ingest_errors(run, tmp_path):
    run("cube", "create", "alice", "--json")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"speaker": "Alice", "text": "hi"}\nnot json\n')
    assert "bad.jsonl:2" in run("ingest", "alice", str(bad), "--json", code=1)["error"]["message"]
    ok = write_jsonl(tmp_path / "ok.jsonl", [{"speaker": "Alice", "text": "hi"}])
    run("ingest", "alice", str(tmp_path / "missing.jsonl"), "--json", code=1)
    run("ingest", "alice", str(ok), "--llm", "scripted", "--json", code=1)  # no --script
    run("ingest", "alice", str(ok), "--llm", "endpoint", "--json", code=1)  # no --endpoint
    run("ingest", "alice", str(ok), "--llm", "magic", "--json", code=1)
    run("ingest", "alice", str(ok), "--reconcile", "nope", "--json", code=1)
    assert run("cube", "show", "alice", "--json")["head"] == 0  # nothing was stored
