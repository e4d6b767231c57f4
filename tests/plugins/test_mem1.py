"""MEM1 plugin (plugins/mem1): tolerant tag parsing, the summed exact-match reward, the BM25 corpus
environment, the LangGraph loop with a pruned context (peak context bounded as turns grow, measured in
tokens per turn), internal states as versions of a cube memory, the CLI, and one real GRPO step of the
agent on the local model (CPU-sized; no accuracy is asserted)."""

from __future__ import annotations

import json

import pytest

from memos.cli import main
from memos.errors import InvalidInput
from memos.llm import ScriptedChat

pytest.importorskip("memos_mem1", reason="pip install -e plugins/mem1")
from memos_mem1 import (  # noqa: E402
    CorpusEnvironment,
    MEM1Agent,
    Mem1Config,
    ScriptedEnvironment,
    default_corpus,
    exact_match_sum,
    load_tasks,
    parse_turn,
    turn_samples,
)

Q = "What is the capital of the Orvain Isles?; Who founded Vellmoor?"
GOLDS = [["Vellmoor"], ["Maren Tolk", "Tolk"]]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tags_are_parsed_tolerantly():
    t = parse_turn("<IS>need the capital</IS>\n<search>capital of Orvain</search><information>made up</information>")
    assert (t.state, t.action.type, t.action.content) == ("need the capital", "search", "capital of Orvain")
    assert t.text.endswith("</search>") and "made up" not in t.text  # an invented observation is dropped
    t = parse_turn("<think>both found<ANSWER>Vellmoor; Maren Tolk")  # authors' state tag, no closing tags
    assert (t.state, t.action.type, t.action.content) == ("both found", "answer", "Vellmoor; Maren Tolk")
    t = parse_turn("<is>partial <query>founder of Vellmoor</query>")
    assert (t.state, t.action.type, t.action.content) == ("partial", "search", "founder of Vellmoor")
    t = parse_turn("I think the answer is Vellmoor.")
    assert t.state is None and t.action is None
    assert parse_turn("<IS>x</IS><search></search><answer>a</answer>").action.type == "answer"  # empty search skipped


def test_reward_is_exact_match_summed_over_subquestions():
    assert exact_match_sum("Vellmoor; Maren Tolk", GOLDS) == 2.0
    assert exact_match_sum("The Vellmoor ; tolk.", GOLDS) == 2.0  # SQuAD normalisation, aliases
    assert exact_match_sum("Vellmoor; Ilse Varn", GOLDS) == 1.0
    assert exact_match_sum("Vellmoor", GOLDS) == 0.0  # one answer for two questions (authors' rule)
    assert exact_match_sum("Vellmoor", GOLDS, strict_count=False) == 1.0
    assert exact_match_sum(None, GOLDS) == 0.0 and exact_match_sum("  ", GOLDS) == 0.0


def test_corpus_environment_bm25():
    env = CorpusEnvironment(default_corpus(), top_k=2)
    result = env.search("Who designed the Brisk Harbour lighthouse?")
    assert result.startswith("Doc 1(Title: ") and "Ilse Varn" in result and result.count("Doc ") == 2
    assert env.search("zzzz qqqq") == "No document matches the query."
    with pytest.raises(InvalidInput):
        CorpusEnvironment("/nonexistent/corpus")
    tasks = load_tasks()
    assert len(tasks) >= 4 and all(len(t.questions) == len(t.answers) == 2 for t in tasks)
    for t in tasks:  # every gold answer is in the shipped corpus
        for q, aliases in zip(t.questions, t.answers, strict=True):
            hits = CorpusEnvironment(default_corpus(), top_k=3).search(q)
            assert any(a.lower() in hits.lower() for a in aliases), (q, hits)


def test_agent_answers_with_a_pruned_context_and_states_in_the_cube(cube):
    chat = ScriptedChat(["<IS>need capital and founder</IS><search>capital of the Orvain Isles</search>",
                         "<IS>capital: Vellmoor. need founder</IS><search>who founded Vellmoor</search>",
                         "<IS>capital: Vellmoor; founder: Maren Tolk</IS><answer>Vellmoor; Maren Tolk</answer>"])
    env = ScriptedEnvironment({"capital": "Doc 1(Title: Vellmoor) Vellmoor is the capital.",
                               "founded": "Doc 1(Title: Maren Tolk) Maren Tolk founded Vellmoor."})
    report = MEM1Agent(chat, env, cube=cube).run(Q, golds=GOLDS)
    assert report["status"] == "answered" and report["answer"] == "Vellmoor; Maren Tolk" and report["reward"] == 2.0
    assert env.queries == ["capital of the Orvain Isles", "who founded Vellmoor"]
    # turn 3 saw: system, task, turn 2 only, the latest observation only
    msgs = chat.requests[2]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    seen = "\n".join(m["content"] for m in msgs)
    assert "need capital and founder" not in seen and "Vellmoor is the capital" not in seen
    assert "capital: Vellmoor. need founder" in seen and "Maren Tolk founded Vellmoor" in seen
    assert "(1) What is the capital" in msgs[1]["content"] and "(2) Who founded Vellmoor?" in msgs[1]["content"]
    # the working memory is inspectable: one memory, one version per turn
    states = [m.text for m in cube.history(report["state_id"])]
    assert states == ["need capital and founder", "capital: Vellmoor. need founder",
                      "capital: Vellmoor; founder: Maren Tolk"]
    assert cube.get(report["state_id"]).metadata == {"mem1_run": report["run_id"], "mem1": "state"}


def _searcher(state_words: int = 12):
    """A model that never answers: a state of constant size and a new search every turn."""
    def reply(messages):
        n = sum(m["role"] == "assistant" for m in messages) + len(messages)
        return f"<IS>{' '.join(['fact'] * state_words)}</IS><search>query {n}</search>"
    return reply


def test_peak_context_stays_bounded_as_turns_grow():
    doc = "Doc 1(Title: Filler) " + "filler text " * 60
    peaks, per_turn = {}, {}
    for turns in (3, 6, 12):
        chat = ScriptedChat([_searcher()] * turns)
        report = MEM1Agent(chat, ScriptedEnvironment([doc] * turns), config=Mem1Config(max_turns=turns)).run(Q)
        assert report["status"] == "max_turns" and report["answer"] is None and len(report["turns"]) == turns
        per_turn[turns] = [t["context_tokens"] for t in report["turns"]]
        peaks[turns] = report["peak_context_tokens"]
    # from turn 2 on, every context has the same shape: tokens per turn stay flat (the last turn's hint,
    # "you must answer now", is a few tokens longer)
    assert len(set(per_turn[12][1:-1])) == 1 and 0 <= per_turn[12][-1] - per_turn[12][1] <= 6
    assert peaks[12] == peaks[6] == peaks[3]
    # what a full-history agent would carry by turn 12: every reply and observation so far
    full_history = per_turn[12][0] + sum(t["completion_tokens"] + t.get("observation_tokens", 0)
                                         for t in MEM1Agent(ScriptedChat([_searcher()] * 12),
                                                            ScriptedEnvironment([doc] * 12),
                                                            config=Mem1Config(max_turns=12)).run(Q)["turns"])
    assert full_history > 4 * peaks[12]


def test_no_action_is_reported_back_and_turns_run_out():
    chat = ScriptedChat(["I am not sure what to do.", "<IS>x</IS><answer>Vellmoor; Tolk</answer>"])
    report = MEM1Agent(chat, ScriptedEnvironment([]), config=Mem1Config(max_turns=3)).run(Q, golds=GOLDS)
    assert report["status"] == "answered" and report["reward"] == 2.0 and report["turns"][0]["action"] is None
    assert "No action found" in chat.requests[1]["messages"][-1]["content"]
    last = ScriptedChat(["<IS>a</IS><search>q</search>"] * 2)
    rep = MEM1Agent(last, ScriptedEnvironment(["doc"]), config=Mem1Config(max_turns=2)).run(Q, golds=GOLDS)
    assert rep["status"] == "max_turns" and rep["reward"] == 0.0
    assert "last turn: you must answer now" in last.requests[1]["messages"][-1]["content"]
    with pytest.raises(InvalidInput):
        MEM1Agent(last, ScriptedEnvironment([])).run(" ; ")
    with pytest.raises(InvalidInput):
        MEM1Agent(last, ScriptedEnvironment([])).run(Q, golds=[["x"]])


class _TokenChat:
    """A scripted model that also reports token ids (one id per character), as a trainable policy does."""

    name = "token-script"

    def __init__(self, replies):
        self.chat_ = ScriptedChat(replies)

    def chat(self, messages, **kwargs):
        from memos.llm import ChatResult
        from memos.rl import Sampled

        res = self.chat_.chat(messages, **kwargs)
        prompt = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return ChatResult(res.content, raw=Sampled(res.content, tuple(map(ord, res.content)), tuple(map(ord, prompt)),
                                                   "eos"))


def test_turn_samples_keep_observations_out_of_the_completions():
    replies = ["<IS>a</IS><search>capital</search>", "<IS>b</IS><search>founder</search>",
               "<IS>c</IS><answer>Vellmoor; Maren Tolk</answer>"]
    report = MEM1Agent(_TokenChat(replies), ScriptedEnvironment(["OBSERVATION-ONE", "OBSERVATION-TWO"])).run(
        Q, golds=GOLDS)
    samples = turn_samples("task-1", [report])

    def text(ids):
        return "".join(map(chr, ids))

    assert len(samples) == 3 and all(s.reward == 2.0 and s.group == "task-1" for s in samples)
    assert [text(s.completion_ids) for s in samples] == replies  # exactly what the model wrote
    assert all("OBSERVATION" not in text(s.completion_ids) for s in samples)
    assert "OBSERVATION-ONE" in text(samples[1].prompt_ids) and "OBSERVATION-TWO" in text(samples[2].prompt_ids)
    assert "OBSERVATION-ONE" not in text(samples[2].prompt_ids)  # pruned


def test_run_can_be_checkpointed():
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    chat = ScriptedChat(["<IS>s</IS><search>Vellmoor</search>", "<IS>t</IS><answer>Vellmoor; Maren Tolk</answer>"])
    report = MEM1Agent(chat, CorpusEnvironment(default_corpus())).run(Q, golds=GOLDS, checkpointer=saver,
                                                                     thread_id="t1")
    assert report["reward"] == 2.0
    assert saver.get_tuple({"configurable": {"thread_id": "t1"}}).checkpoint["channel_values"]["status"] == "answered"


# ---------------------------------------------------------------------------------------------- CLI
def _cli(home, *args: str, code: int = 0, capsys=None) -> dict:
    rc = main(["--home", str(home), *args, "--json"])
    out, err = capsys.readouterr()
    assert rc == code, (args, out, err)
    return json.loads(out)


def test_cli_run_with_a_scripted_model(home, monkeypatch, capsys):
    from memos_mem1 import plugin

    chat = ScriptedChat(["<IS>none</IS><search>capital of the Orvain Isles</search>",
                         "<IS>Vellmoor; founder Maren Tolk</IS><answer>Vellmoor; Maren Tolk</answer>"])
    monkeypatch.setattr(plugin, "chat_backend", lambda *a, **k: chat)
    out = _cli(home, "mem1", "run", Q, "--cube", "work", "--endpoint", "http://unused", capsys=capsys)
    assert out["status"] == "answered" and out["answer"] == "Vellmoor; Maren Tolk" and out["cube"] == "work"
    assert len(out["turns"]) == 2 and out["peak_context_tokens"] == max(t["context_tokens"] for t in out["turns"])
    assert "Maren Tolk" in chat.requests[1]["messages"][-1]["content"]  # the real corpus answered the search
    assert _cli(home, "history", "work", out["state_id"], capsys=capsys)  # states are cube memories
    assert _cli(home, "mem1", "run", " ; ", "--endpoint", "http://u", code=1, capsys=capsys)["error"]["type"] == \
        "InvalidInput"
    assert _cli(home, "mem1", "run", Q, "--corpus", "/nonexistent", "--endpoint", "http://u", code=1,
                capsys=capsys)["error"]["type"] == "InvalidInput"


@pytest.mark.slow
def test_cli_train_one_grpo_step_then_run_the_trained_policy(home, tmp_path, models_dir, engine, monkeypatch,
                                                              capsys):
    monkeypatch.setenv("MEMOS_MODELS_DIR", str(models_dir))  # the session's converted model
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"id": "t", "questions": ["Capital of the Orvain Isles?", "Founder of Vellmoor?"],
                                  "answers": [["Vellmoor"], ["Maren Tolk"]]}]))
    out = _cli(home, "mem1", "train", "--steps", "1", "--tasks", str(tasks), "--group-size", "2", "--max-turns", "1",
               "--max-tokens", "16", "--out", str(tmp_path / "pol"), capsys=capsys)
    (step,) = out["steps"]
    assert step["rollouts"] == 2 and step["grpo"]["samples"] == 2  # one turn per rollout, one sample per turn
    assert step["grpo"]["skipped"] == (step["grpo"]["reward_std"] == 0.0)
    doc = json.loads((tmp_path / "pol" / "policy.json").read_text())
    assert doc["stop_strings"] == ["</search>", "</answer>"] and doc["meta"]["method"] == "mem1"
    run = _cli(home, "mem1", "run", "Capital of the Orvain Isles?", "--adapter", str(tmp_path / "pol"),
               "--max-turns", "1", "--max-tokens", "16", capsys=capsys)
    assert len(run["turns"]) == 1 and run["turns"][0]["context_tokens"] > 0 and run["status"] in ("answered",
                                                                                                  "max_turns")
