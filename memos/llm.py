"""One chat interface for method plugins (L2MAC, ChatDB, Mem-alpha, MEM1, ArcMemo, memory reading).

``backend.chat(messages, tools=None, temperature=0.0, max_tokens=256, stop=None) -> ChatResult`` with
``content`` and ``tool_calls``. Three backends:

* :class:`LocalChat`: the local engine (SmolLM2 on CPU) through its chat template; tool calls are parsed
  from the generated text.
* :class:`OpenAIChat`: any OpenAI-compatible ``/chat/completions`` endpoint (native ``tool_calls``, or
  tool calls written in the text by models without tool support).
* :class:`ScriptedChat`: replays scripted replies (strings or callables of the messages) and records every
  request: deterministic tests of a plugin's control flow.

:func:`parse_tool_calls` reads the formats small models actually produce: OpenAI-style JSON objects,
Qwen/Hermes ``<tool_call>{...}</tool_call>``, fenced ```json blocks, and function-call text
``name(arg=value, ...)``; it repairs trailing commas, single quotes and unquoted keys, and never raises
(unparseable text is no tool call).
"""

from __future__ import annotations

import ast
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from memos.errors import BackendError, InvalidInput

Message = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass(frozen=True)
class ChatResult:
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    raw: Any = None


class ChatBackend(Protocol):
    name: str

    def chat(self, messages: Sequence[Message], *, tools: Sequence[dict[str, Any]] | None = None,
             temperature: float = 0.0, max_tokens: int = 256, stop: Sequence[str] | None = None) -> ChatResult: ...


def _check(messages: Sequence[Message]) -> None:
    if not messages or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        raise InvalidInput("messages must be a non-empty list of {'role', 'content'} objects", field="messages")


# ------------------------------------------------------------------------------------- parsing
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```(?:json|tool_call)?\s*(.*?)```", re.S)
_FUNC = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\((.*?)\)\s*$", re.S | re.M)


def loads_tolerant(text: str) -> Any:
    """json.loads that also accepts trailing commas, single quotes, Python literals and unquoted keys."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    fixed = re.sub(r",\s*([}\]])", r"\1", text)
    fixed = re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:", r'\1"\2":', fixed)
    try:
        return json.loads(fixed)
    except ValueError:
        pass
    try:
        return ast.literal_eval(re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False",
                                                                   re.sub(r"\bnull\b", "None", fixed))))
    except (ValueError, SyntaxError):
        return None


def outside_strings(text: str, quotes: str = "\"'") -> Iterator[tuple[int, str]]:
    """``(index, character)`` of every character of ``text`` outside string literals delimited by one of
    ``quotes`` (backslash escapes respected); the delimiters themselves are skipped."""
    quote, escape = "", False
    for i, ch in enumerate(text):
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = ""
        elif ch in quotes:
            quote = ch
        else:
            yield i, ch


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` substring (brace-balanced, strings respected)."""
    out, depth, start = [], 0, -1
    for i, ch in outside_strings(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                out.append(text[start:i + 1])
    return out


def _as_call(obj: Any, known: set[str] | None) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    fn = obj.get("function") if isinstance(obj.get("function"), dict) else obj
    name = fn.get("name") or obj.get("tool") or obj.get("action")
    args = fn.get("arguments", fn.get("parameters", fn.get("args", fn.get("input", {}))))
    if isinstance(args, str):
        args = loads_tolerant(args) or {}
    if not isinstance(name, str) or not isinstance(args, dict):
        return None
    if known is not None and name not in known:
        return None
    return ToolCall(name=name, arguments=args, id=str(obj.get("id", "")))


def parse_tool_calls(text: str, tool_names: Sequence[str] | None = None) -> list[ToolCall]:
    """Tool calls written in ``text`` (see the module docstring); ``tool_names`` filters to known tools."""
    known = set(tool_names) if tool_names is not None else None
    calls: list[ToolCall] = []
    tagged = _TAGGED.findall(text)
    chunks = tagged or _FENCED.findall(text) or [text]
    for chunk in chunks:
        for candidate in _balanced_objects(chunk):
            obj = loads_tolerant(candidate)
            items = obj if isinstance(obj, list) else [obj]
            calls += [c for c in (_as_call(o, known) for o in items) if c is not None]
    if not calls and known:
        for name, raw_args in _FUNC.findall(text):
            if name in known:
                args = loads_tolerant("{" + raw_args.replace("=", ":") + "}")
                if isinstance(args, dict):
                    calls.append(ToolCall(name=name, arguments=args))
    return calls


def tools_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """A system-prompt block describing tools for models without native tool calling."""
    specs = "\n".join(json.dumps(t.get("function", t)) for t in tools)
    return ("You can call tools. To call one, answer with <tool_call>{\"name\": ..., \"arguments\": {...}}"
            f"</tool_call>. Tools:\n{specs}")


# ------------------------------------------------------------------------------------ backends
class ScriptedChat:
    """Replays ``replies`` in order (a string, or a callable of the messages returning one)."""

    name: ClassVar[str] = "scripted"

    def __init__(self, replies: Sequence[str | Callable[[Sequence[Message]], str]]) -> None:
        self._replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    def chat(self, messages: Sequence[Message], *, tools: Sequence[dict[str, Any]] | None = None,
             temperature: float = 0.0, max_tokens: int = 256, stop: Sequence[str] | None = None) -> ChatResult:
        _check(messages)
        self.requests.append({"messages": [dict(m) for m in messages], "tools": tools})
        if not self._replies:
            raise BackendError("scripted", f"script exhausted after {len(self.requests) - 1} replies")
        reply = self._replies.pop(0)
        text = reply(messages) if callable(reply) else reply
        names = [t.get("function", t).get("name") for t in tools or []]
        return ChatResult(text, tuple(parse_tool_calls(text, names if tools else None)) if tools else ())

    @property
    def remaining(self) -> int:
        return len(self._replies)


class LocalChat:
    """The local engine as a chat model (tools described in the system prompt, calls parsed from text)."""

    name: ClassVar[str] = "local"

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def chat(self, messages: Sequence[Message], *, tools: Sequence[dict[str, Any]] | None = None,
             temperature: float = 0.0, max_tokens: int = 256, stop: Sequence[str] | None = None) -> ChatResult:
        _check(messages)
        msgs = [dict(m) for m in messages]
        if tools:
            block = tools_prompt(tools)
            if msgs[0]["role"] == "system":
                msgs[0]["content"] = f"{msgs[0]['content']}\n\n{block}"
            else:
                msgs.insert(0, {"role": "system", "content": block})
        text = self.engine._render_chat(msgs, reply=True)
        out = self.engine.generate_ids(self.engine.encode(text), max_tokens=max_tokens, temperature=temperature)
        content = out.text
        for s in stop or ():
            if s in content:
                content = content[: content.index(s)]
        names = [t.get("function", t).get("name") for t in tools or []]
        return ChatResult(content, tuple(parse_tool_calls(content, names)) if tools else (), raw=out)


@dataclass
class OpenAIChat:
    """Any OpenAI-compatible chat endpoint."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    name: ClassVar[str] = "openai"
    extra: dict[str, Any] = field(default_factory=dict)

    def chat(self, messages: Sequence[Message], *, tools: Sequence[dict[str, Any]] | None = None,
             temperature: float = 0.0, max_tokens: int = 256, stop: Sequence[str] | None = None) -> ChatResult:
        _check(messages)
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": temperature,
                                "max_tokens": max_tokens, **self.extra}
        if tools:
            body["tools"] = list(tools)
        if stop:
            body["stop"] = list(stop)
        req = urllib.request.Request(f"{self.base_url.rstrip('/')}/chat/completions", method="POST",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - configured URL
                data = json.loads(resp.read())
        except (urllib.error.URLError, ValueError, TimeoutError) as exc:
            raise BackendError("openai-chat", f"{self.base_url}: {exc}") from exc
        try:
            msg = data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError("openai-chat", f"unexpected response: {str(data)[:200]}") from exc
        content = msg.get("content") or ""
        calls = [c for c in (_as_call(tc, None) for tc in msg.get("tool_calls") or []) if c is not None]
        if tools and not calls:
            calls = parse_tool_calls(content, [t.get("function", t).get("name") for t in tools])
        return ChatResult(content, tuple(calls), raw=data)


def chat_backend(mos: Any, endpoint: str | None = None, model: str | None = None,
                 api_key: str | None = None) -> ChatBackend:
    """The backend a CLI command asked for: an OpenAI-compatible ``endpoint`` (with ``model``), else the
    local engine of ``mos``."""
    if endpoint:
        return OpenAIChat(endpoint, model or "default", api_key=api_key)
    return LocalChat(mos.engine("local"))
