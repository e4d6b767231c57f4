"""Memory reading, step 1: conversation turns and the atomic facts an LLM extracts from them.

* :func:`normalise_messages` accepts OpenAI-style ``{"role", "content"}`` messages, LoCoMo-style
  ``{"speaker", "text", "dia_id"}`` turns or plain strings, and checks them (``InvalidInput`` on bad
  input, before anything is stored).
* :class:`FactExtractor` asks the model for ``{"facts": [{"text", "turns", "when"}]}`` over a window of
  numbered turns; the reply is validated by :class:`Extraction` (pydantic), repaired and retried by
  :func:`memos.reading.structured.structured_chat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from memos.errors import InvalidInput
from memos.llm import ChatBackend
from memos.models import check_encodable, check_metadata, check_text, parse_time
from memos.reading.structured import Structured, structured_chat

#: Most messages one ``add_messages`` call takes.
MAX_MESSAGES = 10_000
_TEXT_KEYS = ("content", "text")
_WHO_KEYS = ("speaker", "name", "role")
_TIME_KEYS = ("event_time", "time", "timestamp")
_ID_KEYS = ("dia_id", "id")
_KNOWN = {*_TEXT_KEYS, *_WHO_KEYS, *_TIME_KEYS, *_ID_KEYS, "session", "metadata", "caption", "blip_caption"}


@dataclass
class Turn:
    """One conversation turn, validated; ``memory`` is set once the raw turn is stored."""

    speaker: str
    text: str
    role: str | None = None
    session: Any = None
    when: datetime | None = None
    turn_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    memory: Any = None

    @property
    def line(self) -> str:
        """How the turn reads in a memory and in a prompt: ``Speaker: words``."""
        return f"{self.speaker}: {self.text}"


def normalise_messages(messages: Any, *, session: Any = None, event_time: Any = None) -> list[Turn]:
    """Validate ``messages`` into turns; ``session`` and ``event_time`` apply where a message has none."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidInput("messages must be a list of messages", field="messages")
    if not messages:
        raise InvalidInput("messages is empty", field="messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidInput(f"at most {MAX_MESSAGES} messages per call", field="messages")
    _check_session(session)
    default_when = parse_time(event_time, "event_time")
    turns = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if isinstance(msg, str):
            msg = {"content": msg}
        if not isinstance(msg, dict):
            raise InvalidInput(f"{where} must be a string or an object, got {type(msg).__name__}", field="messages")
        unknown = set(msg) - _KNOWN
        if unknown:
            raise InvalidInput(f"{where} has unknown fields: {', '.join(sorted(map(str, unknown)))}",
                               field="messages")
        text = next((msg[k] for k in _TEXT_KEYS if k in msg), None)
        text = check_text(text, f"{where}.content").strip()
        caption = msg.get("caption") or msg.get("blip_caption")
        if caption:
            text += f" [shares {check_text(caption, f'{where}.caption').strip()}]"
        for key in _WHO_KEYS:
            value = msg.get(key)
            if key in msg and (not isinstance(value, str) or not value.strip() or len(value) > 200):
                raise InvalidInput(f"{where}.{key} must be a short non-empty string", field="messages")
            if key in msg:
                check_encodable(value, f"{where}.{key}")
        role = msg.get("role")
        who = next((msg[k] for k in _WHO_KEYS if k in msg), "user")
        when = next((parse_time(msg[k], f"{where}.{k}") for k in _TIME_KEYS if msg.get(k) is not None),
                    default_when)
        turn_id = next((msg[k] for k in _ID_KEYS if msg.get(k) is not None), None)
        if turn_id is not None and not isinstance(turn_id, (str, int)):
            raise InvalidInput(f"{where}.id must be a string or an integer", field="messages")
        sess = msg.get("session", session)
        _check_session(sess)
        turns.append(Turn(speaker=who.strip(), text=text, role=role, session=sess, when=when,
                          turn_id=None if turn_id is None else str(turn_id),
                          metadata=check_metadata(msg.get("metadata"))))
    return turns


def _check_session(session: Any) -> None:
    if session is not None and (isinstance(session, bool) or not isinstance(session, (str, int))):
        raise InvalidInput("session must be a string or an integer", field="session")


def windows(turns: list[Turn], size: int) -> list[list[Turn]]:
    """Consecutive runs of at most ``size`` turns, never crossing a session boundary."""
    out: list[list[Turn]] = []
    for t in turns:
        if out and len(out[-1]) < size and out[-1][-1].session == t.session:
            out[-1].append(t)
        else:
            out.append([t])
    return out


# ------------------------------------------------------------------------------------- schema
class ExtractedFact(BaseModel):
    """One atomic fact as the model writes it."""

    model_config = ConfigDict(extra="ignore")
    text: str = Field(min_length=3, max_length=500)
    turns: list[int] = Field(default_factory=list, max_length=50)
    """Numbers of the turns (as shown in the prompt, from 1) the fact comes from."""
    when: str | None = None
    """ISO date the fact refers to, if the conversation gives one."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"text": value}
        if isinstance(value, dict):
            value = dict(value)
            for alias in ("fact", "content", "memory"):
                if "text" not in value and isinstance(value.get(alias), str):
                    value["text"] = value.pop(alias)
            for alias in ("turn", "source", "sources"):
                if "turns" not in value and alias in value:
                    value["turns"] = value.pop(alias)
            if isinstance(value.get("turns"), (int, str)):
                value["turns"] = [value["turns"]]
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        v = " ".join(v.split())
        check_encodable(v, "fact")
        if len(v) < 3:
            raise ValueError("a fact needs at least 3 characters")
        return v

    @field_validator("turns")
    @classmethod
    def _turns(cls, v: list[int], info: ValidationInfo) -> list[int]:
        n = (info.context or {}).get("turns")
        if n is not None:
            bad = [t for t in v if not 1 <= t <= n]
            if bad:
                raise ValueError(f"turn numbers must be within 1..{n}, got {bad}")
        return sorted(set(v))

    @field_validator("when")
    @classmethod
    def _when(cls, v: str | None) -> str | None:
        if v is None or not str(v).strip():
            return None
        try:
            return parse_time(str(v).strip(), "when").isoformat()  # type: ignore[union-attr]
        except InvalidInput:
            return None  # a vague date ("last summer") is no error; the turn's time is used instead


class Extraction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    facts: list[ExtractedFact] = Field(max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"facts": value}
        if isinstance(value, dict) and "facts" not in value:
            for alias in ("memories", "items", "results"):
                if isinstance(value.get(alias), list):
                    return {"facts": value[alias]}
            if "text" in value or "fact" in value:
                return {"facts": [value]}
        return value


SYSTEM_PROMPT = (
    "You read a conversation and write down the facts worth remembering about the people in it: who "
    "they are, what they did, own, like, plan, and where they live or work, with dates when given. "
    "Write each fact as one short sentence that names the person (no pronouns). Skip greetings and "
    "small talk. Reply with JSON only, shaped like "
    '{"facts": [{"text": "<fact>", "turns": [<numbers of the turns it comes from>]}]}; '
    'if there is nothing to remember, reply {"facts": []}.'
)
EXAMPLE = '{"facts": [{"text": "Bob adopted a puppy named Rex", "turns": [1]}]}'
_SHOT_USER = "[1] Bob: I just adopted a puppy, his name is Rex!\n[2] Carol: Cute! I moved to Madrid in May."
_SHOT_REPLY = ('{"facts": [{"text": "Bob adopted a puppy named Rex", "turns": [1]}, '
               '{"text": "Carol moved to Madrid in May", "turns": [2]}]}')


def extraction_prompt(window: list[Turn]) -> list[dict[str, str]]:
    when = next((t.when for t in window if t.when is not None), None)
    head = f"Conversation on {when.date().isoformat()}:\n" if when else ""
    body = "\n".join(f"[{i}] {t.line}" for i, t in enumerate(window, 1))
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _SHOT_USER}, {"role": "assistant", "content": _SHOT_REPLY},
            {"role": "user", "content": head + body}]


class FactExtractor:
    """Extract atomic facts from a window of turns with any :class:`memos.llm.ChatBackend`."""

    def __init__(self, llm: ChatBackend, *, max_attempts: int = 3, max_tokens: int = 320) -> None:
        self.llm = llm
        self.max_attempts = max_attempts
        self.max_tokens = max_tokens

    def extract(self, window: list[Turn]) -> Structured[Extraction]:
        # a budget per turn: small models that fall into repeating themselves stop early (what they
        # wrote before is kept by the truncation repair)
        budget = min(self.max_tokens, 32 + 48 * len(window))
        return structured_chat(self.llm, extraction_prompt(window), Extraction, example=EXAMPLE,
                               max_attempts=self.max_attempts, max_tokens=budget,
                               context={"turns": len(window)})
