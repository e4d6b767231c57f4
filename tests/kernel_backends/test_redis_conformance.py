"""The Redis backend against the conformance suite and the kernel, on a real server (CI starts it).

Each test gets its own key prefix and deletes its keys afterwards. An unreachable server fails the tests
(it does not skip them): a silently skipped shared backend is how regressions ship.
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest

import kernel_backends.redis as redis_module
from kernel_backends.redis import RedisBackend
from memos.errors import BackendError, Conflict
from memos.models import MemCube
from memos.plugins import get_manager
from memos.storage import GetCube, GetMemories
from memos.testing.conformance import SharedBackendConformance, _commit, _mem

pytestmark = pytest.mark.services

REDIS_URL = os.environ.get("MEMOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _url(prefix: str) -> str:
    sep = "&" if "?" in REDIS_URL else "?"
    return f"{REDIS_URL}{sep}prefix={prefix}"


@pytest.fixture
def redis_url():
    """A URL with a fresh key prefix; every key under it is deleted afterwards."""
    prefix = f"memos-test-{uuid.uuid4().hex[:12]}:"
    try:
        probe = RedisBackend(_url(prefix))
    except BackendError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (set MEMOS_TEST_REDIS_URL or start redis-server): "
                    f"{exc}", pytrace=False)
    yield _url(prefix)
    keys = list(probe._r.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        probe._r.delete(*keys)
    probe.close()


class TestRedisConformance(SharedBackendConformance):
    @pytest.fixture
    def connect(self, redis_url):
        return lambda: RedisBackend(redis_url)

    @pytest.fixture
    def backend(self, redis_url):
        b = RedisBackend(redis_url)
        yield b
        b.close()


def test_prefixes_isolate(redis_url):
    a = RedisBackend(redis_url)
    b = RedisBackend(redis_url.replace("prefix=", "prefix=other-"))
    try:
        a.put_cube(MemCube(name="c", owner="o"), create=True)
        assert b.get_cube("c") is None and b.list_cubes() == []
    finally:
        for key in b._r.scan_iter(match=f"{b.prefix}*"):
            b._r.delete(key)
        a.close()
        b.close()


def test_commit_publishes_event(redis_url):
    b = RedisBackend(redis_url)
    sub = b._r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(f"{b.prefix}events")
    try:
        b.put_cube(MemCube(name="c", owner="o"), create=True)
        _commit(b, "c", 0, [_mem("c", "a", 1, 1, "one")])
        msg = None
        for _ in range(50):
            msg = sub.get_message(timeout=0.1)
            if msg is not None:
                break
        assert msg is not None and json.loads(msg["data"]) == {"cube": "c", "commit": 1, "op": "add"}
    finally:
        sub.close()
        b.close()


def test_purge_and_drop_leave_no_keys(redis_url):
    b = RedisBackend(redis_url)
    b.put_cube(MemCube(name="c", owner="o"), create=True)
    _commit(b, "c", 0, [_mem("c", "a", 1, 1, "one"), _mem("c", "b", 1, 1, "two")])
    _commit(b, "c", 1, [_mem("c", "a", 2, 2, "one again")])
    _commit(b, "c", 2, [], purge=("a",), op="purge")
    assert [(m.id, v) for m, v in b.scan("c", at_commit=2)] == [("b", np.full(4, 1, np.float32).tobytes())]
    assert b._r.zrange(b.keys.base("c") + "ids", 0, -1) == [b"b"]
    assert not b._r.exists(*b.keys.per_memory("c", "a"))
    assert b.drop_cube("c") is True
    assert list(b._r.scan_iter(match=f"{b.prefix}*")) == []
    b.close()


def test_unreachable_server_is_a_backend_error():
    with pytest.raises(BackendError, match="cannot reach"):
        RedisBackend("redis://127.0.0.1:1/0?prefix=x:")


@pytest.fixture
def redis_plugin():
    """Register the backend module until pyproject declares its entry point (and undo it afterwards)."""
    pm = get_manager()
    added = pm.get_plugin("redis") is None
    if added:
        pm.register(redis_module, name="redis")
    yield
    if added:
        pm.unregister(name="redis")


def test_kernel_on_redis_shared_by_two_homes(redis_url, redis_plugin, tmp_path):
    from memos.config import load_settings
    from memos.kernel import open_kernel
    from memos.sdk import MemOS
    from memos.testing.conformance import shared_kernels_scenario

    def open_home(name: str) -> MemOS:
        settings = load_settings(tmp_path / name, storage={"backend": "redis", "url": redis_url})
        return MemOS(open_kernel(settings))

    shared_kernels_scenario(open_home)


def _drop_connection_at_exec(monkeypatch, *, after_send: bool) -> None:
    """Make the next MULTI..EXEC exchange lose its connection, before or after Redis received it."""
    real = redis_module._exchange

    def flaky(conn, cmds):
        if cmds and cmds[0] == ("MULTI",):
            monkeypatch.setattr(redis_module, "_exchange", real)
            if after_send:
                real(conn, cmds)
            raise redis_module.RedisConnectionError("connection reset (test)")
        return real(conn, cmds)

    monkeypatch.setattr(redis_module, "_exchange", flaky)


def test_lost_exec_reply_is_not_applied_twice(redis_url, monkeypatch):
    b = RedisBackend(redis_url)
    b.put_cube(MemCube(name="c", owner="o"), create=True)
    _drop_connection_at_exec(monkeypatch, after_send=True)
    assert _commit(b, "c", 0, [_mem("c", "a", 1, 1, "one")]) == 1  # applied: found in the log, not a Conflict
    assert b.get_cube("c").head == 1 and len(b.read_log("c")) == 1
    _drop_connection_at_exec(monkeypatch, after_send=False)
    with pytest.raises(BackendError, match="was not applied"):
        _commit(b, "c", 1, [_mem("c", "b", 1, 2, "two")])
    assert b.get_cube("c").head == 1 and b.get_memories("c", ["b"]) == [None]
    b.close()


def test_unconfirmed_replication_is_an_error(redis_url):
    b = RedisBackend(redis_url + "&wait_replicas=1&wait_timeout_ms=20")  # the test server has no replica
    with pytest.raises(BackendError, match="0 of 1 replicas"):
        b.put_cube(MemCube(name="c", owner="o"), create=True)
    b.close()


def test_a_stored_version_is_never_rewritten(redis_url):
    """As SQLite's primary key: rewriting (id, version) fails and the batch writes nothing."""
    b = RedisBackend(redis_url)
    b.put_cube(MemCube(name="c", owner="o"), create=True)
    _commit(b, "c", 0, [_mem("c", "a", 1, 1, "one"), _mem("c", "a", 2, 1, "two")])
    with pytest.raises(BackendError, match="version 1 already exists"):
        _commit(b, "c", 1, [_mem("c", "b", 1, 2, "new"), _mem("c", "a", 1, 2, "rewrite")])
    assert b.get_cube("c").head == 1 and [m.text for m in b.history("c", "a")] == ["one", "two"]
    assert b.get_memories("c", ["b"]) == [None]
    b.close()


def test_failed_validation_leaves_no_watch_on_the_connection(redis_url):
    """A Conflict returns its connection to the pool; a WATCH left on it would void the next MULTI."""
    b, other = RedisBackend(redis_url), RedisBackend(redis_url)
    b.put_cube(MemCube(name="c", owner="o"), create=True)
    _commit(b, "c", 0, [_mem("c", "a", 1, 1, "one")])
    with pytest.raises(Conflict):
        _commit(b, "c", 0, [_mem("c", "x", 1, 1, "stale")])
    _commit(other, "c", 1, [_mem("c", "b", 1, 2, "two")])  # touches the key the failed batch watched
    got = b.batch([GetCube("c"), GetMemories("c", ("a", "b"))])  # one MULTI on the pooled connection
    assert got[0].head == 2 and [m.text for m in got[1]] == ["one", "two"]
    b.close()
    other.close()
