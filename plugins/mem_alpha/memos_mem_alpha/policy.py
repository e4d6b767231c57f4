"""Mem-alpha policies: ``act(memory_view, chunk) -> tool calls`` (Wang et al. 2025).

* :class:`PromptedPolicy`: any chat backend (the local model, an OpenAI-compatible endpoint, or the
  GRPO-trained :class:`memos.rl.LoraPolicy` behind ``LocalChat``), prompted with the memorising
  instructions, the rendered memory and the chunk. With an untrained model this is the paper's
  untrained baseline.
* :class:`EndpointPolicy`: an OpenAI-compatible endpoint serving the released checkpoint
  (``YuWangX/Memalpha-4B``, a Qwen3-4B). ``call_format="qwen"`` describes the tools in the Qwen-Agent
  function-call text format the checkpoint was trained with (``✿FUNCTION✿: name`` / ``✿ARGS✿: {...}``)
  and parses that format (Hermes ``<tool_call>`` JSON is accepted too); ``call_format="openai"`` sends
  OpenAI ``tools`` and reads native ``tool_calls``.

The prompts are ours, written after the structure of the authors' memorising prompt (memory-type
guidance, current memory state, the chunk, "call every tool in this one turn").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from memos.errors import InvalidInput
from memos.llm import ChatBackend, Message, OpenAIChat, ToolCall, loads_tolerant, parse_tool_calls
from memos_mem_alpha.tools import WRITE_TOOLS

SYSTEM_PROMPT = """You are an assistant with a structured memory. Read the new information the user gives you \
and store what will matter later, using the memory tools.
- core_memory: one short paragraph that is always visible: who the user is, a summary of what they are \
reading, or rules learnt from labelled examples. Rewrite it whole with memory_update when it should change.
- semantic_memory: facts and knowledge, one per item (e.g. "Anna is the user's sister", "Capital of Peru: Lima").
- episodic_memory: events with their time (e.g. "On 2024-05-01 the user moved to Lisbon").
Change or delete an item by its [id]; never store the same content twice.

Current memory:
{memory}

Call every tool you need in this one reply. If everything is already stored, answer Done."""

CHUNK_PROMPT = """Memorise this new chunk:
<new_chunk>
{chunk}
</new_chunk>
Keep every memory entry brief."""

COMPACT_PROMPT = """Store what matters in the new chunk with memory tool calls, each written as
<tool_call>{{"name": ..., "arguments": {{...}}}}</tool_call>
Tools:
- new_memory_insert(memory_type: semantic_memory|episodic_memory, content)
- memory_update(memory_type: core_memory|semantic_memory|episodic_memory, new_content, memory_id)
- memory_delete(memory_type, memory_id)
core_memory: one paragraph about the user, rewritten whole. semantic_memory: facts. episodic_memory: events \
with their time.

Current memory:
{memory}"""

FN_NAME, FN_ARGS, FN_RESULT, FN_EXIT = "✿FUNCTION✿", "✿ARGS✿", "✿RESULT✿", "✿RETURN✿"


class Policy(Protocol):
    def act(self, memory_view: str, chunk: str) -> list[ToolCall]: ...


@dataclass
class Decision:
    """What a policy did for one chunk: the parsed calls, its raw text, the messages it was shown and
    the backend's raw result (a :class:`memos.rl.Sampled` when the backend is a trainable policy)."""

    calls: list[ToolCall]
    text: str
    messages: list[Message] = field(default_factory=list)
    raw: Any = None


def memorise_messages(memory_view: str, chunk: str, style: str = "full") -> list[Message]:
    """The memorising request: ``full`` (the instructions; tools come as schemas) or ``compact`` (a
    short prompt that lists the tools itself: about a quarter of the tokens, for CPU training)."""
    if not isinstance(chunk, str) or not chunk.strip():
        raise InvalidInput("the chunk is empty", field="chunk")
    if style not in ("full", "compact"):
        raise InvalidInput(f"prompt style must be full or compact, not {style!r}", field="style")
    system = (SYSTEM_PROMPT if style == "full" else COMPACT_PROMPT).format(memory=memory_view)
    return [{"role": "system", "content": system},
            {"role": "user", "content": CHUNK_PROMPT.format(chunk=chunk.strip())}]


def strip_thinking(text: str) -> str:
    """Drop ``<think>...</think>`` blocks (Qwen3); an unfinished one hides everything after it."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    return text.split("<think>", 1)[0]


class PromptedPolicy:
    """Prompt any chat backend with the memorising instructions and read its tool calls."""

    def __init__(self, chat: ChatBackend, *, temperature: float = 0.0, max_tokens: int = 512,
                 tools: Sequence[dict[str, Any]] = WRITE_TOOLS, style: str = "full") -> None:
        if style not in ("full", "compact"):
            raise InvalidInput(f"prompt style must be full or compact, not {style!r}", field="style")
        self.chat = chat
        self.style = style
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.tools = list(tools)
        self.tool_names = [t["function"]["name"] for t in self.tools]

    def decide(self, memory_view: str, chunk: str) -> Decision:
        messages = memorise_messages(memory_view, chunk, self.style)
        # compact: the prompt lists the tools, so the backend gets none (no schema block is added)
        tools = self.tools if self.style == "full" else None
        res = self.chat.chat(messages, tools=tools, temperature=self.temperature, max_tokens=self.max_tokens)
        calls = list(res.tool_calls) or parse_tool_calls(strip_thinking(res.content), self.tool_names)
        return Decision([c for c in calls if c.name in self.tool_names], res.content, messages, res.raw)

    def act(self, memory_view: str, chunk: str) -> list[ToolCall]:
        return self.decide(memory_view, chunk).calls


def qwen_tools_block(tools: Sequence[dict[str, Any]]) -> str:
    """The tools described for a model trained on the Qwen-Agent function-call text format."""
    specs = []
    for t in tools:
        fn = t.get("function", t)
        specs.append(f"### {fn['name']}\n\n{fn['name']}: {fn.get('description', '')} Parameters: "
                     f"{json.dumps(fn.get('parameters', {}), ensure_ascii=False)} The arguments are a JSON object.")
    names = ", ".join(t.get("function", t)["name"] for t in tools)
    return ("# Tools\n\n## Tools you can use:\n\n" + "\n\n".join(specs) +
            f"\n\n## To call a tool, write (once per call, as many calls as needed):\n\n"
            f"{FN_NAME}: the tool's name, one of [{names}]\n{FN_ARGS}: its arguments\n"
            f"{FN_RESULT}: the tool's result\n{FN_EXIT}: your reply once you have the results")


_QWEN_CALL = re.compile(rf"{FN_NAME}:\s*([A-Za-z_][\w\-]*)\s*{FN_ARGS}:\s*(.*?)(?={FN_NAME}|{FN_RESULT}|{FN_EXIT}|$)",
                        re.S)


def parse_qwen_calls(text: str, tool_names: Sequence[str] | None = None) -> list[ToolCall]:
    """Tool calls in the Qwen-Agent text format (``✿FUNCTION✿: name`` then ``✿ARGS✿: {...}``), with
    Hermes ``<tool_call>`` JSON and the other formats of :func:`memos.llm.parse_tool_calls` as fallback."""
    text = strip_thinking(text)
    known = set(tool_names) if tool_names is not None else None
    calls = []
    for name, raw_args in _QWEN_CALL.findall(text):
        if known is not None and name not in known:
            continue
        raw_args = raw_args.strip()
        start, end = raw_args.find("{"), raw_args.rfind("}")
        args = loads_tolerant(raw_args[start:end + 1]) if start >= 0 and end > start else None
        if isinstance(args, dict):
            calls.append(ToolCall(name=name, arguments=args))
    return calls or parse_tool_calls(text, tool_names)


class EndpointPolicy:
    """The released Mem-alpha checkpoint (or any model) behind an OpenAI-compatible endpoint."""

    def __init__(self, base_url: str, model: str = "YuWangX/Memalpha-4B", *, api_key: str | None = None,
                 call_format: str = "qwen", temperature: float = 0.0, max_tokens: int = 2048,
                 chat: ChatBackend | None = None, tools: Sequence[dict[str, Any]] = WRITE_TOOLS) -> None:
        if call_format not in ("qwen", "openai"):
            raise InvalidInput(f"call_format must be qwen or openai, not {call_format!r}", field="call_format")
        self.chat = chat or OpenAIChat(base_url, model, api_key=api_key)
        self.call_format = call_format
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.tools = list(tools)
        self.tool_names = [t["function"]["name"] for t in self.tools]

    def decide(self, memory_view: str, chunk: str) -> Decision:
        messages = memorise_messages(memory_view, chunk)
        if self.call_format == "openai":
            res = self.chat.chat(messages, tools=self.tools, temperature=self.temperature, max_tokens=self.max_tokens)
            calls = list(res.tool_calls) or parse_tool_calls(strip_thinking(res.content), self.tool_names)
        else:
            messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{qwen_tools_block(self.tools)}"}
            res = self.chat.chat(messages, temperature=self.temperature, max_tokens=self.max_tokens,
                                 stop=[FN_RESULT, FN_EXIT])
            calls = parse_qwen_calls(res.content, self.tool_names)
        return Decision([c for c in calls if c.name in self.tool_names], res.content, messages, res.raw)

    def act(self, memory_view: str, chunk: str) -> list[ToolCall]:
        return self.decide(memory_view, chunk).calls


__all__ = ["CHUNK_PROMPT", "COMPACT_PROMPT", "SYSTEM_PROMPT", "Decision", "EndpointPolicy", "Policy", "PromptedPolicy",
           "memorise_messages", "parse_qwen_calls", "qwen_tools_block", "strip_thinking"]
