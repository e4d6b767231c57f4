"""The CLI exports its spans and operation metrics over OTLP/HTTP when the OTEL_* variables ask for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.otlp_collector import Collector


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def memos_cli(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "memos"), "--home", str(home), *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def test_cli_exports_spans_and_metrics(home, collector):
    env = {**collector.env(metrics=True), "OTEL_SERVICE_NAME": "memos-cli-test"}
    out = memos_cli(home, env, "cube", "create", "otel", "--json")
    assert out.returncode == 0, out.stderr
    out = memos_cli(home, env, "add", "otel", "the kettle is in the left cupboard", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["text"] == "the kettle is in the left cupboard"
    # each process flushes at exit: nothing to wait for
    spans = [s for s in collector.spans() if s.attributes.get("memos.cube") == "otel"]
    assert {s.service for s in spans} == {"memos-cli-test"}
    adds = [s for s in spans if s.name == "memos.add"]
    assert len(adds) == 1 and adds[0].attributes["memos.items"] == 1 and adds[0].attributes["memos.latency_ms"] > 0
    ops = collector.metrics()
    counted = {(p["op"], p["status"]) for p in ops["memos.operations"] if p["value"] > 0}
    assert ("add", "ok") in counted
    assert any(p["op"] == "add" and p["count"] >= 1 for p in ops["memos.operation.duration"])


def test_unknown_exporter_is_ignored_with_a_warning(home):
    out = memos_cli(home, {"OTEL_TRACES_EXPORTER": "carrier-pigeon"}, "cube", "list", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == {"cubes": []}
    assert "OTEL_TRACES_EXPORTER='carrier-pigeon' is not supported" in out.stderr
