"""Packaging: fast import, lazy heavy modules, plugin registry, telemetry spans."""

import subprocess
import sys

import pytest


def test_import_is_fast_and_lazy():
    code = ("import time, sys; t = time.perf_counter(); import memos; dt = time.perf_counter() - t; "
            "heavy = [m for m in ('torch', 'faiss', 'transformers', 'numpy') if m in sys.modules]; "
            "print(dt, ','.join(heavy))")
    best = min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                     .stdout.split()[0]) for _ in range(3))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert best < 0.5
    assert len(out) == 1, f"heavy modules imported eagerly: {out[1:]}"


def test_errors_tree():
    from memos import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.MemosError)


def test_registry_duplicate_names_fail(monkeypatch):
    from memos import hookspecs, plugins
    from memos.errors import PluginError

    class A:
        name = "sqlite"

    class Dup:
        @hookspecs.hookimpl
        def memos_register_backends(self):
            return [A]

    pm = plugins.get_manager()
    pm.register(Dup(), name="dup-test")
    try:
        with pytest.raises(PluginError, match="two plugins"):
            plugins.registry("backends")
    finally:
        pm.unregister(name="dup-test")
    assert "sqlite" in plugins.registry("backends")
    with pytest.raises(PluginError):
        plugins.lookup("backends", "nonexistent")


def test_every_kernel_operation_is_a_span(mos):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from memos import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry._tracer = provider.get_tracer("memos")
    try:
        c = mos.create_cube("traced")
        m = c.add("a traced memory")
        c.search("traced", top_k=1)
        c.update(m.id, "an updated traced memory")
        c.history(m.id)
        c.rollback(m.id, 1)
        c.delete(m.id)
    finally:
        telemetry.reset_instruments()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for op in ("cube.create", "add", "search", "update", "history", "rollback", "delete", "embed"):
        assert f"memos.{op}" in spans, op
    add = spans["memos.add"]
    assert add.attributes["memos.cube"] == "traced" and add.attributes["memos.items"] == 1
    assert add.attributes["memos.latency_ms"] > 0


def test_errors_survive_pickling_across_processes():
    import pickle

    from memos.errors import AccessDenied, VersionNotFound

    for err in (VersionNotFound("c", "m1", 9, latest=2), AccessDenied("bob", "c", "read")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and back.message == err.message and back.context == err.context
