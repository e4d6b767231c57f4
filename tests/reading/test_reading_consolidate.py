"""Sleep-time consolidation on a real embedded kernel: dedup, summaries with provenance, expiry, the task."""

from __future__ import annotations

import json

import pytest

from memos.errors import InvalidInput
from memos.llm import ScriptedChat
from memos.models import State

RELATED = ["Alice has a collie named Max", "Alice walks Max the collie every morning",
           "Alice adopted Max from a shelter in 2021"]
OTHER = ["Bob plays the trumpet in a jazz band", "Carol works as a nurse"]


def add_facts(cube, texts, dedup=True):
    llm = ScriptedChat([json.dumps({"facts": [{"text": t, "turns": [i + 1]} for i, t in enumerate(texts)]})])
    r = cube.add_messages([f"turn about {t}" for t in texts], event_time="2024-03-01", llm=llm, window=len(texts),
                          dedup=dedup)
    return r


def test_consolidation_merges_related_facts_into_a_summary_with_provenance(cube):
    r = add_facts(cube, RELATED + OTHER)
    ids = dict(zip(RELATED + OTHER, r.facts_added))
    report = cube.consolidate()
    assert len(report.summaries) == 1 and not report.failures and not report.deduplicated
    summary = cube.get(report.summaries[0]["id"])
    sources = [ids[t] for t in RELATED]
    assert sorted(report.summaries[0]["sources"]) == sorted(sources)
    assert summary.metadata["memory_type"] == "summary" and sorted(summary.metadata["source_facts"]) == sorted(sources)
    assert sorted((d.id, d.version) for d in summary.provenance.derived_from) == sorted((s, 1) for s in sources)
    assert summary.provenance.source == "reading:consolidate" and summary.provenance.op == "consolidate"
    assert all(t in summary.text for t in ("collie named Max", "every morning", "shelter in 2021"))
    assert sorted(summary.metadata["source_turns"]) == sorted(r.turns[:3])
    for sid in sources:  # sources are kept, merged (not searched), pointing at the summary
        m = cube.get(sid)
        assert m.state == State.merged and [(d.id, d.version) for d in m.provenance.derived_from][1] == (summary.id, 1)
    for text in OTHER:
        assert cube.get(ids[text]).state == State.activated
    hits = cube.search("alice's dog max", top_k=3, filters={"memory_type": ["fact", "summary"]})
    assert hits[0].memory.id == summary.id and all(h.memory.id not in sources for h in hits)
    assert cube.log()[-1].op == "merge" and cube.log()[-1].detail == {"into": summary.id, "reason": "summary"}
    assert cube.consolidate().summaries == []  # nothing left to merge


def test_consolidation_with_an_llm_summary_and_a_recorded_failure(mos):
    cube = mos.create_cube("llm")
    add_facts(cube, RELATED)
    llm = ScriptedChat(["no", "still no", "{"])
    report = cube.consolidate(llm=llm)
    assert report.summaries == [] and len(report.failures) == 1 and report.failures[0].stage == "summarise"
    assert report.llm_calls == 3 and all(m.state == State.activated for m in cube.list())  # left alone
    llm = ScriptedChat(['{"summary": "Alice adopted Max, a collie, from a shelter in 2021 and walks him daily."}'])
    report = cube.consolidate(llm=llm)
    assert cube.get(report.summaries[0]["id"]).text.startswith("Alice adopted Max, a collie")
    assert "- Alice has a collie named Max" in llm.requests[0]["messages"][1]["content"]


def test_consolidation_merges_duplicates_and_expires(cube):
    r = add_facts(cube, ["Alice has a dog named Max", "Alice has a dog called Max", "Bob is 30 years old",
                         "Bob is 31 years old"], dedup=False)
    assert len(r.facts_added) == 4
    keep, dup = r.facts_added[:2]
    short = cube.add("a short-lived note", expires_at="2001-01-01")
    report = cube.consolidate(min_group=4)
    assert report.expired == [short.id] and cube.get(short.id).state == State.expired
    assert report.deduplicated == [{"into": keep, "merged": [dup]}]
    kept = cube.get(keep)
    assert kept.metadata["mentions"] == 2 and set(kept.metadata["source_turns"]) == set(r.turns[:2])
    assert (dup, 1) in [(d.id, d.version) for d in kept.provenance.derived_from]
    assert cube.get(dup).state == State.merged
    assert cube.get(r.facts_added[2]).state == cube.get(r.facts_added[3]).state == State.activated


def test_consolidation_runs_through_the_task_queue(mos):
    cube = mos.create_cube("bg")
    add_facts(cube, RELATED)
    r = cube.add_messages(["one more"], consolidate=True)
    assert r.consolidation_task
    q = mos.tasks()
    q.drain(timeout_s=60)
    assert q.stats()["done"] >= 1 and not q.dead_letters()
    summaries = [m for m in cube.list() if m.metadata.get("memory_type") == "summary"]
    assert len(summaries) == 1 and len(summaries[0].provenance.derived_from) == 3
    # the same key runs once; bad options are a dead letter with the reason, not a crash
    assert mos.submit("consolidate", {"cube": "bg"}, key="k") == mos.submit("consolidate", {"cube": "bg"}, key="k")
    mos.submit("consolidate", {"cube": "bg", "options": {"colour": 1}})
    q.drain(timeout_s=60)
    assert "InvalidInput" in q.dead_letters()[-1].error


def test_consolidation_options_are_checked(cube):
    with pytest.raises(InvalidInput):
        cube.consolidate(related=0)
    with pytest.raises(InvalidInput):
        cube.consolidate(min_group=1)
    with pytest.raises(InvalidInput):
        cube.consolidate(dedup={"embedding": 2})
    with pytest.raises(InvalidInput):
        cube.consolidate(related="high")
    with pytest.raises(InvalidInput):
        cube.consolidate(min_group=4, max_group=3)


def test_search_hits_heat_up_memories(cube):
    from memos.reading.access import access_counter

    m = cube.add("Alice plays the cello")
    cube.add("Bob plays the drums")
    for _ in range(3):
        cube.search("who plays the cello", top_k=2)
    heat = access_counter(cube._k).heat("alice")
    assert heat[m.id] == pytest.approx(3.0, rel=1e-3) and max(heat.values()) == heat[m.id]
