"""``memos auth create-key|revoke-key`` and ``memos serve`` (DESIGN §4)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from tests.server.harness import CLI_LAUNCHER, memos_cli_app


@pytest.fixture
def cli():
    runner = CliRunner()
    app = memos_cli_app()
    return lambda *args: runner.invoke(app, list(args))


def test_create_key_while_a_server_holds_the_home(cli, home, mos, client):
    """The server's process holds the home lock: keys go straight to storage and work at once."""
    out = cli("--home", str(home), "auth", "create-key", "--principal", "alice", "--json")
    assert out.exit_code == 0, out.output
    made = json.loads(out.stdout)
    assert made["principal"] == "alice" and made["key"].startswith(f"mk_{made['id']}_")
    headers = {"Authorization": f"Bearer {made['key']}"}
    assert client.get("/v1/status", headers=headers).json()["principal"] == "alice"
    out = cli("--home", str(home), "auth", "revoke-key", made["id"], "--json")
    assert json.loads(out.stdout) == {"id": made["id"], "revoked": True}
    assert client.get("/v1/status", headers=headers).status_code == 401


def test_create_key_rejects_a_bad_principal(cli, tmp_path):
    out = cli("--home", str(tmp_path / "h"), "auth", "create-key", "--principal", "two words", "--json")
    assert out.exit_code == 1 and json.loads(out.stdout)["error"]["type"] == "InvalidInput"


def test_serve_insecure_local_refuses_a_public_host(cli, tmp_path):
    out = cli("--home", str(tmp_path / "h"), "serve", "--insecure-local", "--host", "0.0.0.0", "--json")
    assert out.exit_code == 1 and json.loads(out.stdout)["error"]["type"] == "InvalidInput"
    assert "0.0.0.0" in out.stderr


def test_serve_runs_uvicorn(tmp_path):
    """``memos serve`` as a process: prints its URL, answers with a key, stops on SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MEMOS_HOME": str(tmp_path / "home")}
    memos = [sys.executable, "-c", CLI_LAUNCHER]
    made = subprocess.run([*memos, "auth", "create-key", "--principal", "ops", "--json"], env=env,
                          capture_output=True, text=True, check=True, timeout=120)
    auth = {"Authorization": f"Bearer {json.loads(made.stdout)['key']}"}
    proc = subprocess.Popen([*memos, "serve", "--port", str(port), "--json", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert json.loads(proc.stdout.readline()) == {"url": url, "insecure_local": False}
        deadline = time.monotonic() + 120
        while True:
            try:
                resp = httpx.get(f"{url}/v1/status", headers=auth)
                break
            except httpx.ConnectError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        assert resp.json()["principal"] == "ops"
        assert httpx.get(f"{url}/v1/cubes").status_code == 401
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
        proc.stderr.close()
