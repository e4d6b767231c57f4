"""Tolerant parsing of one MEM1 turn: an internal state, then one action.

The paper writes the internal state as ``<IS>...</IS>`` (Zhou et al. 2025); the authors' release
uses ``<think>...</think>`` for it. Actions are ``<search>query</search>`` and ``<answer>...</answer>``
(in a multi-objective task the answers are separated by ``;``). Small models drift, so the parser
accepts either state tag (and ``<internal_state>``, ``<state>``), any letter case, a missing closing
tag (the text runs to the next tag or the end), and ``<query>`` for ``<search>``. The first action
after the state wins; anything the model wrote after it (e.g. an invented ``<information>`` block) is
dropped from the turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STATE_TAGS = ("is", "internal_state", "think", "state")
ACTION_TAGS = {"search": "search", "query": "search", "answer": "answer"}

_OPEN = re.compile(r"<\s*(is|internal_state|think|state|search|query|answer)\s*>", re.I)


@dataclass(frozen=True)
class Action:
    type: str  # "search" | "answer"
    content: str


@dataclass(frozen=True)
class Turn:
    state: str | None
    action: Action | None
    text: str  # the turn as kept: up to the end of its first action


def _body(text: str, start: int, tag: str) -> tuple[str, int]:
    """Content of the element opened just before ``start`` and where it ends (tolerating no close)."""
    close = re.compile(rf"<\s*/\s*{tag}\s*>", re.I)
    m = close.search(text, start)
    nxt = _OPEN.search(text, start)
    if m and (nxt is None or m.start() <= nxt.start()):
        return text[start:m.start()].strip(), m.end()
    end = nxt.start() if nxt else len(text)
    return text[start:end].strip(), end


def parse_turn(text: str) -> Turn:
    """The state and first action of a model's turn (see the module docstring)."""
    text = text or ""
    state: str | None = None
    pos = 0
    for m in _OPEN.finditer(text):
        if m.start() < pos:
            continue
        tag = m.group(1).lower()
        body, end = _body(text, m.end(), tag)
        if tag in STATE_TAGS:
            if state is None or not state:
                state = body
            pos = end
            continue
        kind = ACTION_TAGS[tag]
        if not body and kind == "search":
            pos = end
            continue
        return Turn(state, Action(kind, body), text[:end].strip())
    return Turn(state, None, text.strip())


__all__ = ["ACTION_TAGS", "STATE_TAGS", "Action", "Turn", "parse_turn"]
