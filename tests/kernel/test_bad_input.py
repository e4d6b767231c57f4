"""Bad input: a typed error with a clear message, and the store unchanged (same head, same contents)."""

from __future__ import annotations

import pytest

from memos.errors import (
    AccessDenied,
    CubeExists,
    CubeNotFound,
    InvalidCubeName,
    InvalidInput,
    MemoryNotFound,
    MemosError,
    VersionNotFound,
)


def snapshot(mos):
    cubes = {}
    for c in mos.list_cubes():
        cube = mos.cube(c.name)
        cubes[c.name] = (c.head, sorted((m.id, m.version, m.text) for m in cube.list(limit=1000,
                                                                                         include_archived=True)))
    return cubes


@pytest.fixture
def seeded(mos):
    c = mos.create_cube("alice", owner="alice")
    m = c.add("Alice moved to Lisbon in 2023", metadata={"session": 3})
    return mos, c, m


CASES = {
    "invalid cube name": (InvalidCubeName, lambda mos, c, m: mos.create_cube("Bad Name!")),
    "uppercase cube name": (InvalidCubeName, lambda mos, c, m: mos.create_cube("Alice")),
    "too long cube name": (InvalidCubeName, lambda mos, c, m: mos.create_cube("a" * 65)),
    "duplicate cube": (CubeExists, lambda mos, c, m: mos.create_cube("alice")),
    "unknown cube": (CubeNotFound, lambda mos, c, m: mos.cube("nobody")),
    "add to unknown cube": (CubeNotFound, lambda mos, c, m: mos._kernel.add_many(
        "nobody", [__import__("memos.kernel", fromlist=["new_memory"]).new_memory("x")])),
    "unknown memory id": (MemoryNotFound, lambda mos, c, m: c.get("0000-nope")),
    "update unknown memory": (MemoryNotFound, lambda mos, c, m: c.update("0000-nope", "x")),
    "delete unknown memory": (MemoryNotFound, lambda mos, c, m: c.delete("0000-nope")),
    "rollback to missing version": (VersionNotFound, lambda mos, c, m: c.rollback(m.id, 7)),
    "rollback to version 0": (InvalidInput, lambda mos, c, m: c.rollback(m.id, 0)),
    "empty text": (InvalidInput, lambda mos, c, m: c.add("   ")),
    "non-string text": (InvalidInput, lambda mos, c, m: c.add(42)),  # type: ignore[arg-type]
    "oversize text": (InvalidInput, lambda mos, c, m: c.add("x" * 1_000_001)),
    "metadata not an object": (InvalidInput, lambda mos, c, m: c.add("ok", metadata=["a"])),  # type: ignore
    "metadata not JSON": (InvalidInput, lambda mos, c, m: c.add("ok", metadata={"f": object()})),
    "metadata NaN": (InvalidInput, lambda mos, c, m: c.add("ok", metadata={"f": float("nan")})),
    "NUL in text": (InvalidInput, lambda mos, c, m: c.add("a\x00b")),
    "NUL in metadata": (InvalidInput, lambda mos, c, m: c.add("ok", metadata={"k": ["\x00"]})),
    "bad event time": (InvalidInput, lambda mos, c, m: c.add("ok", event_time="yesterday-ish")),
    "bad tags": (InvalidInput, lambda mos, c, m: c.add("ok", tags="not-a-list")),  # type: ignore[arg-type]
    "one bad item spoils the batch": (InvalidInput, lambda mos, c, m: c.add_many(["fine", ""])),
    "empty batch": (InvalidInput, lambda mos, c, m: c.add_many([])),
    "update with nothing": (InvalidInput, lambda mos, c, m: c.update(m.id)),
    "empty query": (InvalidInput, lambda mos, c, m: c.search("")),
    "top_k zero": (InvalidInput, lambda mos, c, m: c.search("alice", top_k=0)),
    "bad filter": (InvalidInput, lambda mos, c, m: c.search("alice", filters={"a": {"b": 1}})),
    "bad time range": (InvalidInput, lambda mos, c, m: c.search("alice", time_range=("2024-01-01", "2023-01-01"))),
    "bad grant access": (InvalidInput, lambda mos, c, m: c.grant("bob", "own")),
    "reader cannot write": (AccessDenied, lambda mos, c, m: mos.as_principal("bob").cube("alice")),
    "stranger cannot add": (AccessDenied, lambda mos, c, m: mos.as_principal("eve")._kernel.add_many(
        "alice", [__import__("memos.kernel", fromlist=["new_memory"]).new_memory("x")], principal="eve")),
    "stranger cannot delete cube": (AccessDenied, lambda mos, c, m: mos.as_principal("eve").delete_cube("alice")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_typed_and_changes_nothing(seeded, case):
    mos, c, m = seeded
    before = snapshot(mos)
    err_type, call = CASES[case]
    with pytest.raises(err_type) as err:
        call(mos, c, m)
    assert isinstance(err.value, MemosError)
    body = err.value.to_dict()
    assert body["error"]["type"] == err_type.__name__ and body["error"]["message"]
    assert snapshot(mos) == before


def test_acl_grants(seeded):
    mos, c, m = seeded
    bob = mos.as_principal("bob")
    with pytest.raises(AccessDenied):
        bob.cube("alice")
    assert [x.name for x in bob.list_cubes()] == []
    c.grant("bob", "read")
    bc = bob.cube("alice")
    assert bc.search("Lisbon", top_k=1)[0].memory.id == m.id
    with pytest.raises(AccessDenied):
        bc.add("bob writes")
    with pytest.raises(AccessDenied):
        bc.grant("eve", "read")
    c.grant("bob", "write")
    assert bc.add("bob writes").provenance.actor == "bob"
    c.grant("bob", "revoke")
    with pytest.raises(AccessDenied):
        bob.cube("alice")
    ops = [e.op for e in c.log()]
    assert ops.count("grant") == 3


def test_principal_owns_what_it_creates(mos):
    bob = mos.as_principal("bob")
    c = bob.create_cube("bobs")
    assert c.info().owner == "bob"
    with pytest.raises(InvalidInput):
        bob.create_cube("not-bobs", owner="alice")
    with pytest.raises(AccessDenied):
        mos.as_principal("alice").cube("bobs")


def test_more_bad_inputs_found_by_fuzzing(seeded):
    mos, c, m = seeded
    before = snapshot(mos)
    for call in (lambda: c.log(after=2**70), lambda: c.get(m.id, version=2**70), lambda: c.rollback(m.id, 2**70),
                 lambda: c.add("x", event_time=1e300), lambda: c.add("bad \ud800 text"),
                 lambda: c.add("ok", tags=["\ud800"]), lambda: c.add("ok", metadata={"\ud800": 1}),
                 lambda: mos.create_cube("desc", description="\ud800")):
        with pytest.raises(InvalidInput):
            call()
    assert snapshot(mos) == before


def test_tasks_check_the_submitters_access(seeded):
    mos, c, m = seeded
    bob = mos.as_principal("bob")
    with pytest.raises(AccessDenied):
        bob.submit("sweep_expired", {"cube": "alice"})
    with pytest.raises(InvalidInput):
        bob.submit("sweep_expired", {"no": "cube"})
    c.grant("bob", "read")
    with pytest.raises(AccessDenied):  # read access is not enough to make a task write
        bob.submit("sweep_expired", {"cube": "alice"})
    with pytest.raises(InvalidInput):
        mos.generate("alice", "hi", engine="no-such-engine")
    with pytest.raises(AccessDenied):
        mos.as_principal("eve").generate("alice", "hi")  # refused before any model loads
