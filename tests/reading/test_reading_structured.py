"""Structured output: repair of almost-JSON, validation, retry with the error, recorded failure."""

from __future__ import annotations

import pytest

from memos.llm import ScriptedChat
from memos.reading.extract import EXAMPLE, Extraction, FactExtractor, Turn, normalise_messages, windows
from memos.reading.reconcile import Decision
from memos.reading.structured import parse_json, structured_chat


@pytest.mark.parametrize("reply, expected", [
    ('{"facts": []}', {"facts": []}),
    ('Sure! Here you go:\n```json\n{"facts": [{"text": "Alice runs", "turns": [1],}]}\n```', 
     {"facts": [{"text": "Alice runs", "turns": [1]}]}),
    ("{'facts': [{'text': 'Alice runs'}]}", {"facts": [{"text": "Alice runs"}]}),
    ('Facts: {facts: [{text: "Alice runs"}]} hope this helps', {"facts": [{"text": "Alice runs"}]}),
    # cut off by the token limit: the complete first fact survives
    ('{"facts": [{"text": "Alice runs", "turns": [1]}, {"text": "Bob sw', {"facts": [{"text": "Alice runs",
                                                                                      "turns": [1]}]}),
])
def test_parse_json_repairs_what_small_models_write(reply, expected):
    value, _ = parse_json(reply)
    assert value == expected


@pytest.mark.parametrize("reply", ["", "I cannot help with that.", "{{{", "facts: none"])
def test_parse_json_gives_none_for_no_json(reply):
    assert parse_json(reply) == (None, False)


def test_extraction_schema_coerces_and_validates():
    ok = Extraction.model_validate(["Alice runs", {"fact": "Bob swims", "turn": 2}], context={"turns": 2})
    assert [(f.text, f.turns) for f in ok.facts] == [("Alice runs", []), ("Bob swims", [2])]
    with pytest.raises(ValueError, match="turn numbers"):
        Extraction.model_validate({"facts": [{"text": "Alice runs", "turns": [7]}]}, context={"turns": 2})
    with pytest.raises(ValueError):
        Extraction.model_validate({"facts": [{"text": ""}]})
    vague = Extraction.model_validate({"facts": [{"text": "Alice ran", "when": "last summer"}]})
    assert vague.facts[0].when is None
    assert Extraction.model_validate({"facts": [{"text": "x y z", "when": "2023-05-01"}]}).facts[0].when \
        .startswith("2023-05-01")


def test_structured_chat_retries_with_the_error_then_succeeds():
    llm = ScriptedChat(["no idea", '{"facts": [{"text": "Alice runs", "turns": [9]}]}',
                        '{"facts": [{"text": "Alice runs", "turns": [1]}]}'])
    out = structured_chat(llm, [{"role": "user", "content": "[1] Alice: I run"}], Extraction, example=EXAMPLE,
                          context={"turns": 1})
    assert out.ok and out.attempts == 3 and out.repaired
    assert out.value.facts[0].turns == [1]
    assert len(out.errors) == 2 and "no JSON" in out.errors[0] and "turn numbers" in out.errors[1]
    # the retry shows the model its reply and what was wrong with it
    retry = llm.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "no idea"} and "not valid" in retry[-1]["content"]


def test_structured_chat_records_failure_after_max_attempts():
    llm = ScriptedChat(["{bad", "still bad", "{'facts': 'nope'}"])
    out = structured_chat(llm, [{"role": "user", "content": "x"}], Extraction, example=EXAMPLE, max_attempts=3)
    assert not out.ok and out.attempts == 3 and len(out.errors) == 3 and out.raw[-1] == "{'facts': 'nope'}"
    # a backend error (here: the script runs dry) is an attempt that failed, recorded like the others
    out = structured_chat(ScriptedChat([]), [{"role": "user", "content": "x"}], Extraction, example=EXAMPLE,
                          max_attempts=2)
    assert not out.ok and out.attempts == 2 and "BackendError" in out.error


def test_decision_schema():
    d = Decision.model_validate({"event": "update", "id": "2", "text": " Alice  lives in Porto "},
                                context={"neighbours": 3})
    assert (d.op, d.id, d.text) == ("UPDATE", 2, "Alice lives in Porto")
    for bad in ({"op": "UPDATE"}, {"op": "DELETE", "id": 5}, {"op": "MERGE", "id": 1}):
        with pytest.raises(ValueError):
            Decision.model_validate(bad, context={"neighbours": 3})


def test_normalise_messages_and_windows():
    turns = normalise_messages([{"role": "user", "content": "I live in Lisbon"},
                                {"speaker": "Bob", "text": "Nice", "dia_id": "D1:2", "session": 2,
                                 "time": "2023-05-02", "blip_caption": "a photo of a tram"},
                                "plain string"], session=1, event_time="2023-05-01")
    assert [t.line for t in turns] == ["user: I live in Lisbon", "Bob: Nice [shares a photo of a tram]",
                                       "user: plain string"]
    assert [t.session for t in turns] == [1, 2, 1] and turns[1].turn_id == "D1:2"
    assert turns[0].when.isoformat().startswith("2023-05-01") and turns[1].when.day == 2
    ws = windows([Turn("a", "x", session=s) for s in (1, 1, 1, 2, 2, 1)], size=2)
    assert [len(w) for w in ws] == [2, 1, 2, 1]


@pytest.mark.parametrize("bad", [[], "text", [{"content": ""}], [{"content": "x", "colour": "red"}],
                                 [{"content": "x", "time": "yesterday"}], [{"content": "x", "session": 1.5}],
                                 [42], [{"content": "x", "speaker": ""}]])
def test_normalise_messages_rejects_bad_input(bad):
    from memos.errors import InvalidInput

    with pytest.raises(InvalidInput):
        normalise_messages(bad)


def test_extractor_prompt_numbers_turns():
    llm = ScriptedChat(['{"facts": []}'])
    turns = normalise_messages([{"speaker": "Alice", "text": "I moved to Porto", "time": "2025-01-02"}])
    assert FactExtractor(llm).extract(turns).value.facts == []
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert prompt == "Conversation on 2025-01-02:\n[1] Alice: I moved to Porto"
