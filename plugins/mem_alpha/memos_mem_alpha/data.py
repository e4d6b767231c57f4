"""Mem-alpha inputs: instances (chunks + questions) and the chunking of a plain text file.

An input file is either JSON -- ``{"chunks": [...], "questions": [{"question", "answer"}, ...]}``, a list
of such objects, or a bare list of chunk strings -- or plain text, split at blank lines into chunks of at
most ``chunk_tokens`` tokens. ``load_instances()`` without a path gives the small training set shipped
with the plugin (made-up people and events, so a model cannot answer from pre-training).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from memos.errors import InvalidInput
from memos_mem_alpha.memory import TokenCounter, approx_tokens


@dataclass(frozen=True)
class QA:
    question: str
    answer: str | tuple[str, ...]


@dataclass
class Instance:
    id: str
    chunks: list[str]
    questions: list[QA] = field(default_factory=list)


def split_chunks(text: str, chunk_tokens: int = 512, count_tokens: TokenCounter = approx_tokens) -> list[str]:
    """Paragraphs (blank-line separated) packed in order into chunks of at most ``chunk_tokens``; a
    paragraph longer than that is cut at sentence ends, then at words."""
    if chunk_tokens < 8:
        raise InvalidInput("chunk_tokens must be >= 8", field="chunk_tokens")
    pieces: list[str] = []
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if count_tokens(para) <= chunk_tokens:
            pieces.append(para)
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", para):
            words = sentence.split()
            while words:  # longest word prefix within the budget
                n = len(words)
                while n > 1 and count_tokens(" ".join(words[:n])) > chunk_tokens:
                    n = max(1, n * 3 // 4)
                pieces.append(" ".join(words[:n]))
                words = words[n:]
    chunks: list[str] = []
    for piece in pieces:
        if chunks and count_tokens(chunks[-1] + "\n\n" + piece) <= chunk_tokens:
            chunks[-1] += "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


def _instance(obj: Any, default_id: str) -> Instance:
    if isinstance(obj, list) and all(isinstance(c, str) for c in obj):
        obj = {"chunks": obj}
    if not isinstance(obj, dict) or not isinstance(obj.get("chunks"), list) or not obj["chunks"]:
        raise InvalidInput("an instance is {'chunks': [non-empty strings], 'questions': [...]}", field="input")
    chunks = [str(c) for c in obj["chunks"]]
    if not all(c.strip() for c in chunks):
        raise InvalidInput("a chunk is empty", field="chunks")
    qas = []
    for q in obj.get("questions") or []:
        if not isinstance(q, dict) or not str(q.get("question", "")).strip() or q.get("answer") in (None, ""):
            raise InvalidInput("a question is {'question': str, 'answer': str or [aliases]}", field="questions")
        ans = q["answer"]
        qas.append(QA(str(q["question"]), tuple(map(str, ans)) if isinstance(ans, list) else str(ans)))
    return Instance(str(obj.get("id") or default_id), chunks, qas)


def read_instances(path: str | Path, *, chunk_tokens: int = 512,
                   count_tokens: TokenCounter = approx_tokens) -> list[Instance]:
    """The instances in ``path`` (JSON, see the module docstring, or plain text: one instance)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}", field="input")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"{path} is not valid JSON: {exc}", field="input") from exc
        items = data if isinstance(data, list) and data and isinstance(data[0], dict) else [data]
        return [_instance(obj, f"{path.stem}-{i}") for i, obj in enumerate(items)]
    chunks = split_chunks(text, chunk_tokens, count_tokens)
    if not chunks:
        raise InvalidInput(f"{path} holds no text", field="input")
    return [Instance(path.stem, chunks)]


def load_instances(path: str | Path | None = None) -> list[Instance]:
    """The instances in ``path``, or the plugin's own small training set."""
    if path is not None:
        return read_instances(path)
    data = json.loads(resources.files("memos_mem_alpha").joinpath("data/train.json").read_text(encoding="utf-8"))
    return [_instance(obj, f"train-{i}") for i, obj in enumerate(data)]


__all__ = ["QA", "Instance", "load_instances", "read_instances", "split_chunks"]
