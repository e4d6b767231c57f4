"""Multi-vector memories: sentence parts, their stored form, and how they score in the cube index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kernel_backends.faiss_index import FaissIndexFactory
from memos.models import Memory, Provenance
from memos.retrieval.cube_index import CubeIndex, SearchParams
from memos.retrieval.parts import MAX_PARTS, pack, split_label, split_parts, unpack


def test_split_parts_carries_the_speaker_label_and_joins_fragments():
    text = "Melanie: Wow! That's great. I'm off to go swimming with the kids.\nTalk soon"
    assert split_parts(text) == ["Melanie: Wow! That's great.", "Melanie: I'm off to go swimming with the kids.",
                                 "Melanie: Talk soon"]
    assert split_label("Dr. Who: hi") == ("", "Dr. Who: hi")  # a sentence end inside: not a label
    assert split_label("see http://example.com: it works") == ("", "see http://example.com: it works")
    assert split_label("Alice: moved. To Porto.")[0] == "Alice: "
    assert split_parts("Alice moved to Lisbon in 2023.") == []
    assert split_parts("Ok. Sure!") == []  # two one-word fragments are one part: no parts
    assert split_parts("") == []


def test_split_parts_caps_long_texts():
    text = " ".join(f"Sentence number {i} is here." for i in range(100))
    parts = split_parts(text)
    assert len(parts) == MAX_PARTS
    assert " ".join(parts) == text  # runs of whole sentences, nothing lost or repeated


def test_pack_unpack_round_trip():
    main = np.arange(4, dtype=np.float32)
    parts = np.ones((3, 4), dtype=np.float32)
    m, p = unpack(pack(main, parts), 4)
    assert np.array_equal(m, main) and np.array_equal(p, parts)
    m, p = unpack(pack(main), 4)
    assert np.array_equal(m, main) and p is None
    m, p = unpack(main.tobytes(), 4)  # a blob written before parts existed
    assert np.array_equal(m, main) and p is None
    m, p = unpack(None, 4)
    assert not m.any() and p is None
    with pytest.raises(ValueError):
        unpack(np.zeros(6, dtype=np.float32).tobytes(), 4)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _mem(i: int, text: str) -> Memory:
    return Memory(id=f"m{i}", cube="c", text=text, provenance=Provenance(op="add"))


def _index(rng: np.random.Generator, n: int = 40, dim: int = 16) -> tuple[CubeIndex, np.ndarray, np.ndarray]:
    """``n`` memories with random main vectors; memory 7 has a part equal to ``query``, memory 3's main
    vector and parts are the closest to ``query`` of all others (but no part of it matches)."""
    query = _unit(rng.standard_normal(dim))
    mains = _unit(rng.standard_normal((n, dim)))
    mains -= np.outer(mains @ query, query)  # every main vector orthogonal to the query ...
    mains = _unit(mains)
    mains[3] = _unit(mains[3] + 0.9 * query)  # ... but memory 3's, which leans towards it
    blobs = []
    for i in range(n):
        parts = _unit(rng.standard_normal((2, dim)))
        parts -= np.outer(parts @ query, query)
        parts = _unit(_unit(parts) + (0.3 if i == 3 else -0.2) * query)  # m3's parts lean a little too
        if i == 7:
            parts[1] = query
        blobs.append(pack(mains[i], parts))
    f = FaissIndexFactory()
    ix = CubeIndex(dim, f.create(dim), f.create(dim))
    ix.upsert([_mem(i, f"memory {i}") for i in range(n)], blobs)
    return ix, query, mains


def test_best_part_lifts_a_memory_and_part_weight_zero_ignores_parts():
    ix, query, _ = _index(np.random.default_rng(0))
    assert ix.part_rows == 80
    with_parts = ix.search("unrelated words", query, SearchParams(top_k=3, now=0.0, dense_weight=1.0))
    assert with_parts[0][0] == "m7"
    without = ix.search("unrelated words", query, SearchParams(top_k=3, now=0.0, dense_weight=1.0, part_weight=0.0))
    assert without[0][0] == "m3" and "m7" != without[0][0]


def test_parts_follow_updates_filters_and_restore(tmp_path):
    rng = np.random.default_rng(1)
    ix, query, mains = _index(rng)
    # memory 7 is updated to a version without parts: its old parts no longer count
    ix.upsert([_mem(7, "memory 7 v2")], [pack(mains[7])])
    top = ix.search("zzz", query, SearchParams(top_k=1, now=0.0, dense_weight=1.0))
    assert top[0][0] == "m3"
    # memory 11 gains a matching part; restore keeps it (saved parts + owners)
    parts = np.stack([query, _unit(rng.standard_normal(16))])
    ix.upsert([_mem(11, "memory 11 v2")], [pack(mains[11], parts)])
    assert ix.search("zzz", query, SearchParams(top_k=1, now=0.0, dense_weight=1.0))[0][0] == "m11"
    ix.save(str(tmp_path / "ix"), head=3)
    current = [(_mem(i, "x"), None) for i in range(40)]  # vectors unused for slots restored from the save
    back = CubeIndex.restore(str(tmp_path / "ix"), FaissIndexFactory(), 16, current)
    assert back is not None and back.part_rows == ix.part_rows
    assert back.search("zzz", query, SearchParams(top_k=1, now=0.0, dense_weight=1.0))[0][0] == "m11"
    # a part-owner file that disagrees with the saved table is refused (the index is rebuilt instead)
    with open(tmp_path / "ix" / "slots.json", encoding="utf-8") as fh:
        table = json.load(fh)
    table["part_rows"] += 1
    with open(tmp_path / "ix" / "slots.json", "w", encoding="utf-8") as fh:
        json.dump(table, fh)
    assert CubeIndex.restore(str(tmp_path / "ix"), FaissIndexFactory(), 16, current) is None


def test_filtered_search_reaches_parts_of_allowed_memories_only():
    ix, query, _ = _index(np.random.default_rng(2))
    ix.remove("m7")  # retired: its matching part must not bring it back
    hits = ix.search("zzz", query, SearchParams(top_k=5, now=0.0, dense_weight=1.0))
    assert "m7" not in {h for h, _ in hits} and hits[0][0] == "m3"


def test_kernel_stores_parts_and_keeps_them_through_export_and_time_travel(tmp_path):
    from memos import MemOS

    turn = ("Melanie: Thanks for asking, it has been a busy month with the kids and work. "
            "I signed up for a pottery class yesterday and loved shaping the clay. "
            "We also painted the fence and cleaned out the garage.")
    fillers = [f"Melanie: I talked to my neighbour about the weather on day {i} and it was fine."
               for i in range(30)]
    with MemOS.open(tmp_path / "home") as mos:
        cube = mos.create_cube("conv")
        cube.add_many(fillers)
        target = cube.add(turn)
        stats = cube.stats()
        assert stats["part_vectors"] == 3  # one per sentence of the long turn; the one-sentence fillers none
        cube.add("Alice moved to Porto.", context="Bob: where did Alice go after Lisbon?")
        assert cube.stats()["part_vectors"] == 4  # with a context, the body alone is kept as a part
        hits = cube.search("which class did Melanie join?", top_k=3)
        assert hits[0].memory.id == target.id
        head = cube.head
        cube.update(target.id, metadata={"topic": "hobbies"})  # no re-embedding: the parts are kept
        assert cube.stats()["part_vectors"] == 7 and cube.stats()["dead_slots"] == 1
        assert cube.search("which class did Melanie join?", top_k=1)[0].memory.id == target.id
        past = cube.at(head).search("which class did Melanie join?", top_k=1)
        assert past[0].memory.id == target.id and past[0].memory.version == 1
        out = tmp_path / "conv.memos"
        mos.export_cube("conv", out)
        copy = mos.import_cube(out, name="conv-copy")
        assert copy.stats()["part_vectors"] == 4
        a = [(h.memory.id, round(h.score, 5)) for h in cube.search("pottery clay", top_k=5)]
        b = [(h.memory.id, round(h.score, 5)) for h in copy.search("pottery clay", top_k=5)]
        assert a == b
    with MemOS.open(tmp_path / "home") as mos:  # the saved index (with its parts) is adopted on reopen
        cube = mos.cube("conv")
        assert cube.search("which class did Melanie join?", top_k=1)[0].memory.id == target.id
        assert cube.stats()["part_vectors"] >= 4
