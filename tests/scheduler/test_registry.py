"""The placement registry on a real Redis, without Ray: stale placements after a restart."""

from __future__ import annotations

import uuid

import pytest

from memos.errors import BackendError, InvalidInput
from scheduler.actors import Registry


@pytest.fixture
def registry():
    redis = pytest.importorskip("redis")
    prefix = f"memos-test-{uuid.uuid4().hex[:8]}:"
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    reg = Registry({"redis_url": "redis://127.0.0.1:6379/0", "prefix": prefix})
    yield reg
    for key in reg.r.scan_iter(f"{prefix}*"):
        reg.r.delete(key)


def test_placement_is_sticky_and_least_loaded(registry):
    registry.add_worker("w1", {"node": "a"})
    registry.add_worker("w2", {"node": "a"})
    first = registry.owner("alice")
    assert registry.owner("alice") == first  # sticky
    assert registry.owner("bob") != first  # least-loaded spreads


def test_a_placement_naming_a_departed_worker_is_replaced(registry):
    registry.add_worker("old", {"node": "a"})
    assert registry.owner("alice") == "old"
    # memos down + up: the old worker is unregistered, new workers come with new ids
    registry.remove_worker("old")
    registry.add_worker("new", {"node": "a"})
    assert registry.owner("alice") == "new"
    assert registry.placements() == {"alice": "new"}
    with pytest.raises(InvalidInput):
        registry.set_owner("alice", "old")


def test_no_workers_is_a_typed_error(registry):
    with pytest.raises(BackendError):
        registry.owner("alice")
    assert registry.placements() == {}
