"""Placement and residency policies, and the task queue (in-process and on a real Redis)."""

from __future__ import annotations

import uuid

import pytest

from memos.errors import InvalidInput
from memos.residency import ResidencyPool
from scheduler.heat import HeatPolicy
from scheduler.placement import AffinityPlacement, HashPlacement, LeastLoadedPlacement, WorkerInfo
from scheduler.queue import InProcessQueue, RedisStreamQueue

W = [WorkerInfo("w1", cubes=3), WorkerInfo("w2", cubes=1, engines=("local",)), WorkerInfo("w3", cubes=2)]


def test_hash_placement_is_stable_and_moves_little():
    names = [f"cube-{i}" for i in range(200)]
    before = {n: HashPlacement().choose(n, W, {}) for n in names}
    assert before == {n: HashPlacement().choose(n, list(reversed(W)), {}) for n in names}
    assert set(before.values()) == {"w1", "w2", "w3"}
    after = {n: HashPlacement().choose(n, W + [WorkerInfo("w4")], {}) for n in names}
    moved = [n for n in names if before[n] != after[n]]
    assert all(after[n] == "w4" for n in moved) and 20 < len(moved) < 90


def test_least_loaded_and_affinity():
    assert LeastLoadedPlacement().choose("c", W, {}) == "w2"
    assert AffinityPlacement().choose("c", W, {"engine": "local"}) == "w2"
    assert AffinityPlacement().choose("c", W, {"engine": "vllm"}) == "w2"  # nobody runs it: least-loaded
    with pytest.raises(InvalidInput):
        HashPlacement().choose("c", [], {})


def test_registry_has_scheduler_policies():
    from memos.plugins import registry

    pol = registry("policies")
    assert {"hash", "least-loaded", "affinity", "heat", "lru", "lfu"} <= set(pol)


def test_heat_policy_evicts_coldest():
    now = [0.0]
    heat = HeatPolicy(clock=lambda: now[0], tau_s=10)
    pool = ResidencyPool({"host": 100}, heat)
    pool.put("hot", 1, 40)
    pool.put("cold", 2, 40)
    for _ in range(5):
        pool.get("hot")
    now[0] = 100.0
    pool.put("new", 3, 40)
    assert "hot" in pool and "cold" not in pool
    assert heat.heat("hot") > heat.heat("new") - 1  # visits keep "hot" warm despite its age


def flaky(n_failures):
    calls = []

    def handler(payload):
        calls.append(payload)
        if len(calls) <= n_failures:
            raise RuntimeError("transient")

    return handler, calls


def queue_behaviour(q):
    ok, ok_calls = flaky(0)
    retry, retry_calls = flaky(2)
    bad, bad_calls = flaky(99)
    q.register("ok", ok)
    q.register("retry", retry)
    q.register("bad", bad)
    t1 = q.submit("ok", {"n": 1}, key="k1")
    assert q.submit("ok", {"n": 1}, key="k1") == t1  # idempotent: not enqueued twice
    q.submit("retry", {"n": 2})
    q.submit("bad", {"n": 3})
    q.submit("nobody-handles-this", {})
    q.drain(timeout_s=20)
    assert ok_calls == [{"n": 1}]
    assert len(retry_calls) == 3
    assert len(bad_calls) == 3
    dead = q.dead_letters()
    assert sorted(t.kind for t in dead) == ["bad", "nobody-handles-this"]
    assert all(t.error for t in dead)
    assert q.stats()["done"] == 2 and q.depth() == 0
    with pytest.raises(InvalidInput):
        q.submit("ok", {"x": object()})


def test_in_process_queue():
    queue_behaviour(InProcessQueue(max_attempts=3))


def test_in_process_queue_threads():
    q = InProcessQueue()
    seen = []
    q.register("t", lambda p: seen.append(p["i"]))
    q.start(workers=2)
    for i in range(50):
        q.submit("t", {"i": i})
    q.drain(timeout_s=10)
    q.stop()
    assert sorted(seen) == list(range(50))


@pytest.fixture
def redis_client():
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    r.ping()
    prefix = f"memos-test-{uuid.uuid4().hex[:8]}:"
    yield r, prefix
    for k in r.scan_iter(f"{prefix}*"):
        r.delete(k)


@pytest.mark.services
def test_redis_stream_queue(redis_client):
    r, prefix = redis_client
    queue_behaviour(RedisStreamQueue(r, prefix=prefix, max_attempts=3, claim_idle_ms=60_000))


@pytest.mark.services
def test_redis_queue_reclaims_from_dead_consumer(redis_client):
    r, prefix = redis_client
    a = RedisStreamQueue(r, prefix=prefix, consumer="a", claim_idle_ms=0)
    a.submit("job", {"x": 1})
    # consumer "a" reads the entry and dies before acknowledging it
    got = r.xreadgroup(a.group, "a", {a.stream: ">"}, count=1)
    assert got and len(got[0][1]) == 1
    b = RedisStreamQueue(r, prefix=prefix, consumer="b", claim_idle_ms=0)
    done = []
    b.register("job", lambda p: done.append(p))
    assert b.run_once(0.1) == 1 and done == [{"x": 1}]
    assert b.depth() == 0
