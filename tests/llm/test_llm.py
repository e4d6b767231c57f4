"""The chat interface: tolerant tool-call parsing, scripted replay, the local model, an OpenAI endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from memos.errors import BackendError, InvalidInput
from memos.llm import LocalChat, OpenAIChat, ScriptedChat, ToolCall, loads_tolerant, parse_tool_calls

TOOLS = [{"type": "function", "function": {"name": "write_file", "parameters": {}}},
         {"type": "function", "function": {"name": "mark_complete", "parameters": {}}}]


@pytest.mark.parametrize("text,expected", [
    ('{"name": "write_file", "arguments": {"path": "a.py", "content": "x = 1"}}',
     [ToolCall("write_file", {"path": "a.py", "content": "x = 1"})]),
    ('Sure!\n<tool_call>{"name": "mark_complete", "arguments": {}}</tool_call>',
     [ToolCall("mark_complete", {})]),
    ("```json\n{'name': 'write_file', 'arguments': {'path': 'b.py', 'content': 'y',},}\n```",
     [ToolCall("write_file", {"path": "b.py", "content": "y"})]),
    ('{"function": {"name": "write_file", "arguments": "{\\"path\\": \\"c.py\\"}"}, "id": "t1"}',
     [ToolCall("write_file", {"path": "c.py"}, id="t1")]),
    ('<tool_call>{"name": "write_file", "arguments": {"path": "d.py"}}<tool_call>{"name": "mark_complete",'
     ' "arguments": {}}', [ToolCall("write_file", {"path": "d.py"}), ToolCall("mark_complete", {})]),
    ('write_file(path="e.py", content="z")', [ToolCall("write_file", {"path": "e.py", "content": "z"})]),
    ('{"name": "rm_rf", "arguments": {}}', []),  # unknown tool
    ("I cannot help with that {not json at all", []),
])
def test_parse_tool_calls_tolerates_small_model_output(text, expected):
    assert parse_tool_calls(text, ["write_file", "mark_complete"]) == expected


def test_loads_tolerant():
    assert loads_tolerant("{a: 1, 'b': [true, null,],}") == {"a": 1, "b": [True, None]}
    assert loads_tolerant("not json") is None


def test_scripted_chat_replays_and_records():
    chat = ScriptedChat(["hello", lambda msgs: f'<tool_call>{{"name": "mark_complete", "arguments": '
                                               f'{{"n": {len(msgs)}}}}}</tool_call>'])
    assert chat.chat([{"role": "user", "content": "hi"}]).content == "hello"
    res = chat.chat([{"role": "system", "content": "s"}, {"role": "user", "content": "go"}], tools=TOOLS)
    assert res.tool_calls == (ToolCall("mark_complete", {"n": 2}),)
    assert len(chat.requests) == 2 and chat.remaining == 0
    with pytest.raises(BackendError):
        chat.chat([{"role": "user", "content": "more"}])
    with pytest.raises(InvalidInput):
        chat.chat([])


@pytest.mark.slow
def test_local_chat_generates(engine):
    res = LocalChat(engine).chat([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert res.content.strip() and res.tool_calls == ()


class _Chat(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("tools"):
            msg = {"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "write_file", "arguments": json.dumps({"path": "x.py"})}}]}
        else:
            msg = {"content": f"echo {body['messages'][-1]['content']}"}
        out = json.dumps({"choices": [{"message": msg}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def test_openai_chat_against_loopback_endpoint():
    srv = HTTPServer(("127.0.0.1", 0), _Chat)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        chat = OpenAIChat(base_url=f"http://127.0.0.1:{srv.server_port}/v1", model="m")
        assert chat.chat([{"role": "user", "content": "ping"}]).content == "echo ping"
        res = chat.chat([{"role": "user", "content": "go"}], tools=TOOLS)
        assert res.tool_calls == (ToolCall("write_file", {"path": "x.py"}, id="c1"),)
    finally:
        srv.shutdown()
    with pytest.raises(BackendError):
        OpenAIChat(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2).chat([{"role": "user", "content": "x"}])
