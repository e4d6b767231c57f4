"""The CLI contract (DESIGN §4): --json everywhere, one JSON document, typed errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memos.cli import main


@pytest.fixture
def run(run_cli):
    return run_cli


def test_issue_walkthrough(run, tmp_path):
    cube = run("cube", "create", "alice", "--owner", "alice", "--json")
    assert cube["name"] == "alice" and cube["owner"] == "alice" and cube["head"] == 0
    m = run("add", "alice", "Alice moved to Lisbon in 2023", "--meta", "session=3", "--event-time", "2023-05-01",
            "--json")
    assert m["metadata"] == {"session": 3} and m["event_time"].startswith("2023-05-01")
    res = run("search", "alice", "where does alice live", "--top-k", "5", "--json")
    assert set(res) == {"hits", "took_ms"}
    hit = res["hits"][0]
    assert {"id", "score", "text", "metadata", "version", "kind"} <= set(hit) and hit["id"] == m["id"]
    up = run("update", "alice", m["id"], "Alice moved to Porto in 2025", "--json")
    assert up["version"] == 2
    hist = run("history", "alice", m["id"], "--json")
    assert [v["text"] for v in hist["versions"]] == ["Alice moved to Lisbon in 2023", "Alice moved to Porto in 2025"]
    rb = run("rollback", "alice", m["id"], "--to", "1", "--json")
    assert rb["version"] == 3 and rb["text"] == "Alice moved to Lisbon in 2023"
    gone = run("delete", "alice", m["id"], "--json")
    assert gone["state"] == "archived"
    bundle = tmp_path / "a.memos"
    ex = run("export", "alice", "--out", str(bundle), "--json")
    assert ex["head"] == 4 and bundle.exists()
    imp = run("import", str(bundle), "--as", "alice-copy", "--json")
    assert imp["name"] == "alice-copy" and imp["head"] == 4
    lst = run("cube", "list", "--json")
    assert [c["name"] for c in lst["cubes"]] == ["alice", "alice-copy"]
    st = run("status", "--json")
    assert st["mode"] == "embedded" and st["workers"][0]["cubes"] == ["alice", "alice-copy"]
    assert {"id", "node", "pid", "cubes", "resident"} <= set(st["workers"][0])
    filt = run("search", "alice", "Lisbon", "--filter", "session=4", "--json")
    assert filt["hits"] == []


def test_errors_are_json_and_nonzero(run):
    err = run("cube", "create", "Bad Name", "--json", code=1)
    assert err["error"]["type"] == "InvalidCubeName"
    err = run("get", "nobody", "x", "--json", code=1)
    assert err["error"]["type"] == "CubeNotFound"
    run("cube", "create", "c", "--json")
    err = run("add", "c", "text", "--meta", "novalue", "--json", code=1)
    assert err["error"]["type"] == "InvalidInput"
    err = run("rollback", "c", "nope", "--to", "2", "--json", code=1)
    assert err["error"]["type"] == "MemoryNotFound"
    assert run("cube", "show", "c", "--json")["head"] == 0  # nothing was written


def test_principal_flag_enforces_acl(run, home, capsys):
    run("cube", "create", "private", "--owner", "alice", "--json")
    rc = main(["--home", str(home), "--principal", "bob", "search", "private", "x", "--json"])
    out, err = capsys.readouterr()
    assert rc == 1 and json.loads(out)["error"]["type"] == "AccessDenied"


def test_eval_and_plugins(run):
    fixture = Path(__file__).parent.parent / "fixtures" / "locomo_mini.json"
    out = run("eval", "locomo", "--data", str(fixture), "--top-k", "3", "--json")
    assert out["questions"] == 4 and "recall@3" in out["overall"]
    plugins = run("plugins", "list", "--json")
    assert "sqlite" in plugins["registered"]["backends"] and "minilm" in plugins["registered"]["embedders"]


def test_console_script_installed(home):
    out = subprocess.run([str(Path(sys.executable).parent / "memos"), "--home", str(home), "cube", "list", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"cubes": []}
