"""LoCoMo evaluation on a small fixture of our own (the real data lives in ../shared/data)."""

from pathlib import Path

import pytest

from memos.errors import InvalidInput
from memos.eval.locomo import load_locomo, normalise_evidence, parse_session_time, run_locomo, score_question

FIXTURE = str(Path(__file__).parent.parent / "fixtures" / "locomo_mini.json")


def test_evidence_normalisation():
    known = {"D1:3", "D11:26", "D30:5", "D2:1"}
    assert normalise_evidence(["D1:3; D2:1"], known) == ["D1:3", "D2:1"]
    assert normalise_evidence(["D:11:26", "D30:05", "D99:1"], known) == ["D11:26", "D30:5"]


def test_load_skips_category5_and_unknown_evidence():
    (conv,) = load_locomo(FIXTURE)
    assert len(conv.turns) == 8
    assert conv.turns[3].text.endswith("[shares a photo of a cello leaning on a chair]")
    cats = [q.category for q in conv.questions]
    assert 5 not in cats and 3 not in cats  # the category-3 question cites only unknown ids
    assert conv.questions[1].evidence == ["D1:4", "D2:2"]
    assert conv.questions[2].evidence == ["D2:1"]
    assert parse_session_time("4:30 pm on 20 April, 2023").month == 4


def test_score_question():
    ranked = [("D1", "a b"), ("D2", "c"), ("D3", "d")]
    s = score_question(["D2", "D9"], ranked, k=2)
    assert s["recall@2"] == 0.5 and s["all@2"] == 0.0 and s["mrr"] == 0.5
    assert score_question(["D1"], ranked, k=1)["all@1"] == 1.0


def test_run_locomo_end_to_end(tmp_path):
    out = run_locomo(FIXTURE, top_k=3, home=str(tmp_path / "h"))
    assert out["questions"] == 4
    assert set(out["overall"]) == {"recall@3", "all@3", "mrr", "recall@1000tok"}
    assert set(out["by_category"]) == {"1", "2", "3", "4"}
    assert out["by_category"]["4"]["questions"] == 2
    # both single-hop answers are in the top 3 of 8 turns ("What is the name of Nadia's dog?" puts the
    # other speaker's "What did you name the dog?" and the greyhound turn next to the answer)
    assert out["by_category"]["4"]["recall@3"] == 1.0
    assert out["by_category"]["2"]["recall@3"] == 1.0 and out["by_category"]["1"]["recall@3"] == 1.0
    assert out["overall"]["recall@1000tok"] == 1.0
    for key in ("ingest_s", "search_p50_ms", "search_p95_ms", "tokens_per_query"):
        assert out[key] >= 0


def test_bad_inputs(tmp_path):
    with pytest.raises(InvalidInput):
        run_locomo(str(tmp_path / "missing.json"))
    with pytest.raises(InvalidInput):
        run_locomo(FIXTURE, conversations=[3])
    with pytest.raises(InvalidInput):
        run_locomo(FIXTURE, top_k=0)


def test_turn_context_is_the_surrounding_turns_of_the_same_session():
    from memos.eval.locomo import Turn, _neighbours

    turns = [Turn(f"D{s}:{i}", "A", f"s{s}t{i}", s, None) for s in (1, 2) for i in range(1, 5)]
    assert _neighbours(turns, 1).split("\n") == ["s1t1", "s1t3", "s1t4"]  # radius 2, clipped at the start
    assert _neighbours(turns, 3).split("\n") == ["s1t2", "s1t3"]  # the next session is not context
    assert _neighbours(turns, 4, radius=1) == "s2t2"
