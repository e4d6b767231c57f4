"""Memory reading on a real embedded kernel (SQLite + FAISS + MiniLM), with a scripted model."""

from __future__ import annotations

import asyncio
import json

import pytest

from memos.errors import AccessDenied, InvalidInput
from memos.llm import ScriptedChat
from memos.models import State
from memos.reading import DedupConfig, is_duplicate


def facts(*items: tuple[str, int]) -> str:
    return json.dumps({"facts": [{"text": t, "turns": [n]} for t, n in items]})


def lisbon(cube, policy_llm_replies=()):
    """Alice says she lives in Lisbon (2023); returns the fact's memory id."""
    llm = ScriptedChat([facts(("Alice lives in Lisbon", 1)), *policy_llm_replies])
    r = cube.add_messages([{"speaker": "Alice", "text": "I live in Lisbon now."},
                           {"speaker": "Bob", "text": "Lovely city!"}], session=1, event_time="2023-05-01", llm=llm)
    assert len(r.facts_added) == 1 and not r.failures
    return r.facts_added[0]


def porto_messages():
    return [{"speaker": "Alice", "text": "Big news: I moved to Porto last week."}]


def test_no_llm_path_stores_turns_as_memories(cube):
    r = cube.add_messages([{"speaker": "Alice", "text": "I adopted a collie called Max", "dia_id": "D1:1"},
                           {"speaker": "Bob", "text": "What a good boy"},
                           {"speaker": "Alice", "text": "He loves the beach"}], session=1, event_time="2023-05-01")
    assert len(r.turns) == 3 and r.llm is None and r.llm_calls == 0 and not r.facts_added
    first = cube.get(r.turns[0])
    assert first.text == "Alice: I adopted a collie called Max"
    assert first.metadata == {"memory_type": "turn", "speaker": "Alice", "turn": 1, "session": 1, "turn_id": "D1:1"}
    assert first.context == "Bob: What a good boy\nAlice: He loves the beach" and first.event_time.year == 2023
    assert first.provenance.source == "conversation"
    assert cube.get(r.turns[1]).context == "Alice: I adopted a collie called Max\nAlice: He loves the beach"
    assert cube.search("collie", top_k=1)[0].memory.id == r.turns[0]
    assert len(cube.log()) == 1  # one commit for the whole batch


def test_extraction_adds_facts_with_provenance_to_source_turns(cube):
    llm = ScriptedChat([facts(("Alice adopted a collie named Max", 1), ("Max loves the beach", 3))])
    r = cube.add_messages([{"speaker": "Alice", "text": "I adopted a collie called Max"},
                           {"speaker": "Bob", "text": "What a good boy"},
                           {"speaker": "Alice", "text": "He loves the beach"}], session=1, event_time="2023-05-01",
                          llm=llm)
    assert r.extracted == 2 and len(r.facts_added) == 2 and r.llm_calls == 1 and not r.failures
    max_fact = cube.get(r.facts_added[0])
    assert max_fact.metadata["memory_type"] == "fact" and max_fact.metadata["source_turns"] == [r.turns[0]]
    assert [(d.id, d.version) for d in max_fact.provenance.derived_from] == [(r.turns[0], 1)]
    assert max_fact.event_time.year == 2023 and max_fact.provenance.source == "reading:extract"
    hits = cube.search("what dog does alice have", top_k=3, filters={"memory_type": "fact"})
    assert hits[0].memory.id == r.facts_added[0]
    # the system prompt and the numbered turns went to the model
    sent = llm.requests[0]["messages"]
    assert sent[0]["role"] == "system" and sent[-1]["content"].endswith("[3] Alice: He loves the beach")


def test_malformed_json_is_repaired(cube):
    reply = ('Here are the facts:\n```json\n'
             '{"facts": [{"text": "Alice lives in Lisbon", "turns": [1],},]}\n```')
    llm = ScriptedChat([reply])
    r = cube.add_messages(["I live in Lisbon"], llm=llm)
    assert r.repaired == 1 and r.llm_calls == 1 and len(r.facts_added) == 1 and not r.failures


def test_invalid_output_is_retried_then_recorded_and_raw_turns_kept(cube):
    llm = ScriptedChat(["I am not sure.", '{"facts": [{"text": "x"}]}', "{'facts': [{'turns': [1]}"])
    r = cube.add_messages([{"speaker": "Alice", "text": "I live in Lisbon"}, {"speaker": "Bob", "text": "Nice"}],
                          llm=llm)
    assert r.llm_calls == 3 and not r.facts_added and len(r.failures) == 1
    failure = r.failures[0]
    assert failure.stage == "extract" and failure.turns == r.turns and failure.attempts == 3 and failure.error
    for tid in r.turns:  # the raw turns are stored and carry the failure in a new version
        turn = cube.get(tid)
        assert turn.version == 2 and turn.metadata["extraction"] == "failed" and turn.metadata["extraction_error"]
        assert cube.history(tid)[0].metadata.get("extraction") is None
    assert cube.search("where does alice live", top_k=1)[0].memory.id == r.turns[0]


def test_bad_input_changes_nothing(cube, mos):
    head = cube.head
    with pytest.raises(InvalidInput):
        cube.add_messages([{"speaker": "Alice", "text": "fine"}, {"speaker": "Bob", "text": ""}])
    with pytest.raises(InvalidInput, match="no reconciliation policy 'nope'"):
        cube.add_messages(["hello"], reconcile="nope")
    with pytest.raises(InvalidInput):
        cube.add_messages(["hello"], llm="gpt-4")
    with pytest.raises(InvalidInput):
        cube.add_messages(["hello"], window=0)
    with pytest.raises(InvalidInput):
        mos.create_cube("bad-policy", policy={"reconcile": "Not A Name"})
    assert cube.head == head
    with pytest.raises(AccessDenied):
        mos.as_principal("mallory").cube("alice").add_messages(["I am alice"])
    assert cube.head == head


def test_update_policy_versions_the_old_fact(mos):
    cube = mos.create_cube("alice", policy={"reconcile": "update"})
    fid = lisbon(cube)

    def decide(messages):
        prompt = messages[-1]["content"]
        assert "[1] Alice lives in Lisbon (as of 2023-05-01)" in prompt and "NEW: Alice moved to Porto" in prompt
        return '{"op": "UPDATE", "id": 1, "text": "Alice lives in Porto"}'

    llm = ScriptedChat([facts(("Alice moved to Porto", 1)), decide])
    r = cube.add_messages(porto_messages(), session=2, event_time="2025-01-02", llm=llm)
    assert r.facts_updated == [fid] and not r.facts_added and r.llm_calls == 2
    versions = cube.history(fid)
    assert [v.text for v in versions] == ["Alice lives in Lisbon", "Alice lives in Porto"]
    new = versions[-1]
    assert new.provenance.op == "update" and new.provenance.source == "reading:update"
    assert [(d.id, d.version) for d in new.provenance.derived_from] == [(fid, 1), (r.turns[0], 1)]
    assert new.metadata["previous_text"] == "Alice lives in Lisbon" and r.turns[0] in new.metadata["source_turns"]
    assert new.event_time.year == 2025 and new.metadata["session"] == 2
    hits = cube.search("where does alice live", top_k=5, filters={"memory_type": "fact"})
    assert [h.memory.text for h in hits] == ["Alice lives in Porto"]
    assert cube.rollback(fid, 1).text == "Alice lives in Lisbon"  # versions as any memory's


def test_update_policy_delete_noop_and_failed_decision(mos):
    cube = mos.create_cube("bob", policy={"reconcile": "update"})
    llm = ScriptedChat([facts(("Bob plays tennis every Sunday", 1))])
    old = cube.add_messages(["I play tennis every Sunday"], llm=llm).facts_added[0]
    llm = ScriptedChat([facts(("Bob stopped playing tennis", 1)), '{"op": "DELETE", "id": 1}'])
    r = cube.add_messages(["I gave up tennis, my knee hurts"], llm=llm)
    assert r.facts_deleted == [old] and len(r.facts_added) == 1
    gone = cube.get(old)
    assert gone.state == State.archived
    assert (r.turns[0], 1) in [(d.id, d.version) for d in gone.provenance.derived_from]
    entry = cube.log()[-2]
    assert entry.op == "delete" and entry.detail["reason"] == "contradicted"
    # NOOP: already known, counted as a mention
    llm = ScriptedChat([facts(("Bob quit tennis because of his knee", 1)), '{"op": "NOOP", "id": 1}'])
    r = cube.add_messages(["Yeah, no more tennis for me"], llm=llm)
    assert not r.facts_added and len(r.duplicates) == 1 and cube.get(r.duplicates[0]).metadata["mentions"] == 2
    # no valid decision after retries: the fact is added anyway and the failure recorded
    llm = ScriptedChat([facts(("Bob now swims twice a week", 1)), "hmm", '{"op": "REPLACE"}', "{"])
    r = cube.add_messages(["I swim twice a week now"], llm=llm)
    assert len(r.facts_added) == 1 and len(r.failures) == 1
    assert r.failures[0].stage == "reconcile" and r.failures[0].fallback == "ADD" and r.failures[0].attempts == 3


def test_invalidate_policy_end_dates_the_old_fact(mos):
    cube = mos.create_cube("alice", policy={"reconcile": "invalidate"})
    fid = lisbon(cube)
    llm = ScriptedChat([facts(("Alice moved to Porto", 1)), '{"op": "UPDATE", "id": 1, "text": "Alice lives in Porto"}'])
    r = cube.add_messages(porto_messages(), session=2, event_time="2025-01-02", llm=llm)
    assert r.facts_invalidated == [fid] and len(r.facts_added) == 1 and not r.facts_updated
    new_id = r.facts_added[0]
    old = cube.get(fid)
    assert old.text == "Alice lives in Lisbon" and old.version == 2  # text kept, end time added
    assert old.metadata["valid_to"].startswith("2025-01-02") and old.metadata["invalidated_by"] == new_id
    assert old.metadata["valid_from"].startswith("2023-05-01")
    assert old.effective_state() == State.expired and old.provenance.source == "reading:invalidate"
    assert {d.id for d in old.provenance.derived_from} == {fid, new_id, r.turns[0]}
    hits = cube.search("where does alice live", top_k=5, filters={"memory_type": "fact"})
    assert [h.memory.id for h in hits] == [new_id]
    past = cube.search("where does alice live", top_k=5, filters={"memory_type": "fact"}, include_archived=True)
    assert {h.memory.id for h in past} == {fid, new_id}
    assert [v.text for v in cube.history(fid)] == ["Alice lives in Lisbon"] * 2
    assert cube.at(r.turns and cube.get(fid, version=1).commit).search("lisbon", top_k=1)[0].memory.id == fid


def test_invalidate_policy_stores_an_older_contradicting_fact_as_ended(mos):
    cube = mos.create_cube("carol", policy={"reconcile": "invalidate"})
    llm = ScriptedChat([facts(("Carol works at the bakery", 1))])
    current = cube.add_messages(["I work at the bakery"], event_time="2024-06-01", llm=llm).facts_added[0]
    llm = ScriptedChat([facts(("Carol works at the post office", 1)), '{"op": "UPDATE", "id": 1}'])
    r = cube.add_messages(["Back then I worked at the post office"], event_time="2022-01-01", llm=llm)
    old = cube.get(r.facts_added[0])
    assert r.facts_invalidated == [old.id] and old.metadata["invalidated_by"] == current
    assert old.metadata["valid_to"].startswith("2024-06-01") and old.effective_state() == State.expired
    assert cube.get(current).version == 1  # the newer truth is untouched


def test_duplicates_are_merged_not_added(cube):
    llm = ScriptedChat([facts(("Alice has a dog named Max", 1))])
    first = cube.add_messages(["I have a dog named Max"], llm=llm).facts_added[0]
    llm = ScriptedChat([facts(("Alice has a dog called Max", 1), ("Alice has a dog called Max", 2),
                              ("Bob is 31 years old", 3))])
    r = cube.add_messages(["My dog Max!", "Did I mention Max, my dog?", "Bob here, I turned 31"], llm=llm)
    assert r.extracted == 3 and r.merged_in_batch == 1 and r.duplicates == [first] and len(r.facts_added) == 1
    merged = cube.get(first)
    assert merged.text == "Alice has a dog named Max" and merged.version == 2 and merged.metadata["mentions"] == 3
    assert merged.metadata["source_turns"][1:] == r.turns[:2]
    assert {d.id for d in merged.provenance.derived_from} == {first, *r.turns[:2]}
    # dedup off: the repeated fact is added again
    llm = ScriptedChat([facts(("Alice has a dog called Max", 1))])
    assert len(cube.add_messages(["Max is my dog"], llm=llm, dedup=False).facts_added) == 1


def test_duplicate_detector_on_pairs(mos):
    emb = mos._kernel.embedder
    same = [("Alice has a dog named Max", "Alice has a dog called Max"),
            ("Caroline went to an LGBTQ support group", "Caroline attended an LGBTQ support group"),
            ("Melanie likes painting", "Melanie enjoys painting")]
    different = [("Alice lives in Lisbon", "Alice lives in Porto"), ("Bob is 30 years old", "Bob is 31 years old"),
                 ("Alice has a dog named Max", "Alice has a cat named Max"),
                 ("Melanie likes painting", "Melanie does not like painting"),
                 ("Alice works as a nurse", "Alice works at the city hospital")]
    cfg = DedupConfig()
    for a, b in same + different:
        va, vb = emb.embed([a, b])
        assert is_duplicate(a, b, float(va @ vb), cfg) == ((a, b) in same), (a, b)
    assert is_duplicate("Alice runs daily.", "alice runs daily", None) and not is_duplicate("Alice runs", "Bob runs",
                                                                                            None)


def test_async_twin(cube):
    r = asyncio.run(cube.aadd_messages(["I like jazz"], session="s1"))
    assert cube.get(r.turns[0]).metadata["session"] == "s1"


def test_kernel_update_and_set_state_take_extra_sources(cube):
    k = cube._k
    a, b = cube.add("source turn"), cube.add("a fact")
    up = k.update("alice", b.id, text="a better fact", derived_from=[{"id": a.id, "version": 1}], source="test")
    assert [(d.id, d.version) for d in up.provenance.derived_from] == [(b.id, 1), (a.id, 1)]
    assert up.provenance.source == "test"
    merged = k.set_state("alice", [b.id], State.merged, op="merge", derived_from=[{"id": a.id, "version": 1}])[0]
    assert [(d.id, d.version) for d in merged.provenance.derived_from] == [(b.id, 2), (a.id, 1)]
    head = cube.head
    for bad in ([{"id": a.id}], "x", [{"id": a.id, "version": "one"}]):
        with pytest.raises(InvalidInput):
            k.update("alice", b.id, text="nope", derived_from=bad)
    assert cube.head == head


def test_embed_queries_batches_and_primes_the_query_cache(mos):
    import numpy as np

    emb = mos._kernel.embedder
    texts = ["Alice has a dog named Max", "Bob plays the trumpet", "Alice has a dog named Max"]
    calls = []
    real = emb.embed
    emb.embed = lambda batch: calls.append(list(batch)) or real(batch)
    try:
        vecs = emb.embed_queries(texts)
        again = emb.embed_query("Bob plays the trumpet")
    finally:
        del emb.embed
    assert len(calls) == 1 and vecs.shape == (3, emb.dim)  # one forward; the search afterwards none
    assert np.allclose(vecs[1], again) and np.allclose(vecs[0], vecs[2])
    assert float(vecs[1] @ real(["Bob plays the trumpet"])[0]) > 0.999
