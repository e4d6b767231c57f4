"""Kernel behaviour through the SDK: versions, op log, rollback, time travel, lifecycle, filters."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from memos.errors import InvalidInput, MemoryNotFound, VersionNotFound
from memos.models import State


def test_add_search_get(cube):
    m = cube.add("Alice moved to Lisbon in 2023", metadata={"session": 3}, event_time="2023-05-01")
    cube.add_many(["Bob likes pizza with pineapple", {"text": "Alice has a cat named Tom", "metadata": {"session": 4}}])
    assert m.version == 1 and m.commit == 1 and m.state == State.activated
    assert m.event_time == datetime(2023, 5, 1, tzinfo=timezone.utc)
    hits = cube.search("where does alice live", top_k=5)
    assert hits[0].memory.id == m.id
    assert hits[0].score >= hits[-1].score
    assert cube.get(m.id).text == "Alice moved to Lisbon in 2023"
    assert cube.head == 2  # add + add_many: one commit each


def test_update_history_rollback(cube):
    m = cube.add("Alice moved to Lisbon in 2023")
    cube.update(m.id, "Alice moved to Porto in 2025")
    assert cube.search("Porto", top_k=1)[0].memory.text == "Alice moved to Porto in 2025"
    hist = cube.history(m.id)
    assert [(v.version, v.text) for v in hist] == [(1, "Alice moved to Lisbon in 2023"),
                                                   (2, "Alice moved to Porto in 2025")]
    assert hist[1].provenance.op == "update" and hist[1].provenance.derived_from[0].version == 1
    r = cube.rollback(m.id, 1)
    assert r.version == 3 and r.text == "Alice moved to Lisbon in 2023"
    assert r.provenance.op == "rollback" and r.provenance.derived_from[0].version == 1
    assert cube.get(m.id, version=2).text == "Alice moved to Porto in 2025"
    top = cube.search("Lisbon", top_k=1)[0]
    assert top.memory.id == m.id and top.memory.version == 3
    # the Porto version no longer matches anything live
    assert all(h.memory.text != "Alice moved to Porto in 2025" for h in cube.search("Porto", top_k=5))


def test_time_travel(cube):
    m = cube.add("the office is in Berlin")
    c1 = cube.head
    cube.update(m.id, "the office is in Munich")
    other = cube.add("the cafeteria opens at noon")
    past = cube.at(c1)
    assert past.get(m.id).text == "the office is in Berlin"
    assert [h.memory.text for h in past.search("office", top_k=5)] == ["the office is in Berlin"]
    with pytest.raises(MemoryNotFound):
        past.get(other.id)
    assert [v.version for v in past.history(m.id)] == [1]
    with pytest.raises(InvalidInput):
        past.add("read-only view")
    with pytest.raises(InvalidInput):
        cube.at(cube.head + 1)


def test_soft_delete_and_purge(cube):
    a = cube.add("temporary secret code 1234")
    b = cube.add("permanent note about gardening")
    archived = cube.delete(a.id)
    assert archived.state == State.archived and archived.version == 2
    assert all(h.memory.id != a.id for h in cube.search("secret code", top_k=5))
    assert cube.search("secret code", top_k=5, include_archived=True)[0].memory.id == a.id
    assert len(cube.history(a.id)) == 2  # never silently deleted
    cube.delete(b.id, purge=True)
    with pytest.raises(MemoryNotFound):
        cube.get(b.id)
    with pytest.raises(MemoryNotFound):
        cube.history(b.id)
    tomb = cube.log()[-1]
    assert tomb.op == "purge" and tomb.items[0].id == b.id and tomb.items[0].version == 0
    assert [e.commit for e in cube.log()] == list(range(1, cube.head + 1))


def test_ttl_expiry_leaves_search_keeps_history(cube):
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    gone = cube.add("flash sale ends today", expires_at=past)
    kept = cube.add("flash photography tips")
    assert gone.effective_state() == State.expired
    assert [h.memory.id for h in cube.search("flash sale", top_k=5)] == [kept.id]
    assert cube.get(gone.id).public()["state"] == "expired"
    swept = cube.sweep_expired()
    assert [m.id for m in swept] == [gone.id] and swept[0].state == State.expired
    assert [v.version for v in cube.history(gone.id)] == [1, 2]


def test_default_ttl_policy(mos):
    c = mos.create_cube("ephemeral", policy={"default_ttl_s": 3600})
    m = c.add("a note that should expire in an hour")
    assert m.expires_at is not None
    delta = (m.expires_at - m.created_at).total_seconds()
    assert 3599 <= delta <= 3601


def test_capacity_archives_oldest(mos):
    c = mos.create_cube("small", policy={"capacity": 3})
    ids = [c.add(f"note number {i} about topic {i}").id for i in range(5)]
    live = {m.id for m in c.list()}
    assert live == set(ids[2:])
    assert c.get(ids[0]).state == State.archived


def test_filters_and_time_range(cube):
    cube.add_many([
        {"text": "went hiking in the alps", "metadata": {"session": 1, "who": "alice"}, "event_time": "2023-01-10"},
        {"text": "went hiking in the andes", "metadata": {"session": 2, "who": "bob"}, "event_time": "2023-06-10"},
        {"text": "went hiking in the rockies", "metadata": {"session": 3, "who": ["alice", "bob"]},
         "event_time": "2024-02-01"},
    ])
    texts = lambda hits: sorted(h.memory.text.split()[-1] for h in hits)  # noqa: E731
    assert texts(cube.search("hiking", filters={"session": 2})) == ["andes"]
    assert texts(cube.search("hiking", filters={"session": [1, 3]})) == ["alps", "rockies"]
    assert texts(cube.search("hiking", filters={"who": "alice"})) == ["alps", "rockies"]
    assert texts(cube.search("hiking", time_range=("2023-03-01", None))) == ["andes", "rockies"]
    assert texts(cube.search("hiking", time_range=(None, "2023-12-31"), filters={"who": "bob"})) == ["andes"]
    assert cube.search("hiking", filters={"session": 99}) == []


def test_recency_weighting(mos):
    c = mos.create_cube("recent", policy={"recency_half_life_days": 30})
    c.add("meeting notes about the budget", event_time="2020-01-01")
    new = c.add("meeting notes about the budget", event_time=datetime.now(timezone.utc))
    assert c.search("meeting budget", top_k=2)[0].memory.id == new.id


def test_list_and_log(cube):
    ms = cube.add_many([f"fact {i}" for i in range(5)])
    assert len(cube.list(limit=3)) == 3
    assert {m.id for m in cube.list(limit=10)} == {m.id for m in ms}
    entry = cube.log()[0]
    assert entry.op == "add" and len(entry.items) == 5


def test_async_twins(cube):
    async def go():
        m = await cube.aadd("async memories work too")
        hits = await cube.asearch("async memories", top_k=1)
        hist = await cube.ahistory(m.id)
        return m, hits, hist

    m, hits, hist = asyncio.run(go())
    assert hits[0].memory.id == m.id and len(hist) == 1


def test_rollback_missing_version(cube):
    m = cube.add("only one version")
    with pytest.raises(VersionNotFound) as err:
        cube.rollback(m.id, 5)
    assert err.value.version == 5 and err.value.memory_id == m.id


def test_index_survives_reopen_and_agrees_with_log(home):
    from memos import MemOS

    with MemOS.open(home) as mos:
        c = mos.create_cube("docs")
        ms = c.add_many([f"document about subject {i} and topic {i * 7}" for i in range(50)])
        c.update(ms[0].id, "document about zebras")
        c.delete(ms[1].id)
        c.search("warm", top_k=1)
    with MemOS.open(home) as mos:
        c = mos.cube("docs")
        assert c.search("zebras", top_k=1)[0].memory.id == ms[0].id
        stats = c.stats()
        assert stats["live"] == 49 and stats["index_head"] == c.head
        live_ids = {m.id for m in c.list(limit=100)}
        assert live_ids == {m.id for m in ms} - {ms[1].id}


def test_request_id_makes_writes_idempotent(cube):
    from memos.kernel.kernel import request_scope

    with request_scope("req-1"):
        first = cube.add("written once even if retried")
    with request_scope("req-1"):
        again = cube.add("written once even if retried")
    assert again.id == first.id and cube.head == 1
    with request_scope("req-2"):
        up = cube.update(first.id, "edited once")
    with request_scope("req-2"):
        up2 = cube.update(first.id, "edited once")
    assert up2.version == up.version == 2 and cube.head == 2
    assert cube.log()[-1].detail["request"] == "req-2"


def test_ids_are_uuid7_and_sort_in_creation_order_within_a_millisecond():
    import uuid

    from memos.models import _next_after, new_id

    ids = [new_id() for _ in range(5000)]  # many share a millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids[:50])
    # the counter carries into the timestamp instead of wrapping
    top = (5 << 80) | (0x7 << 76) | (0xFFF << 64) | (0b10 << 62) | ((1 << 62) - 1)
    nxt = _next_after(top)
    assert nxt >> 80 == 6 and uuid.UUID(int=nxt).version == 7 and nxt > top


def test_home_refuses_another_embedder(tmp_path):
    """Stored vectors only make sense to the embedder that wrote them: a home stamped with MiniLM refuses
    an endpoint embedder (typed error, lock released, data untouched)."""
    import json

    from memos import MemOS
    from memos.errors import CorruptPayload, ModelMismatch

    home = tmp_path / "h"
    with MemOS.open(home) as mos:
        mid = mos.create_cube("c").add("the spare key is under the blue pot").id
    assert json.loads((home / "embedder.json").read_text()) == {"name": "minilm", "model": "all-MiniLM-L6-v2", "dim": 384}
    other = {"name": "openai", "options": {"base_url": "http://127.0.0.1:9/v1", "model": "text-embed", "dim": 384}}
    with pytest.raises(ModelMismatch, match="export its cubes"):
        MemOS.open(home, embedder=other)
    with MemOS.open(home) as mos:  # the refused open left the lock free and the data as it was
        assert mos.cube("c").search("where is the spare key", top_k=1)[0].memory.id == mid
    # an endpoint that has not told its dimension yet is compared by name and model only
    fresh = tmp_path / "f"
    MemOS.open(fresh, embedder={**other, "options": {**other["options"], "dim": None}}).close()
    MemOS.open(fresh, embedder=other).close()
    with pytest.raises(ModelMismatch):
        MemOS.open(fresh, embedder={**other, "options": {**other["options"], "model": "another-model"}})
    # a damaged stamp is an error that names the file, not a silently skipped check
    (fresh / "embedder.json").write_text("{not json")
    with pytest.raises(CorruptPayload, match="embedder.json"):
        MemOS.open(fresh, embedder=other)
