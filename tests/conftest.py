"""Shared fixtures: an embedded memos home per test, the real embedder loaded once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# memos runs Ray with token auth (scheduler/runtime.py sets this before it imports ray). Ray reads the mode
# when it is first imported, and some tests import ray earlier (deploy/ validates cluster.yaml with Ray's
# autoscaler code): set it for the whole session so the cluster tests find it in force.
os.environ.setdefault("RAY_AUTH_MODE", "token")


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def mos(home):
    from memos import MemOS

    m = MemOS.open(home)
    yield m
    m.close()


@pytest.fixture
def cube(mos):
    return mos.create_cube("alice", owner="alice")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """One converted SmolLM2 folder per test session (the GGUF conversion runs once)."""
    return tmp_path_factory.getbasetemp() / "models"


@pytest.fixture(scope="session")
def engine(models_dir):
    """The local engine, shared with every MemOS handle opened with ``models_dir`` in this session."""
    from memos.engines.registry import get_engine

    return get_engine("local", models_dir)


@pytest.fixture
def mos_llm(home, models_dir, engine):
    from memos import MemOS

    m = MemOS.open(home, models_dir=str(models_dir))
    yield m
    m.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A real two-node Ray cluster with two kernel workers on Redis (see tests/cluster_fixture.py)."""
    from tests.cluster_fixture import Cluster, ray_processes

    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.close()
    assert ray_processes() == [], "memos down left Ray processes behind"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of many small forward/backward passes (training tests): on a
    2-core machine shared with other jobs, two OpenMP threads spend most of their time waiting for
    each other at every op (measured 3-5x slower than one thread here). Restored afterwards."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_cli(home, capsys):
    """``run_cli("add", "alice", "text", "--json")``: the ``memos`` CLI in-process on ``home``; checks the
    exit code (``code=``) and that a failure prints one ``error: ...`` line; returns the parsed JSON."""
    import json

    from memos.cli import main

    def _run(*args: str, code: int = 0) -> dict:
        rc = main(["--home", str(home), *args])
        out, err = capsys.readouterr()
        assert rc == code, (args, out, err)
        if code:
            assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        return json.loads(out) if out.strip() else {}

    return _run
