"""Conformance suite for storage backends, shipped as a library (like LangGraph's checkpoint conformance).

A backend's test module subclasses :class:`BackendConformance` and provides a ``backend`` fixture
returning a fresh, empty backend; pytest then runs every ``test_*`` method against it::

    class TestSqlite(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            b = SqliteBackend(tmp_path / "m.db"); yield b; b.close()
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from memos.errors import Conflict, CubeExists, CubeNotFound
from memos.models import Acl, DerivedFrom, LogEntry, MemCube, Memory, Provenance, State
from memos.storage import Commit, GetCube, PutCube, PutRecord, StorageBackend


def _mem(cube: str, mid: str, version: int, commit: int, text: str, state: State = State.activated) -> Memory:
    return Memory(id=mid, cube=cube, version=version, commit=commit, text=text, state=state,
                  metadata={"n": version}, provenance=Provenance(op="add"))


def _commit(b: StorageBackend, cube: str, head: int, versions: list[Memory], purge: tuple[str, ...] = (),
            op: str = "add") -> int:
    entry = LogEntry(cube=cube, commit=head + 1, op=op,
                     items=[DerivedFrom(id=m.id, version=m.version) for m in versions]
                     + [DerivedFrom(id=p, version=0) for p in purge])
    vec = {(m.id, m.version): np.full(4, m.version, dtype=np.float32).tobytes() for m in versions}
    return b.commit(Commit(entry=entry, versions=tuple(versions), vectors=vec, purge=purge, expected_head=head))


class BackendConformance:
    """Every storage backend must pass these."""

    @pytest.fixture
    def backend(self) -> Any:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def test_cube_lifecycle(self, backend: StorageBackend) -> None:
        assert backend.get_cube("c1") is None
        backend.put_cube(MemCube(name="c1", owner="alice"), create=True)
        with pytest.raises(CubeExists):
            backend.put_cube(MemCube(name="c1", owner="bob"), create=True)
        got = backend.get_cube("c1")
        assert got is not None and got.owner == "alice" and got.head == 0
        backend.put_cube(got.model_copy(update={"acl": Acl(readers=["bob"])}))
        assert backend.get_cube("c1").acl.readers == ["bob"]
        backend.put_cube(MemCube(name="c0", owner="x"), create=True)
        assert [c.name for c in backend.list_cubes()] == ["c0", "c1"]
        assert backend.drop_cube("c1") is True
        assert backend.get_cube("c1") is None and backend.drop_cube("c1") is False

    def test_commit_versions_and_head(self, backend: StorageBackend) -> None:
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        assert _commit(backend, "c", 0, [_mem("c", "a", 1, 1, "one"), _mem("c", "b", 1, 1, "bee")]) == 1
        assert _commit(backend, "c", 1, [_mem("c", "a", 2, 2, "two")]) == 2
        assert backend.get_cube("c").head == 2
        a, b, missing = backend.get_memories("c", ["a", "b", "zz"])
        assert a.text == "two" and a.version == 2 and b.text == "bee" and missing is None
        assert backend.get_memories("c", ["a"], version=1)[0].text == "one"
        assert backend.get_memories("c", ["a"], at_commit=1)[0].text == "one"
        assert backend.get_memories("c", ["a"], at_commit=0)[0] is None
        assert [m.version for m in backend.history("c", "a")] == [1, 2]
        log = backend.read_log("c")
        assert [e.commit for e in log] == [1, 2] and log[1].items[0].id == "a"
        assert [e.commit for e in backend.read_log("c", after=1)] == [2]
        assert [e.commit for e in backend.read_log("c", upto=1)] == [1]

    def test_conflict_writes_nothing(self, backend: StorageBackend) -> None:
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        _commit(backend, "c", 0, [_mem("c", "a", 1, 1, "one")])
        with pytest.raises(Conflict):
            _commit(backend, "c", 0, [_mem("c", "x", 1, 1, "stale")])
        assert backend.get_cube("c").head == 1
        assert backend.get_memories("c", ["x"])[0] is None
        assert len(backend.read_log("c")) == 1

    def test_vector_blobs_round_trip_byte_for_byte(self, backend: StorageBackend) -> None:
        """A version's vector blob is opaque bytes: a main vector plus part vectors (memos.retrieval.parts),
        zero bytes and all, comes back exactly, current and as of its commit."""
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        rows = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
        rows[1, :8] = 0.0
        blob = rows.tobytes()
        m = _mem("c", "a", 1, 1, "three rows")
        entry = LogEntry(cube="c", commit=1, op="add", items=[DerivedFrom(id="a", version=1)])
        backend.commit(Commit(entry=entry, versions=(m,), vectors={("a", 1): blob}, expected_head=0))
        _commit(backend, "c", 1, [_mem("c", "b", 1, 2, "later")])
        assert bytes(backend.scan("c", ids=("a",))[0][1]) == blob
        assert bytes(dict((m.id, v) for m, v in backend.scan("c", at_commit=1))["a"]) == blob

    def test_commit_to_missing_cube(self, backend: StorageBackend) -> None:
        with pytest.raises(CubeNotFound):
            _commit(backend, "nope", 0, [_mem("nope", "a", 1, 1, "one")])

    def test_scan_current_and_time_travel(self, backend: StorageBackend) -> None:
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        _commit(backend, "c", 0, [_mem("c", "a", 1, 1, "a1"), _mem("c", "b", 1, 1, "b1")])
        _commit(backend, "c", 1, [_mem("c", "a", 2, 2, "a2", State.archived)])
        _commit(backend, "c", 2, [_mem("c", "d", 1, 3, "d1")])
        cur = {m.id: (m.text, v) for m, v in backend.scan("c")}
        assert {k: t for k, (t, _) in cur.items()} == {"a": "a2", "b": "b1", "d": "d1"}
        assert np.frombuffer(cur["a"][1], dtype=np.float32)[0] == 2.0
        old = {m.id: m.text for m, _ in backend.scan("c", at_commit=1, with_vectors=False)}
        assert old == {"a": "a1", "b": "b1"}
        only = backend.scan("c", ids=("b",), with_vectors=False)
        assert [m.id for m, v in only] == ["b"] and only[0][1] is None
        page = backend.scan("c", with_vectors=False, offset=1, limit=1)
        assert [m.id for m, _ in page] == ["b"]

    def test_purge_leaves_tombstone(self, backend: StorageBackend) -> None:
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        _commit(backend, "c", 0, [_mem("c", "a", 1, 1, "secret"), _mem("c", "b", 1, 1, "keep")])
        _commit(backend, "c", 1, [], purge=("a",), op="purge")
        assert backend.get_memories("c", ["a"])[0] is None
        assert backend.history("c", "a") == []
        assert [m.id for m, _ in backend.scan("c")] == ["b"]
        tomb = backend.read_log("c")[-1]
        assert tomb.op == "purge" and tomb.items[0].id == "a" and tomb.items[0].version == 0

    def test_batch_is_atomic(self, backend: StorageBackend) -> None:
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        entry = LogEntry(cube="c", commit=1, op="add")
        good = Commit(entry=entry, versions=(_mem("c", "a", 1, 1, "one"),), expected_head=0)
        with pytest.raises(CubeExists):
            backend.batch([good, PutCube(MemCube(name="c", owner="o"), create=True)])
        assert backend.get_cube("c").head == 0 and backend.get_memories("c", ["a"])[0] is None
        res = backend.batch([good, GetCube("c")])
        assert res[0] == 1 and res[1].head == 1

    def test_records(self, backend: StorageBackend) -> None:
        assert backend.get_record("keys", "k1") is None
        backend.put_record("keys", "k1", {"principal": "alice"})
        assert backend.get_record("keys", "k1") == {"principal": "alice"}
        backend.batch([PutRecord("keys", "k1", None)])
        assert backend.get_record("keys", "k1") is None

    def test_concurrent_writers_serialise(self, backend: StorageBackend) -> None:
        """Writers racing on one head: exactly one commit per head value wins, the rest see Conflict."""
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        wins: list[int] = []
        conflicts: list[int] = []
        lock = threading.Lock()

        def writer(i: int) -> None:
            for _ in range(20):
                head = backend.get_cube("c").head
                try:
                    _commit(backend, "c", head, [_mem("c", f"w{i}-{head}", 1, head + 1, "x")])
                    with lock:
                        wins.append(head + 1)
                except Conflict:
                    with lock:
                        conflicts.append(i)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == list(range(1, len(wins) + 1))
        assert [e.commit for e in backend.read_log("c")] == sorted(wins)
        assert len(wins) + len(conflicts) == 80


class SharedBackendConformance(BackendConformance):
    """For backends several kernels share (``shared = True``): subclasses also provide ``connect``, a
    fixture returning a factory that opens a *new client* on the same store as ``backend``."""

    @pytest.fixture
    def connect(self) -> Any:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def test_new_client_sees_everything(self, backend: StorageBackend, connect: Any) -> None:
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        _commit(backend, "c", 0, [_mem("c", "a", 1, 1, "one")])
        other = connect()
        try:
            assert other.get_cube("c").head == 1 and other.get_memories("c", ["a"])[0].text == "one"
        finally:
            other.close()

    def test_clients_race_on_one_head(self, backend: StorageBackend, connect: Any) -> None:
        """Separate clients (as separate kernels have): exactly one writer wins each head."""
        clients = [connect() for _ in range(3)]
        backend.put_cube(MemCube(name="c", owner="o"), create=True)
        barrier = threading.Barrier(len(clients))
        outcome: list[str] = []

        def write(i: int) -> None:
            barrier.wait()
            try:
                _commit(clients[i], "c", 0, [_mem("c", f"w{i}", 1, 1, "x")])
                outcome.append("win")
            except Conflict:
                outcome.append("conflict")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            assert sorted(outcome) == ["conflict", "conflict", "win"]
            assert clients[1].get_cube("c").head == 1 and len(clients[2].read_log("c")) == 1
        finally:
            for c in clients:
                c.close()


def shared_kernels_scenario(open_home: Any) -> None:
    """Two kernels (two homes) on one shared backend see each other's writes, indexes catching up.

    ``open_home(name) -> MemOS`` opens a kernel on the backend under test with its own home folder."""
    one, two = open_home("one"), open_home("two")
    try:
        cube = one.create_cube("team", owner="alice")
        m = cube.add("Alice moved to Lisbon in 2023", metadata={"session": 3})
        cube.add_many(["Bob likes pizza with pineapple", "Carol plays the cello"])
        assert cube.search("where does alice live?", top_k=1)[0].memory.id == m.id
        cube.update(m.id, "Alice moved to Porto in 2025")
        assert cube.rollback(m.id, 1).text == "Alice moved to Lisbon in 2023"

        other = two.cube("team")  # a second kernel, another home, the same store
        assert other.get(m.id).version == 3 and [v.version for v in other.history(m.id)] == [1, 2, 3]
        assert other.search("who plays an instrument?", top_k=1)[0].memory.text == "Carol plays the cello"
        # the first kernel writes again: the second one's loaded index catches up from the log
        new = cube.add("Dave keeps bees on the roof")
        assert other.search("beekeeping on the roof", top_k=1)[0].memory.id == new.id
        assert other.head == cube.head == 5
        # and the other way round, through the same optimistic head check
        other.update(new.id, "Dave keeps bees in the garden")
        assert cube.search("bees garden", top_k=1)[0].memory.version == 2
        # dropped and recreated by one kernel: the other must not serve its stale index
        one.delete_cube("team")
        fresh = one.create_cube("team", owner="alice")
        fresh.add("Erin repairs bicycles")
        assert [h.memory.text for h in two.cube("team").search("bicycle repair", top_k=5)] == ["Erin repairs bicycles"]
    finally:
        one.close()
        two.close()
