"""Smoke test with the real local model (SmolLM2-135M on CPU): extraction and promotion to activation memory.

The model is tiny, so the test asserts what must hold whatever it writes: the raw turns are stored, and
every extracted fact is accounted for (added with provenance, or merged) or the window's failure is
recorded on the turns; never a silent drop.
"""

from __future__ import annotations

import pytest

from memos.models import State

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_local_model_reads_a_conversation_and_promotes_hot_memories(mos_llm):
    cube = mos_llm.create_cube("alice")
    r = cube.add_messages([{"speaker": "Alice", "text": "I moved to Porto last month and I love it."},
                           {"speaker": "Bob", "text": "Nice! I started learning the guitar."}],
                          session=1, event_time="2025-01-02", llm="local")
    assert r.llm == "local" and len(r.turns) == 2 and r.llm_calls >= 1
    assert [cube.get(t).metadata["memory_type"] for t in r.turns] == ["turn", "turn"]
    if r.failures:
        assert r.failures[0].stage == "extract" and all(cube.get(t).metadata["extraction"] == "failed"
                                                        for t in r.failures[0].turns)
    else:
        assert r.extracted == len(r.facts_added) + r.merged_in_batch + len(r.duplicates)
        for fid in r.facts_added:
            fact = cube.get(fid)
            assert fact.metadata["memory_type"] == "fact" and fact.text.strip()
            assert {d.id for d in fact.provenance.derived_from} <= set(r.turns)

    for _ in range(2):
        cube.search("where does alice live", top_k=2)
    report = cube.consolidate(promote_top=2, min_group=8)
    hot = cube.get(report.promoted["id"])
    assert hot.kind == "activation" and hot.metadata["memory_type"] == "hot" and hot.payload is not None
    assert [d.id for d in hot.provenance.derived_from] == report.promoted["sources"]
    assert report.promoted["sources"][0] == cube.search("where does alice live", top_k=1)[0].memory.id
    again = cube.consolidate(promote_top=2, min_group=8)
    assert again.promoted["unchanged"] and again.promoted["id"] == hot.id
    cube.add("Alice plays the cello")
    for _ in range(6):
        cube.search("who plays the cello", top_k=1)
    third = cube.consolidate(promote_top=2, min_group=8)
    assert third.promoted["id"] != hot.id and cube.get(hot.id).state == State.archived  # superseded
    out = mos_llm.generate("alice", "Where does Alice live?", kv=[third.promoted["id"]], retrieve=False,
                           max_tokens=8)
    assert [u["id"] for u in out.used["kv"]] == [third.promoted["id"]]
