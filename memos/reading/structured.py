"""Structured output from any chat backend: reply -> JSON -> pydantic model, with repair and retry.

Small models write almost-JSON: prose around it, a fenced block, trailing commas, single quotes, or
an object cut off by the token limit. :func:`parse_json` repairs what it can (``loads_tolerant`` for
the syntax, closing brackets for truncation); :func:`structured_chat` validates the result against a
pydantic schema and, when that fails, asks the model again with the validation error in the prompt.
When every attempt fails it returns a :class:`Structured` with ``value=None`` and the errors and raw
replies: the caller records the failure, it is never dropped silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from memos.errors import MemosError
from memos.llm import ChatBackend, Message, _balanced_objects, loads_tolerant, outside_strings

T = TypeVar("T", bound=BaseModel)
_FENCED = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL)
#: Errors a backend may raise for one call that a retry can get past (a network error, a prompt the
#: local model rejects, a scripted backend running dry); they are recorded with the attempt.
_CALL_ERRORS = (MemosError, ValueError, RuntimeError, OSError)


@dataclass
class Structured(Generic[T]):
    """The outcome of :func:`structured_chat`."""

    value: T | None
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    repaired: bool = False
    """The value needed a repair: tolerant parsing, closing a truncated object, or a second attempt."""

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def error(self) -> str:
        return "; ".join(self.errors[-2:]) if self.errors else ""


def _close_truncated(text: str) -> str | None:
    """``text`` cut back to its last complete element, with the open brackets closed (or None)."""
    stack: list[str] = []
    last: tuple[int, list[str]] | None = None
    for i, ch in outside_strings(text, '"'):
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
            if stack:
                last = (i + 1, list(stack))
    if not stack or last is None:
        return None
    end, open_ = last
    return text[:end] + "".join(reversed(open_))


def parse_json(text: str) -> tuple[Any, bool]:
    """The JSON value a model reply holds and whether it needed repair; ``(None, False)`` if none."""
    if not isinstance(text, str) or not text.strip():
        return None, False
    stripped = text.strip()
    try:
        return json.loads(stripped), False
    except ValueError:
        pass
    candidates = [stripped] + _FENCED.findall(stripped) + _balanced_objects(stripped)
    start = min((i for i in (stripped.find("{"), stripped.find("[")) if i >= 0), default=-1)
    if start >= 0:
        candidates.append(stripped[start:])
    for cand in candidates:
        value = loads_tolerant(cand)
        if isinstance(value, (dict, list)):
            return value, True
    for cand in candidates[-1:] if start >= 0 else []:
        closed = _close_truncated(cand)
        value = loads_tolerant(closed) if closed else None
        if isinstance(value, (dict, list)):
            return value, True
    return None, False


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:4]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def structured_chat(llm: ChatBackend, messages: Sequence[Message], schema: type[T], *, example: str,
                    max_attempts: int = 3, max_tokens: int = 256,
                    context: dict[str, Any] | None = None) -> Structured[T]:
    """Ask ``llm`` for a JSON value valid under ``schema`` (``context`` goes to its validators); on
    invalid output, retry with the error and ``example`` (the expected shape) in a repair prompt."""
    out: Structured[T] = Structured(value=None)
    msgs = [dict(m) for m in messages]
    for attempt in range(1, max_attempts + 1):
        out.attempts = attempt
        try:
            reply = llm.chat(msgs, temperature=0.0, max_tokens=max_tokens).content or ""
        except _CALL_ERRORS as exc:
            out.errors.append(f"attempt {attempt}: {type(exc).__name__}: {exc}")
            continue
        out.raw.append(reply)
        value, repaired = parse_json(reply)
        if value is None:
            problem = "the reply holds no JSON value"
        else:
            try:
                out.value = schema.model_validate(value, context=context)
                out.repaired = repaired or attempt > 1
                return out
            except ValidationError as exc:
                problem = _brief(exc)
        out.errors.append(f"attempt {attempt}: {problem}")
        msgs = [*messages, {"role": "assistant", "content": reply[:2000]},
                {"role": "user", "content": f"That reply is not valid ({problem}). Answer again with only a "
                                            f"JSON object shaped like {example}"}]
    return out
