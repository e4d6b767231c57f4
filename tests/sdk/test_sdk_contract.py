"""One SDK test module, run against the embedded kernel and against a Ray cluster on Redis.

The same calls must behave the same way: results, versions, time travel, typed errors.
"""

from __future__ import annotations

import uuid

import pytest

from memos.errors import AccessDenied, CubeExists, CubeNotFound, InvalidInput, MemoryNotFound, VersionNotFound


@pytest.fixture(params=["embedded", pytest.param("cluster", marks=[pytest.mark.slow, pytest.mark.services])])
def mos(request, tmp_path):
    if request.param == "embedded":
        from memos import MemOS

        m = MemOS.open(tmp_path / "home")
        yield m
        m.close()
    else:
        yield request.getfixturevalue("cluster").mos


@pytest.fixture
def cube(mos):
    name = f"sdk-{uuid.uuid4().hex[:10]}"
    c = mos.create_cube(name, owner="alice")
    yield c
    mos.delete_cube(name)


def test_versions_search_time_travel(cube):
    m = cube.add("Alice moved to Lisbon in 2023", metadata={"session": 3}, event_time="2023-05-01")
    cube.add_many(["Bob plays the trumpet", {"text": "Alice adopted a collie", "metadata": {"session": 4}}])
    assert cube.search("where does alice live", top_k=1)[0].memory.id == m.id
    assert [h.memory.text for h in cube.search("alice", filters={"session": 4})] == ["Alice adopted a collie"]
    cube.update(m.id, "Alice moved to Porto in 2025")
    assert [v.version for v in cube.history(m.id)] == [1, 2]
    assert cube.at(2).get(m.id).text == "Alice moved to Lisbon in 2023"
    r = cube.rollback(m.id, 1)
    assert r.version == 3 and r.text == "Alice moved to Lisbon in 2023"
    assert cube.delete(m.id).state.value == "archived"
    assert all(h.memory.id != m.id for h in cube.search("Lisbon", top_k=5))
    assert [e.commit for e in cube.log()] == list(range(1, cube.head + 1))


def test_typed_errors(mos, cube):
    m = cube.add("only version")
    with pytest.raises(VersionNotFound):
        cube.rollback(m.id, 9)
    with pytest.raises(MemoryNotFound):
        cube.get("no-such-id")
    with pytest.raises(InvalidInput):
        cube.add("")
    with pytest.raises(CubeExists):
        mos.create_cube(cube.name)
    with pytest.raises(CubeNotFound):
        mos.cube("no-such-cube-here")
    head = cube.head
    with pytest.raises(AccessDenied):
        mos.as_principal("mallory").cube(cube.name)
    cube.grant("bob", "read")
    assert mos.as_principal("bob").cube(cube.name).get(m.id).text == "only version"
    assert cube.head == head + 1


def test_async_twin(cube):
    import asyncio

    m = cube.add("async works in every mode")
    hits = asyncio.run(cube.asearch("async works", top_k=1))
    assert hits[0].memory.id == m.id
