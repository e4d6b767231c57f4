"""Mem-alpha plugin (plugins/mem_alpha): memory-tool semantics on a real cube, the paper's reward on a
hand-computed episode, the prompted and endpoint policies (a real HTTP endpoint), the CLI, and one real
GRPO step of the writer on the local model (CPU-sized; no accuracy is asserted)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from memos.cli import main
from memos.errors import InvalidInput
from memos.llm import ScriptedChat, ToolCall

pytest.importorskip("memos_mem_alpha", reason="pip install -e plugins/mem_alpha")
from memos_mem_alpha import (  # noqa: E402
    QA,
    EndpointPolicy,
    LLMJudge,
    MemAlphaMemory,
    MemoryAnswerer,
    PromptedPolicy,
    RewardWeights,
    RuleJudge,
    build,
    compression,
    content_validity,
    execute,
    parse_qwen_calls,
    qa_score,
    read_instances,
    score,
    split_chunks,
)


def words(text: str) -> int:
    return len(text.split())


def call(name: str, **arguments: str) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------ memory tools
def test_insert_skips_duplicates_and_core_is_replace_only(cube):
    mem = MemAlphaMemory.open(cube, count_tokens=words, seed=0)
    ok = execute(mem, ToolCall("new_memory_insert", {"memory_type": "semantic_memory", "content": "Anna is a pilot"}))
    dup = execute(mem, ToolCall("new_memory_insert", {"memory_type": "semantic", "content": "Anna is a pilot"}))
    assert ok.ok and dup.result["status"] == "skipped" and not dup.ok
    assert [i.content for i in mem.items["semantic"]] == ["Anna is a pilot"]
    assert len([m for m in cube.list() if m.metadata.get("mem_alpha") == "semantic"]) == 1  # one memory, not two

    core_insert = execute(mem, ToolCall("new_memory_insert", {"memory_type": "core_memory", "content": "x"}))
    assert not core_insert.ok and core_insert.result["status"] == "error" and mem.core == ""
    mem.update("core", "Anna flies planes.")
    mem.update("core_memory", "Anna flies planes and lives in Oslo.")
    assert mem.core == "Anna flies planes and lives in Oslo."  # the whole paragraph replaced, not appended
    assert [m.text for m in cube.history(mem.core_memory_id)] == ["Anna flies planes.",
                                                                  "Anna flies planes and lives in Oslo."]
    mem.delete("core")
    assert mem.core == "" and "Empty." in mem.render().split("</core_memory>")[0]
    mem.update("core", "Anna is retired.")  # the same memory comes back as a new version
    assert [m.text for m in cube.history(mem.core_memory_id)][-1] == "Anna is retired."


def test_update_and_delete_by_id_and_bad_calls_change_nothing(cube):
    mem = MemAlphaMemory.open(cube, count_tokens=words, seed=3)
    a = mem.insert("episodic", "On 2 May Anna flew to Oslo")
    b = mem.insert("episodic", "On 9 May Anna flew home")
    mem.update("episodic", "On 2 May 2024 Anna flew to Oslo", a.id)
    assert [i.content for i in mem.items["episodic"]] == ["On 2 May 2024 Anna flew to Oslo", "On 9 May Anna flew home"]
    assert [m.text for m in cube.history(a.memory_id)] == ["On 2 May Anna flew to Oslo",
                                                           "On 2 May 2024 Anna flew to Oslo"]
    snapshot = mem.snapshot()
    for bad in (ToolCall("memory_update", {"memory_type": "episodic", "new_content": "x", "memory_id": "zzzz"}),
                ToolCall("memory_update", {"memory_type": "episodic", "new_content": "x"}),
                ToolCall("memory_delete", {"memory_type": "semantic", "memory_id": a.id}),
                ToolCall("memory_update", {"memory_type": "procedural", "new_content": "x"}),
                ToolCall("new_memory_insert", {"memory_type": "semantic", "content": "  "}),
                ToolCall("drop_everything", {})):
        out = execute(mem, bad)
        assert not out.ok and out.result["status"] == "error", bad
    assert mem.snapshot() == snapshot
    assert execute(mem, ToolCall("memory_delete", {"memory_type": "episodic_memory", "memory_id": b.id})).ok
    assert [i.id for i in mem.items["episodic"]] == [a.id]
    assert cube.get(b.memory_id).state.value == "archived"  # kept in history, out of search

    reopened = MemAlphaMemory.open(cube)  # the state is rebuilt from the cube
    assert reopened.snapshot() == mem.snapshot()
    cube.rollback(a.memory_id, version=1)  # history and rollback come with the cube
    assert MemAlphaMemory.open(cube).items["episodic"][0].content == "On 2 May Anna flew to Oslo"


def test_search_render_truncation_and_token_accounting():
    mem = MemAlphaMemory(count_tokens=words, core_max_tokens=12, seed=1)
    for fact in ["Oslo is the capital of Norway", "Anna likes green tea", "Bergen is rainy", "Anna's cat is Miso",
                 "Tea grows in Assam", "Norway uses the krone"]:
        mem.insert("semantic", fact)
    hits = mem.search("semantic", "what does Anna like to drink? tea")
    found = [h.content for h, _ in hits]
    assert found[0] == "Anna likes green tea" and "Tea grows in Assam" in found  # both terms, then one
    assert all(s > 0 for _, s in hits) and "Bergen is rainy" not in found
    assert mem.search("semantic", "tea", top_k=1)[0][0].content in ("Anna likes green tea", "Tea grows in Assam")
    with pytest.raises(InvalidInput):
        mem.search("core", "tea")
    with pytest.raises(InvalidInput):
        mem.search("semantic", "tea", method="text-embedding")  # no embedder given

    view = mem.render(recent=2)
    assert "(the most recent 2 of 6 items)" in view and "Norway uses the krone" in view
    assert "Oslo is the capital" not in view and re.search(r"\[[0-9a-f]{4}\] Tea grows in Assam", view)

    mem.update("core", "one two three four five six seven eight nine ten eleven twelve thirteen fourteen")
    assert mem.count_tokens(mem.core) <= 12 and mem.core.startswith("one two") and "truncated" in mem.core
    assert mem.total_tokens() == words(mem.core) + sum(words(i.content) for i in mem.items["semantic"])


def test_embedding_search_with_the_real_embedder():
    from memos.embed import MiniLMEmbedder

    mem = MemAlphaMemory(embedder=MiniLMEmbedder(), seed=2)
    for fact in ["The user's dog is called Rex", "Paris is in France", "The user drinks coffee every morning"]:
        mem.insert("semantic", fact)
    best, _ = mem.search("semantic", "What pet does the user have?", method="text-embedding")[0]
    assert best.content == "The user's dog is called Rex"


# ------------------------------------------------------------------------------------------- reward
CHUNKS = ["User: I am Zorblax and my llama is Quimby.", "User: On 3 March I moved to Vellmoor."]
QUESTIONS = [QA("What is the llama called?", "Quimby"), QA("Where did Zorblax move?", "Vellmoor")]


def _episode_policy() -> PromptedPolicy:
    def second(messages):
        sem_id = re.search(r"\[([0-9a-f]{4})\] Quimby is Zorblax's llama", messages[0]["content"]).group(1)
        return (call("new_memory_insert", memory_type="semantic_memory", content="Quimby is Zorblax's llama")
                + call("memory_update", memory_type="episodic_memory", new_content="moved somewhere", memory_id="zzzz")
                + call("memory_delete", memory_type="semantic_memory", memory_id=sem_id))

    return PromptedPolicy(ScriptedChat([
        call("new_memory_insert", memory_type="semantic_memory", content="Quimby is Zorblax's llama")
        + call("new_memory_insert", memory_type="episodic_memory", content="Zorblax adopted Quimby on 3 March")
        + call("memory_update", memory_type="core_memory", new_content="Zorblax owns a llama"),
        second]))


def test_reward_of_a_hand_computed_episode():
    rollout = build(_episode_policy(), MemAlphaMemory(count_tokens=words, seed=5), CHUNKS)
    assert [[o.ok for o in s.outcomes] for s in rollout.steps] == [[True, True, True], [False, False, True]]
    answer_chat = ScriptedChat(["Quimby", "I don't know"])
    scored = score(rollout, QUESTIONS, MemoryAnswerer(answer_chat), judge=RuleJudge())
    # the frozen answerer saw the core paragraph and the retrieved items of the final memory
    first, second = (r["messages"][0]["content"] for r in answer_chat.requests)
    assert "Zorblax owns a llama" in first and "Zorblax adopted Quimby on 3 March" in second
    # r1 = 1/2; l_m = 4 (core) + 6 (episodic) = 10 tokens, l_c = 9 + 8 = 17 -> r3 = 7/17
    assert scored.qa == 0.5 and scored.memory_tokens == 10 and scored.chunk_tokens == 17
    assert scored.compression == pytest.approx(7 / 17)
    s1, s2 = scored.rewards
    assert (s1.tool, s1.content) == (1.0, 1.0)
    # step 2: skipped duplicate, failed update, ok delete -> r2 = 1/3; validity: dup insert (semantic, valid) 1,
    # update "moved somewhere" as episodic (no time) 0, delete 0 -> r4 = 1/3
    assert s2.tool == pytest.approx(1 / 3) and s2.content == pytest.approx(1 / 3)
    assert s1.total == pytest.approx(0.5 + 1 + 0.05 * 7 / 17 + 0.1 * 1)
    assert s2.total == pytest.approx(0.5 + 1 / 3 + 0.05 * 7 / 17 + 0.1 / 3)

    weighted = score(rollout, QUESTIONS, MemoryAnswerer(ScriptedChat(["Quimby", "no"])),
                     weights=RewardWeights(qa=2.0, tool=0.0, compression=1.0, content=0.0))
    assert [r.total for r in weighted.rewards] == pytest.approx([1 + 7 / 17] * 2)
    writes_only = content_validity(rollout.steps[1].outcomes, RuleJudge(), over="writes")
    assert writes_only == pytest.approx(1 / 2)  # the delete is left out


def test_reward_parts():
    assert qa_score("It is Quimby, the llama.", "quimby") == 1.0
    assert qa_score("Quimby", ["Quimbo", "Quimby"], metric="exact") == 1.0
    assert qa_score("It is Quimby", "Quimby", metric="exact") == 0.0
    assert compression(25, 100) == 0.75
    with pytest.raises(InvalidInput):
        compression(1, 0)
    judge = RuleJudge()
    assert judge.valid("episodic", "On Friday Anna ran 10 km") and not judge.valid("episodic", "Anna runs")
    assert not judge.valid("core", "The core memory has been updated.") and judge.valid("core", "Anna is a pilot.")
    llm = LLMJudge(ScriptedChat(['```json\n{"VALID": true, "ISSUES": [], "EXPLANATION": "ok"}\n```',
                                 '{"valid": false}', "I think it is fine"]))
    assert llm.valid("semantic", "Oslo is in Norway") is True
    assert llm.valid("semantic", "Oslo is in Norway") is False
    assert llm.valid("semantic", "Oslo is in Norway") is False  # unreadable verdict
    assert llm.valid("semantic", "") is False and llm.chat.remaining == 0  # empty content: no LLM call


# ----------------------------------------------------------------------------------------- policies
def test_qwen_function_call_text_is_parsed():
    text = ("<think>the user has a llama {\"name\": \"x\"}</think>I will store it.\n"
            "✿FUNCTION✿: new_memory_insert\n"
            "✿ARGS✿: {\"memory_type\": \"semantic_memory\", \"content\": \"Quimby is a llama\"}\n"
            "✿FUNCTION✿: memory_update\n✿ARGS✿: {'memory_type': 'core_memory', 'new_content': 'Owner of Quimby',}\n"
            "✿RESULT✿: ok")
    calls = parse_qwen_calls(text, ["new_memory_insert", "memory_update", "memory_delete"])
    assert [(c.name, c.arguments) for c in calls] == [
        ("new_memory_insert", {"memory_type": "semantic_memory", "content": "Quimby is a llama"}),
        ("memory_update", {"memory_type": "core_memory", "new_content": "Owner of Quimby"})]
    hermes = '<tool_call>{"name": "memory_delete", "arguments": {"memory_type": "core_memory"}}</tool_call>'
    assert [c.name for c in parse_qwen_calls(hermes, ["memory_delete"])] == ["memory_delete"]
    assert parse_qwen_calls("<think>unfinished ✿FUNCTION✿: memory_delete\n✿ARGS✿: {}", None) == []


class _Endpoint:
    """A real OpenAI-compatible HTTP endpoint on loopback answering with canned messages."""

    def __init__(self, messages: list[dict]) -> None:
        self.messages, self.requests = list(messages), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body})
                data = json.dumps({"choices": [{"message": outer.messages.pop(0)}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_endpoint_policy_speaks_qwen_text_and_openai_tools():
    native = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "new_memory_insert", "arguments": json.dumps({"memory_type": "episodic_memory",
                                                              "content": "On 3 March Zorblax adopted Quimby"})}}]}
    qwen = {"role": "assistant", "content": "<think>store it</think>✿FUNCTION✿: memory_update\n"
            "✿ARGS✿: {\"memory_type\": \"core_memory\", \"new_content\": \"Zorblax keeps a llama\"}"}
    server = _Endpoint([native, qwen])
    try:
        mem = MemAlphaMemory(seed=0)
        openai_policy = EndpointPolicy(server.url, "memalpha", call_format="openai")
        rollout = build(openai_policy, mem, ["User: on 3 March I adopted Quimby."])
        req = server.requests[0]
        assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "memalpha"
        assert [t["function"]["name"] for t in req["body"]["tools"]] == ["new_memory_insert", "memory_update",
                                                                          "memory_delete"]
        assert rollout.steps[0].outcomes[0].ok and mem.items["episodic"][0].content.startswith("On 3 March")

        qwen_policy = EndpointPolicy(server.url, call_format="qwen")
        calls = qwen_policy.act(mem.render(), "User: I love my llama.")
        body = server.requests[1]["body"]
        assert "tools" not in body and "✿FUNCTION✿" in body["messages"][0]["content"]
        assert "✿RESULT✿" in body["stop"] and body["model"] == "YuWangX/Memalpha-4B"
        assert [(c.name, c.arguments["new_content"]) for c in calls] == [("memory_update", "Zorblax keeps a llama")]
    finally:
        server.close()
    with pytest.raises(InvalidInput):
        EndpointPolicy("http://x", call_format="xml")


def test_chunking_and_input_files(tmp_path):
    text = "\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(5))
    chunks = split_chunks(text, chunk_tokens=70, count_tokens=words)
    assert len(chunks) == 3 and all(words(c) <= 70 for c in chunks) and chunks[0].startswith("Paragraph 0")
    long_para = split_chunks("a " * 100, chunk_tokens=30, count_tokens=words)
    assert all(words(c) <= 30 for c in long_para) and sum(map(words, long_para)) == 100
    (tmp_path / "bad.json").write_text('{"chunks": []}')
    with pytest.raises(InvalidInput):
        read_instances(tmp_path / "bad.json")
    with pytest.raises(InvalidInput):
        read_instances(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------- CLI
def _cli(home, *args: str, code: int = 0, capsys=None) -> dict:
    rc = main(["--home", str(home), *args, "--json"])
    out, err = capsys.readouterr()
    assert rc == code, (args, out, err)
    return json.loads(out)


def test_cli_build_and_show_with_a_scripted_model(home, tmp_path, monkeypatch, capsys):
    from memos_mem_alpha import plugin

    data = tmp_path / "talk.json"
    data.write_text(json.dumps({"chunks": CHUNKS, "questions": [{"question": "What is the llama called?",
                                                                 "answer": "Quimby"}]}))
    chat = ScriptedChat([call("new_memory_insert", memory_type="semantic_memory", content="Quimby is a llama"),
                         call("memory_update", memory_type="core_memory", new_content="Zorblax lives in Vellmoor"),
                         "Quimby"])
    monkeypatch.setattr(plugin, "chat_backend", lambda *a, **k: chat)
    out = _cli(home, "mem-alpha", "build", "talk", "--input", str(data), "--endpoint", "http://unused",
               capsys=capsys)
    assert out["cube"] == "talk" and out["chunks"] == 2 and out["calls"] == 2 and out["succeeded"] == 2
    assert out["memory"]["core"] == "Zorblax lives in Vellmoor" and out["score"]["qa"] == 1.0
    assert list(out["memory"]["semantic"][0].values()) == ["Quimby is a llama"]
    shown = _cli(home, "mem-alpha", "show", "talk", capsys=capsys)
    assert shown["memory"] == out["memory"] and "<core_memory>" in shown["view"]
    sem_id, memory_id = next(iter(shown["ids"]["semantic"].items()))
    assert list(out["memory"]["semantic"][0]) == [sem_id]
    assert _cli(home, "get", "talk", memory_id, capsys=capsys)["text"] == "Quimby is a llama"

    err = _cli(home, "mem-alpha", "build", "other", "--input", str(tmp_path / "nope.txt"), "--endpoint", "http://u",
               code=1, capsys=capsys)
    assert err["error"]["type"] == "InvalidInput"
    assert _cli(home, "mem-alpha", "build", "talk", "--input", str(data), "--policy", "endpoint", code=1,
                capsys=capsys)["error"]["type"] == "InvalidInput"  # endpoint without --endpoint
    assert "other" not in [c["name"] for c in _cli(home, "cube", "list", capsys=capsys)["cubes"]]  # nothing made


@pytest.mark.slow
def test_cli_train_one_grpo_step_then_build_with_the_trained_policy(home, tmp_path, models_dir, engine,
                                                                       monkeypatch, capsys):
    monkeypatch.setenv("MEMOS_MODELS_DIR", str(models_dir))  # the session's converted model
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps([{"id": "llama", "chunks": ["User: my llama is Quimby."],
                                 "questions": [{"question": "llama name?", "answer": "Quimby"}]}]))
    out = _cli(home, "mem-alpha", "train", "--steps", "1", "--data", str(data), "--group-size", "2",
               "--max-tokens", "12", "--out", str(tmp_path / "pol"), capsys=capsys)
    (step,) = out["steps"]
    assert step["rollouts"] == 2 and step["grpo"]["samples"] == 2  # one chunk step per rollout
    assert 0.0 <= step["qa"] <= 1.0 and step["compression"] <= 1.0
    assert sorted(p.name for p in (tmp_path / "pol").iterdir()) == ["adapter_config.json",
                                                                    "adapter_model.safetensors", "policy.json"]
    built = _cli(home, "mem-alpha", "build", "zorb", "--input", str(data), "--adapter", str(tmp_path / "pol"),
                 "--prompt", "compact", "--max-tokens", "12", capsys=capsys)
    assert built["chunks"] == 1 and len(built["steps"]) == 1 and "qa" in built["score"]
