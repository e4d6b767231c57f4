"""The Mem-alpha memory (Wang et al. 2025; the authors' memory.py), optionally kept in a MemCube.

Three components:

* **core**: one short paragraph always shown to the model; it is *replace-only*: there is no insert,
  ``update`` rewrites the whole paragraph (cut to ``core_max_tokens``, 512 in the paper) and ``delete``
  clears it.
* **semantic** and **episodic**: ordered lists of items, each ``{short id: content}`` (4 hex characters,
  as the authors' code); ``insert`` appends (an exact duplicate of an item of the same list is skipped),
  ``update`` / ``delete`` address an item by its id; ``search`` ranks a list by BM25 (memos' index) or
  by embedding cosine.

The state lives in RAM (rollouts need thousands of cheap writes). Opened on a cube
(:meth:`MemAlphaMemory.open`), every write goes through to the cube as well: each item is a plaintext
memory (``metadata={"mem_alpha": "semantic", "mid": "a3f0", "ns": ..., "seq": n}``), the core paragraph
one memory whose versions are its successive rewrites. So ``cube.history(id)`` replays an item and
``cube.rollback`` restores one; :meth:`open` rebuilds the state from the cube.

Errors (unknown type or id, empty content, a core insert) raise :class:`~memos.errors.InvalidInput`
and change nothing; the tool layer (:mod:`.tools`) turns them into failed tool calls.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from memos.errors import InvalidInput

LISTS = ("semantic", "episodic")
TYPES = ("core", *LISTS)
CORE_MAX_TOKENS = 512
TRUNCATED = " [truncated to the core memory's token limit]"
TokenCounter = Callable[[str], int]

_WORD = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Word-and-punctuation count: a model-free stand-in for a tokenizer's count."""
    return len(_WORD.findall(text))


def memory_type(name: Any) -> str:
    """``"semantic"`` for ``"semantic"``, ``"semantic_memory"`` or ``"Semantic Memory"``."""
    t = str(name or "").strip().lower().replace(" ", "_").removesuffix("_memory")
    if t not in TYPES:
        raise InvalidInput(f"memory_type must be one of core, semantic, episodic; got {name!r}",
                           field="memory_type")
    return t


@dataclass
class Item:
    id: str
    content: str
    memory_id: str | None = None  # the cube memory holding it, when mirrored
    seq: int = 0


class MemAlphaMemory:
    """Core paragraph + semantic and episodic item lists (see the module docstring)."""

    def __init__(self, *, cube: Any = None, namespace: str = "default", core_max_tokens: int = CORE_MAX_TOKENS,
                 count_tokens: TokenCounter | None = None, embedder: Any = None, seed: int | None = None) -> None:
        """
        Args:
            cube: a MemCube to write through to (None: RAM only).
            namespace: tells this memory's items apart from other memories in the same cube.
            core_max_tokens: longest core paragraph kept (the paper's 512).
            count_tokens: token counter for the core limit and :meth:`total_tokens` (default
                :func:`approx_tokens`; pass ``engine.count_tokens`` for the model's own count).
            embedder: a memos embedder for ``search(..., method="text-embedding")``.
            seed: seeds the short ids (reproducible rollouts); None draws them at random.
        """
        if core_max_tokens < 1:
            raise InvalidInput("core_max_tokens must be >= 1", field="core_max_tokens")
        self.cube = cube
        self.namespace = namespace
        self.core_max_tokens = core_max_tokens
        self.count_tokens: TokenCounter = count_tokens or approx_tokens
        self.embedder = embedder
        self.core = ""
        self.core_memory_id: str | None = None
        self.items: dict[str, list[Item]] = {t: [] for t in LISTS}
        self._rng = random.Random(seed)
        self._seq = 0

    # ------------------------------------------------------------------------------ open / copy
    @classmethod
    def open(cls, cube: Any, namespace: str = "default", **kwargs: Any) -> MemAlphaMemory:
        """The memory kept in ``cube`` under ``namespace`` (empty if the cube holds none yet)."""
        mem = cls(cube=cube, namespace=namespace, **kwargs)
        for m in _all_memories(cube):
            meta = m.metadata or {}
            if meta.get("ns") != namespace or meta.get("mem_alpha") not in TYPES:
                continue
            active = getattr(m.state, "value", m.state) == "activated"
            if meta["mem_alpha"] == "core":
                mem.core_memory_id = m.id
                mem.core = m.text if active else ""
            elif active:
                mem.items[meta["mem_alpha"]].append(Item(str(meta.get("mid")), m.text, m.id, int(meta.get("seq", 0))))
        for t in LISTS:
            mem.items[t].sort(key=lambda i: i.seq)
        mem._seq = max([i.seq for t in LISTS for i in mem.items[t]] + [0])
        return mem

    def snapshot(self) -> dict[str, Any]:
        """The state as the paper's JSON: ``{"core": str, "semantic": [{id: content}], "episodic": [...]}``."""
        return {"core": self.core, **{t: [{i.id: i.content} for i in self.items[t]] for t in LISTS}}

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any], **kwargs: Any) -> MemAlphaMemory:
        """A RAM-only memory holding ``snapshot`` (as :meth:`snapshot` writes it)."""
        mem = cls(**kwargs)
        mem.core = str(snapshot.get("core") or "")
        for t in LISTS:
            for entry in snapshot.get(t) or []:
                (mid, content), = dict(entry).items()
                mem._seq += 1
                mem.items[t].append(Item(str(mid), str(content), None, mem._seq))
        return mem

    # ------------------------------------------------------------------------------- operations
    def insert(self, memory_type_: str, content: str) -> Item | None:
        """Append ``content`` to a list; returns the new item, or None when the list already holds
        exactly this content (the insert is skipped). Core cannot be inserted (use :meth:`update`)."""
        t = memory_type(memory_type_)
        if t == "core":
            raise InvalidInput("core memory cannot be inserted; rewrite it with memory_update", field="memory_type")
        content = _content(content)
        if any(i.content == content for i in self.items[t]):
            return None
        self._seq += 1
        item = Item(self._new_id(), content, None, self._seq)
        if self.cube is not None:
            item.memory_id = self.cube.add(content, metadata={"mem_alpha": t, "mid": item.id, "ns": self.namespace,
                                                              "seq": item.seq}, tags=["mem-alpha"]).id
        self.items[t].append(item)
        return item

    def update(self, memory_type_: str, new_content: str, memory_id: str | None = None) -> str:
        """Core: replace the whole paragraph (cut to ``core_max_tokens``); a list: replace item
        ``memory_id``'s content. Returns the stored content."""
        t = memory_type(memory_type_)
        new_content = _content(new_content)
        if t == "core":
            self._set_core(self._fit_core(new_content))
            return self.core
        item = self._item(t, memory_id)
        if self.cube is not None and item.memory_id is not None:
            self.cube.update(item.memory_id, new_content)
        item.content = new_content
        return new_content

    def delete(self, memory_type_: str, memory_id: str | None = None) -> None:
        """Core: clear the paragraph; a list: remove item ``memory_id`` (archived in the cube)."""
        t = memory_type(memory_type_)
        if t == "core":
            self._set_core("")
            return
        item = self._item(t, memory_id)
        if self.cube is not None and item.memory_id is not None:
            self.cube.delete(item.memory_id)
        self.items[t].remove(item)

    def search(self, memory_type_: str, query: str, top_k: int = 20,
               method: str = "bm25") -> list[tuple[Item, float]]:
        """Items of a list ranked for ``query`` (best first, at most ``top_k``, score > 0).

        ``method``: ``"bm25"`` (Okapi over memos' tokenizer) or ``"text-embedding"`` (cosine of the
        memory's embedder). Core is never searched: it is always in the prompt.
        """
        t = memory_type(memory_type_)
        if t == "core":
            raise InvalidInput("core memory is always shown in full; search semantic or episodic",
                               field="memory_type")
        if method not in ("bm25", "text-embedding", "embedding"):
            raise InvalidInput(f"search_method must be bm25 or text-embedding, not {method!r}",
                               field="search_method")
        items = self.items[t]
        if not items or not str(query or "").strip() or top_k < 1:
            return []
        texts = [i.content for i in items]
        scores = _bm25_scores(texts, query) if method == "bm25" else self._cosine(texts, query)
        ranked = sorted((p for p in zip(items, scores, strict=True) if p[1] > 0), key=lambda p: -p[1])
        return ranked[:top_k]

    # ------------------------------------------------------------------------- views and counts
    def render(self, recent: int = 5) -> str:
        """The memory as the policy sees it: the core paragraph and the ``recent`` newest items of each
        list (the authors show 5 while memorising), each as ``[id] content``."""
        blocks = [f"<core_memory>\n{self.core or 'Empty.'}\n</core_memory>"]
        for t in LISTS:
            items = self.items[t]
            shown = items[-recent:] if recent > 0 else []
            body = "\n".join(f"[{i.id}] {i.content}" for i in shown) or "Empty."
            blocks.append(f"<{t}_memory> (the most recent {len(shown)} of {len(items)} items)\n{body}\n</{t}_memory>")
        return "\n\n".join(blocks)

    def total_tokens(self) -> int:
        """l_m of the compression reward: tokens of the core paragraph plus every item's content."""
        core = self.count_tokens(self.core) if self.core else 0
        return core + sum(self.count_tokens(i.content) for t in LISTS for i in self.items[t])

    def __len__(self) -> int:
        return sum(len(v) for v in self.items.values()) + (1 if self.core else 0)

    # -------------------------------------------------------------------------------- internals
    def _new_id(self) -> str:
        taken = {i.id for t in LISTS for i in self.items[t]}
        while True:
            mid = f"{self._rng.getrandbits(16):04x}"
            if mid not in taken:
                return mid

    def _item(self, t: str, memory_id: str | None) -> Item:
        if not memory_id:
            raise InvalidInput(f"memory_id is required to change a {t} item", field="memory_id")
        for item in self.items[t]:
            if item.id == str(memory_id).strip().strip("[]"):
                return item
        raise InvalidInput(f"no {t} item with id {memory_id!r}", field="memory_id")

    def _fit_core(self, text: str) -> str:
        if self.count_tokens(text) <= self.core_max_tokens:
            return text
        budget = self.core_max_tokens - self.count_tokens(TRUNCATED)
        words = text.split()
        lo, hi = 0, len(words)  # longest word prefix within the budget
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count_tokens(" ".join(words[:mid])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return " ".join(words[:lo]) + TRUNCATED

    def _set_core(self, text: str) -> None:
        if self.cube is not None:
            if not text:
                if self.core_memory_id is not None and self.core:
                    self.cube.delete(self.core_memory_id)
            elif self.core_memory_id is None:
                self.core_memory_id = self.cube.add(text, metadata={"mem_alpha": "core", "ns": self.namespace},
                                                    tags=["mem-alpha"]).id
            elif text != self.core:
                self.cube.update(self.core_memory_id, text)  # also revives a cleared (archived) core
        self.core = text

    def _cosine(self, texts: list[str], query: str) -> list[float]:
        if self.embedder is None:
            raise InvalidInput("text-embedding search needs an embedder; use bm25", field="search_method")
        import numpy as np

        vecs = self.embedder.embed(texts)
        q = self.embedder.embed_query(query)
        return [float(s) for s in np.asarray(vecs) @ np.asarray(q)]


def _content(content: Any) -> str:
    if not isinstance(content, str) or not content.strip():
        raise InvalidInput("memory content must be a non-empty string", field="content")
    return content.strip()


def _bm25_scores(texts: list[str], query: str) -> list[float]:
    import numpy as np

    from memos.retrieval.bm25 import BM25Index, tokenize

    index = BM25Index()
    for slot, text in enumerate(texts):
        index.add(slot, text)
    return [float(s) for s in index.scores(tokenize(query), np.ones(len(texts), dtype=bool))]


def _all_memories(cube: Any, page: int = 500) -> Iterator[Any]:
    offset = 0
    while True:
        batch = cube.list(offset=offset, limit=page, include_archived=True)
        yield from batch
        if len(batch) < page:
            return
        offset += page


__all__ = ["CORE_MAX_TOKENS", "LISTS", "TYPES", "Item", "MemAlphaMemory", "approx_tokens", "memory_type"]
