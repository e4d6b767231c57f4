"""Every example runs (in a subprocess, on a temporary home) and prints what it promises."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("script,expect", [
    ("quickstart.py", ["after rollback: Alice moved to Lisbon in 2023 (version 3)", "bob after grant:"]),
    ("chat_sessions.py", ["food allergies?  -> user: I'm allergic to peanuts"]),
    ("langgraph_agent.py", ["bot: you like grilled sardines; you like hiking; your name is Alice"]),
    pytest.param("l2mac_local.py", ["backend: local", "status:", "memories in the cube:"],
                 marks=pytest.mark.slow),
])
def test_example_runs(script, expect, tmp_path, models_dir, engine):
    # models_dir/engine: the session's converted SmolLM2 folder, so examples do not convert it again
    env = {**os.environ, "MEMOS_HOME": str(tmp_path / "home"), "MEMOS_MODELS_DIR": str(models_dir)}
    out = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, env=env,
                         timeout=900)
    assert out.returncode == 0, out.stderr
    for line in expect:
        assert line in out.stdout
