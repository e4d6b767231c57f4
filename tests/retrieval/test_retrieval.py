"""Retrieval pieces: BM25, fusion, filters, FAISS flat -> HNSW, saved-index restore."""

from __future__ import annotations

import numpy as np
import pytest

from kernel_backends.faiss_index import FaissIndex, FaissIndexFactory
from memos.errors import InvalidInput
from memos.models import Memory, Provenance
from memos.retrieval.bm25 import BM25Index, tokenize
from memos.retrieval.cube_index import CubeIndex, SearchParams, check_filters


def test_tokenize_stems_and_drops_stopwords():
    assert tokenize("Where does Alice live? She moved to Lisbon!") == ["alic", "live", "move", "lisbon"]
    assert tokenize("Caroline's paintings") == ["carolin", "paint"]


def test_bm25_prefers_rare_terms_and_respects_mask():
    bm = BM25Index()
    docs = ["the cat sat", "the dog sat", "a zebra danced", "cat and dog"]
    for i, d in enumerate(docs):
        bm.add(i, d)
    mask = np.ones(4, dtype=bool)
    s = bm.scores(tokenize("zebra cat"), mask)
    assert int(np.argmax(s)) == 2 and s[1] == 0
    mask[2] = False
    assert bm.scores(tokenize("zebra"), mask).max() == 0
    with pytest.raises(ValueError):
        bm.add(7, "gap")


def unit(rng, n, d=16):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_faiss_flat_to_hnsw_and_filtered_search(tmp_path):
    rng = np.random.default_rng(0)
    vecs = unit(rng, 400)
    idx = FaissIndex(16, hnsw_threshold=300)
    idx.add(np.arange(200), vecs[:200])
    assert idx.kind == "flat"
    idx.add(np.arange(200, 400), vecs[200:])
    assert idx.kind == "hnsw" and len(idx) == 400
    labels, scores = idx.search(vecs[123], 5)
    assert labels[0] == 123 and scores[0] == pytest.approx(1.0, abs=1e-4)
    allowed = np.zeros(400, dtype=bool)
    allowed[::7] = True
    labels, _ = idx.search(vecs[123], 10, allowed)
    exact = np.argsort(-(vecs[allowed] @ vecs[123]))[:10]
    assert set(labels.tolist()) == set(np.flatnonzero(allowed)[exact].tolist())
    path = str(tmp_path / "i.faiss")
    idx.save(path)
    again = FaissIndexFactory(hnsw_threshold=300).load(path)
    assert again.kind == "hnsw" and again.search(vecs[5], 1)[0][0] == 5
    with pytest.raises(ValueError):
        idx.add(np.array([7]), vecs[:1])


def mem(i: int, text: str, **kw) -> Memory:
    return Memory(id=f"m{i}", cube="c", text=text, provenance=Provenance(op="add"), **kw)


def test_cube_index_fusion_filters_and_restore(tmp_path):
    rng = np.random.default_rng(1)
    ms = [mem(i, t, metadata={"g": i % 2}) for i, t in enumerate(
        ["alpha bravo", "charlie delta", "echo foxtrot", "alpha charlie", "golf hotel"])]
    vecs = unit(rng, len(ms))
    factory = FaissIndexFactory()
    ix = CubeIndex(16, factory.create(16), factory.create(16))
    ix.upsert(ms, list(vecs))
    p = SearchParams(top_k=3, now=0.0)
    # the query vector equals m4's vector and "alpha" matches m0 and m3
    hits = ix.search("alpha", vecs[4], p)
    assert {h for h, _ in hits} >= {"m0", "m3", "m4"}
    assert all(0.0 <= s <= 1.0 for _, s in hits)
    rrf = ix.search("alpha", vecs[4], SearchParams(top_k=3, now=0.0, fusion="rrf"))
    assert {h for h, _ in rrf} == {h for h, _ in hits}
    only_even = ix.search("alpha", vecs[4], SearchParams(top_k=5, now=0.0, filters={"g": [0]}))
    assert {h for h, _ in only_even} <= {"m0", "m2", "m4"}
    ix.upsert([mem(0, "zulu", metadata={"g": 0})], list(unit(rng, 1)))  # update retires the old slot
    assert ix.slots == 6 and ix.dead == 1 and len(ix) == 5
    ix.save(str(tmp_path / "ix"), head=7)
    current = [(m, v) for m, v in zip(ms[1:], vecs[1:])] + [(mem(0, "zulu", metadata={"g": 0}), unit(rng, 1)[0])]
    current.append((mem(9, "india juliet"), unit(rng, 1)[0]))  # written after the save
    back = CubeIndex.restore(str(tmp_path / "ix"), factory, 16, current)
    assert back is not None and len(back) == 6
    assert back.search("juliet", None, p)[0][0] == "m9"
    assert back.search("zulu", None, p)[0][0] == "m0"
    assert CubeIndex.restore(str(tmp_path / "missing"), factory, 16, current) is None


def test_check_filters():
    assert check_filters({"a": 1, "b": [1, 2]}) == {"a": [1], "b": [1, 2]}
    for bad in ({"a": {"x": 1}}, {"a": []}, {"": 1}, ["a"], {"a": float("inf")}):
        with pytest.raises(InvalidInput):
            check_filters(bad)


def test_kernel_uses_hnsw_past_threshold(tmp_path):
    from memos import MemOS

    with MemOS.open(tmp_path / "h", index={"hnsw_threshold": 64}) as mos:
        c = mos.create_cube("big")
        ms = c.add_many([f"record {i} mentions city{i % 10} and item{i}" for i in range(150)])
        assert c.stats()["dense"] == "hnsw"
        assert c.search("item77 city7", top_k=1)[0].memory.id == ms[77].id
        c.delete(ms[77].id)
        assert all(h.memory.id != ms[77].id for h in c.search("item77", top_k=5))
    with MemOS.open(tmp_path / "h", index={"hnsw_threshold": 64}) as mos:
        c = mos.cube("big")
        assert c.stats()["dense"] == "hnsw" and c.stats()["live"] == 149
        assert c.search("item78", top_k=1)[0].memory.id == ms[78].id


def test_faiss_searches_on_one_thread_and_restores_the_callers_count(monkeypatch):
    """A search runs with one OpenMP thread (threads only add outliers to a single-query search); the
    caller's thread count, which torch shares, is restored afterwards, and adds keep it."""
    import faiss

    seen = []
    real_search, real_add = faiss.IndexFlatIP.search, faiss.IndexFlatIP.add

    def spy_search(self, *args, **kwargs):
        seen.append(("search", faiss.omp_get_max_threads()))
        return real_search(self, *args, **kwargs)

    def spy_add(self, *args, **kwargs):
        seen.append(("add", faiss.omp_get_max_threads()))
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(faiss.IndexFlatIP, "search", spy_search)
    monkeypatch.setattr(faiss.IndexFlatIP, "add", spy_add)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        rng = np.random.default_rng(3)
        idx = FaissIndex(16)
        idx.add(np.arange(50), unit(rng, 50))
        assert idx.search(unit(rng, 1)[0], 3)[0].shape == (3,)
        assert seen == [("add", 2), ("search", 1)]
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)
