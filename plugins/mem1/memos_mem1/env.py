"""MEM1 environments: what a ``<search>`` returns.

* :class:`CorpusEnvironment`: BM25 (memos' index) over the passages of a local folder of ``.txt`` /
  ``.md`` documents (first line: the title; passages: blank-line separated), the top ``top_k`` formatted
  as the authors' retrieval QA environment does, ``Doc i(Title: t) text``. The plugin ships a small
  made-up corpus of its own (:func:`default_corpus`).
* :class:`ScriptedEnvironment`: canned results for tests (by query substring, or in order), recording
  every query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from memos.errors import InvalidInput


class Environment(Protocol):
    def search(self, query: str) -> str: ...


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


def default_corpus() -> Path:
    """The folder of the corpus shipped with the plugin."""
    return Path(str(resources.files("memos_mem1").joinpath("corpus")))


class CorpusEnvironment:
    def __init__(self, folder: str | Path, *, top_k: int = 3, passage_chars: int = 500) -> None:
        """
        Args:
            folder: the documents (``*.txt``, ``*.md``, searched recursively).
            top_k: passages returned per search (3 in the authors' setup).
            passage_chars: longest passage text returned (keeps an observation bounded).
        """
        import numpy as np

        from memos.retrieval.bm25 import BM25Index

        folder = Path(folder)
        if not folder.is_dir():
            raise InvalidInput(f"corpus folder {folder} does not exist", field="corpus")
        if top_k < 1 or passage_chars < 20:
            raise InvalidInput("top_k must be >= 1 and passage_chars >= 20", field="top_k")
        self.top_k, self.passage_chars = top_k, passage_chars
        self.passages: list[Passage] = []
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".txt", ".md") and p.is_file()):
            lines = path.read_text(encoding="utf-8").strip().splitlines()
            if not lines:
                continue
            title = lines[0].lstrip("# ").strip() or path.stem
            for para in re.split(r"\n\s*\n", "\n".join(lines[1:])):
                if para.strip():
                    self.passages.append(Passage(title, " ".join(para.split())))
        if not self.passages:
            raise InvalidInput(f"corpus folder {folder} holds no .txt/.md text", field="corpus")
        self._index = BM25Index()
        for slot, p in enumerate(self.passages):
            self._index.add(slot, f"{p.title} {p.text}")
        self._mask = np.ones(len(self.passages), dtype=bool)

    def retrieve(self, query: str) -> list[Passage]:
        import numpy as np

        from memos.retrieval.bm25 import tokenize

        scores = self._index.scores(tokenize(query), self._mask)
        order = [int(i) for i in np.argsort(-scores, kind="stable")[: self.top_k] if scores[i] > 0]
        return [self.passages[i] for i in order]

    def search(self, query: str) -> str:
        hits = self.retrieve(query)
        if not hits:
            return "No document matches the query."
        return "\n".join(f"Doc {i}(Title: {p.title}) {p.text[: self.passage_chars]}" for i, p in enumerate(hits, 1))


class ScriptedEnvironment:
    """``results``: ``{query substring: result}`` (first match, case-insensitive) or a list used in order;
    ``default`` answers anything else."""

    def __init__(self, results: Mapping[str, str] | Sequence[str],
                 default: str = "No document matches the query.") -> None:
        self.results = results
        self.default = default
        self.queries: list[str] = []

    def search(self, query: str) -> str:
        self.queries.append(query)
        if isinstance(self.results, Mapping):
            for key, value in self.results.items():
                if key.lower() in query.lower():
                    return value
            return self.default
        n = len(self.queries) - 1
        return self.results[n] if n < len(self.results) else self.default


__all__ = ["CorpusEnvironment", "Environment", "Passage", "ScriptedEnvironment", "default_corpus"]
