"""Multi-vector memories: a memory's *parts* and how its vectors are stored.

A memory of several sentences is embedded as a whole (its *main* vector, summed with the context view when
it has a context) and sentence by sentence (its *parts*). Search scores a memory by its main vector and
by its best part (MaxSim over sentences), so a turn whose one sentence answers the query is not drowned by
the rest of the turn. On LoCoMo this lifts multi-hop recall@10 from 0.45 to 0.51: the evidence for "what
activities does Melanie partake in?" is one sentence in each of several long turns.

A leading speaker label (``"Melanie: ..."``, the way conversation turns are stored) is carried into every
part: a sentence without its speaker loses who did what (without the label the gain disappears).

Stored form: one float32 blob per version, row 0 the main vector, rows 1.. the parts. A blob of exactly
one row (every memory written before parts existed, and every single-sentence memory without a context)
has no parts.
"""

from __future__ import annotations

import re

import numpy as np

#: At most this many parts per memory; longer texts are split into this many runs of sentences.
MAX_PARTS = 16
#: Fragments shorter than this many words ("Wow!") are joined to the next sentence.
MIN_WORDS = 2

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_LABEL = re.compile(r"^([^\n:.!?]{1,40}):\s+(?=\S)")


def split_label(text: str) -> tuple[str, str]:
    """``("Melanie: ", rest)`` for a text opening with a short speaker label (at most 4 words), else ``("", text)``."""
    m = _LABEL.match(text)
    if m and len(m.group(1).split()) <= 4:
        return m.group(0), text[m.end():]
    return "", text


def split_parts(text: str) -> list[str]:
    """The sentences of ``text`` (each with the text's speaker label), or ``[]`` if it is one sentence."""
    label, body = split_label(text)
    sentences: list[str] = []
    pending = ""
    for piece in _SENTENCE_END.split(body):
        piece = piece.strip()
        if not piece:
            continue
        pending = f"{pending} {piece}" if pending else piece
        if len(pending.split()) >= MIN_WORDS:
            sentences.append(pending)
            pending = ""
    if pending:
        if sentences:
            sentences[-1] = f"{sentences[-1]} {pending}"
        else:
            sentences.append(pending)
    if len(sentences) < 2:
        return []
    if len(sentences) > MAX_PARTS:
        bounds = np.linspace(0, len(sentences), MAX_PARTS + 1).round().astype(int)
        sentences = [" ".join(sentences[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    return [label + s for s in sentences]


def pack(main: np.ndarray, parts: np.ndarray | None = None) -> bytes:
    """The stored blob: the main vector, then the part vectors."""
    main = np.asarray(main, dtype=np.float32).reshape(1, -1)
    if parts is None or len(parts) == 0:
        return main.tobytes()
    return np.concatenate([main, np.asarray(parts, dtype=np.float32).reshape(-1, main.shape[1])]).tobytes()


def unpack(raw: bytes | np.ndarray | None, dim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(main vector, parts or None)`` of a stored blob; a missing blob is a zero vector without parts."""
    if raw is None:
        return np.zeros(dim, dtype=np.float32), None
    arr = raw.astype(np.float32, copy=False).reshape(-1) if isinstance(raw, np.ndarray) \
        else np.frombuffer(raw, dtype=np.float32)
    if arr.size % dim or arr.size == 0:
        raise ValueError(f"a stored vector of {arr.size} floats does not hold rows of {dim}")
    rows = arr.reshape(-1, dim)
    return rows[0], (rows[1:] if len(rows) > 1 else None)
