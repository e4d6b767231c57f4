"""Activation memories in the kernel: store, reuse copy-on-read, migrate, residency under budgets."""

from __future__ import annotations

import hashlib

import pytest

from memos.activation.store import ActivationMemory
from memos.errors import CorruptPayload, InvalidInput, ModelMismatch
from memos.generation import build_prompt
from memos.residency import LFUPolicy, LRUPolicy, ResidencyPool

pytestmark = pytest.mark.slow

DOC = ("Zorblax is an alien botanist who lives on the moon Tessaly. Zorblax keeps a purple llama named "
       "Quimby and grows blue ferns in a glass dome. ") * 6


def sha(path: str) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_add_activation_and_generate_copy_on_read(mos_llm, engine):
    cube = mos_llm.create_cube("zorb")
    kv = cube.add_activation(DOC)
    assert kv.kind == "activation" and kv.payload.format == "safetensors-kv"
    assert kv.payload.model == engine.fingerprint().model_dump()
    assert kv.payload.tokens == engine.count_tokens(engine._render_chat([{"role": "system", "content": DOC}]))
    path = mos_llm._kernel.blobs.local_path(kv.payload.uri)
    assert sha(path) == kv.payload.sha256 and kv.payload.bytes == len(open(path, "rb").read())

    q = "What is the name of the llama?"
    first = mos_llm.generate("zorb", q, kv=[kv.id], retrieve=False, max_tokens=16)
    second = mos_llm.generate("zorb", q, kv=[kv.id], retrieve=False, max_tokens=16)
    assert first.text == second.text and first.text
    assert first.used["kv"] == [{"id": kv.id, "version": 1}] and first.used["prefix_tokens"] == kv.payload.tokens
    # same computation as the engine without the store: the prefix rebuilt from scratch
    direct = engine.generate(q, kv=[engine.build_kv(DOC, chat=True)], chat=True, max_tokens=16)
    assert direct.text == first.text
    assert sha(path) == kv.payload.sha256  # the stored blob is byte-identical after generating
    stats = mos_llm.status()["workers"][0]["resident"]
    assert stats["hits"] >= 2 and stats["tiers"]["host"]["items"] == 1


def test_generate_with_retrieval_reports_used(mos_llm):
    cube = mos_llm.create_cube("facts")
    fact = cube.add("Zorblax's pet is a purple llama named Quimby.")
    cube.add("The weather on Tessaly is always foggy.")
    out = mos_llm.generate("facts", "What pet does Zorblax have?", top_k=1, max_tokens=16)
    assert out.used["retrieved"] == [{"id": fact.id, "version": 1}]
    assert out.ttft_ms > 0 and out.text
    assert build_prompt("Q?", ["a", "b"]) == "Relevant memories:\n- a\n- b\n\nQ?"


def test_model_mismatch_and_corrupt_blob(mos_llm, engine):
    cube = mos_llm.create_cube("zorb")
    kv = cube.add_activation(DOC)
    act: ActivationMemory = mos_llm._activation()

    class OtherModel:
        name = "other"

        def fingerprint(self):
            return engine.fingerprint().model_copy(update={"n_layers": 12})

    act.pool.drop(("zorb", kv.payload.sha256))
    with pytest.raises(ModelMismatch):
        act.load("zorb", cube.get(kv.id), OtherModel())
    path = mos_llm._kernel.blobs.local_path(kv.payload.uri)
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(CorruptPayload):
        mos_llm.generate("zorb", "hi", kv=[kv.id], retrieve=False)


def test_eviction_under_small_budget_keeps_correctness(mos_llm, engine):
    cube = mos_llm.create_cube("zorb")
    a = cube.add_activation(DOC)
    other = "Quimby the llama hates rain and loves apples. " * 12
    b = cube.add_activation(other)
    act: ActivationMemory = mos_llm._activation()
    sizes = [engine.build_kv(t, chat=True).nbytes for t in (DOC, other)]
    budget = int(max(sizes) * 1.05)
    assert sum(sizes) > budget
    act.pool = ResidencyPool({"host": budget}, LRUPolicy())  # room for one cache at a time
    q = "What does the text say about the llama?"
    ref = {m.id: mos_llm.generate("zorb", q, kv=[m.id], retrieve=False, max_tokens=12).text for m in (a, b)}
    for _ in range(2):
        for m in (a, b):
            assert mos_llm.generate("zorb", q, kv=[m.id], retrieve=False, max_tokens=12).text == ref[m.id]
    st = act.pool.stats()
    assert st["evictions"] >= 3 and st["misses"] >= 4 and st["tiers"]["host"]["items"] == 1


def test_migration_between_kinds(mos_llm):
    cube = mos_llm.create_cube("mig")
    m1 = cube.add("Quimby is a purple llama.")
    m2 = cube.add("Zorblax lives on Tessaly.")
    act = mos_llm.migrate("mig", m1.id, to="activation")
    assert act.kind == "activation" and act.version == 2 and act.text == m1.text
    assert act.provenance.op == "migrate" and act.payload.tokens > 0
    back = mos_llm.migrate("mig", m1.id, to="plaintext")
    assert back.kind == "plaintext" and back.payload is None and back.version == 3
    with pytest.raises(InvalidInput):
        mos_llm.migrate("mig", m1.id, to="plaintext")
    batch = mos_llm.migrate("mig", [m1.id, m2.id], to="activation")
    assert [(d.id, d.version) for d in batch.provenance.derived_from] == [(m1.id, 3), (m2.id, 1)]
    assert "Quimby" in batch.text and "Tessaly" in batch.text
    with pytest.raises(InvalidInput):
        mos_llm.generate("mig", "q", kv=[m2.id])  # a plaintext memory is not a KV prefix


def test_pool_policies_and_pins():
    pool = ResidencyPool({"host": 100}, LRUPolicy())
    assert pool.put("a", "A", 40) and pool.put("b", "B", 40)
    assert pool.get("a") == "A"  # a is now most recent
    assert pool.put("c", "C", 40)  # evicts b (least recently used)
    assert "b" not in pool and pool.get("b") is None
    pool.pin("a")
    pool.pin("c")
    assert not pool.put("d", "D", 40)  # everything pinned: not resident, no error
    assert pool.put("e", "E", 500) is False  # larger than the budget
    st = pool.stats()
    assert (st["hits"], st["misses"], st["evictions"], st["rejected"]) == (1, 1, 1, 2)
    lfu = ResidencyPool({"host": 100}, LFUPolicy())
    lfu.put("x", 1, 50)
    lfu.put("y", 2, 50)
    for _ in range(3):
        lfu.get("x")
    lfu.put("z", 3, 50)
    assert "x" in lfu and "y" not in lfu
    with pytest.raises(InvalidInput):
        ResidencyPool({"gpu0": 1})


def test_prefetch_on_query_and_background_migration(mos_llm, engine):
    cube = mos_llm.create_cube("pre")
    kv = cube.add_activation(DOC)
    fact = cube.add("Quimby eats apples.")
    act: ActivationMemory = mos_llm._activation()
    act.pool.drop(("pre", kv.payload.sha256))
    cube.search("llama", top_k=1)  # a query: the cube's activation memories are prefetched
    mos_llm.tasks().drain(timeout_s=60)
    assert ("pre", kv.payload.sha256) in act.pool
    before = act.pool.stats()["hits"]
    mos_llm.generate("pre", "Who is Zorblax?", kv=[kv.id], retrieve=False, max_tokens=4)
    assert act.pool.stats()["hits"] == before + 1  # generation found the prefetched cache
    tid = mos_llm.submit("migrate", {"cube": "pre", "id": fact.id, "to": "activation"}, key="m1")
    assert mos_llm.submit("migrate", {"cube": "pre", "id": fact.id, "to": "activation"}, key="m1") == tid
    mos_llm.tasks().drain(timeout_s=60)
    assert cube.get(fact.id).kind == "activation" and cube.head == 3
    assert mos_llm.status()["queue"]["dead_letters"] == 0
