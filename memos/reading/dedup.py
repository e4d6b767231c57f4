"""Near-duplicate facts: the same statement written twice ("Alice has a dog named Max" / "Alice has a dog
called Max") is merged, a changed statement ("Bob is 30" / "Bob is 31") is not.

Two facts are duplicates when their embeddings are close (cosine >= ``embedding``), their normalised
texts are similar (``difflib`` ratio >= ``text``), they state the same numbers and neither negates
what the other does not. Measured on pairs in tests/reading and on LoCoMo by benchmarks/ingest.py.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memos.models import SEARCHABLE_STATES, Memory, utcnow
from memos.retrieval.parts import unpack

_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NEGATIONS = frozenset({"not", "no", "never", "nothing", "nobody", "none", "cannot", "without"})
FACT = "fact"
SUMMARY = "summary"
TURN = "turn"
#: Most source turn ids a fact keeps in its metadata (provenance keeps every one).
MAX_SOURCE_TURNS = 64


@dataclass(frozen=True)
class DedupConfig:
    embedding: float = 0.93
    """Least cosine similarity of two duplicate facts (all-MiniLM-L6-v2 vectors)."""
    text: float = 0.6
    """Least ``difflib`` ratio of their normalised texts."""


def normalise(text: str) -> str:
    return " ".join(_WORD.findall(text.lower().replace("n't", " not")))


def text_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, normalise(a), normalise(b), autojunk=False).ratio()


def _negated(text: str) -> bool:
    return bool(_NEGATIONS & set(normalise(text).split()))


def is_duplicate(a: str, b: str, cosine: float | None, cfg: DedupConfig = DedupConfig()) -> bool:
    """``cosine`` None (no embedder): the texts alone must be near-identical (ratio >= 0.9)."""
    if sorted(_NUMBER.findall(a)) != sorted(_NUMBER.findall(b)) or _negated(a) != _negated(b):
        return False
    sim = text_similarity(a, b)
    if cosine is None:
        return sim >= max(cfg.text, 0.9)
    return cosine >= cfg.embedding and sim >= cfg.text


def duplicate_groups(texts: Sequence[str], vectors: np.ndarray | None,
                     cfg: DedupConfig = DedupConfig()) -> list[list[int]]:
    """Groups (of 2 or more indices, in input order) of near-duplicate texts; each item joins the
    group of the first earlier item it duplicates."""
    n = len(texts)
    group_of: dict[int, int] = {}
    groups: list[list[int]] = []
    for j in range(n):
        if vectors is not None:
            sims = vectors[:j] @ vectors[j] if j else np.zeros(0)
            earlier = [int(i) for i in np.flatnonzero(sims >= cfg.embedding)]
        else:
            sims, earlier = None, list(range(j))
        for i in earlier:
            cos = None if sims is None else float(sims[i])
            if is_duplicate(texts[i], texts[j], cos, cfg):
                g = group_of.get(i)
                if g is None:
                    g = group_of[i] = len(groups)
                    groups.append([i])
                groups[g].append(j)
                group_of[j] = g
                break
    return groups


def memory_type(m: Memory) -> str | None:
    return m.metadata.get("memory_type")


def live_facts(kernel: Any, cube: str, types: Sequence[str] | None = (FACT,)) -> list[tuple[Memory, np.ndarray | None]]:
    """Latest versions of the cube's live plaintext memories of ``types`` (None: any), with their stored
    vectors, oldest first. Reads storage directly: the caller checks access."""
    now = utcnow()
    rows = kernel.backend.scan(cube, with_vectors=True)
    dim = int(kernel.embedder.dim)
    out = [(m, None if vec is None else unpack(vec, dim)[0])
           for m, vec in rows
           if m.kind == "plaintext" and (types is None or memory_type(m) in types)
           and m.effective_state(now) in SEARCHABLE_STATES]
    out.sort(key=lambda mv: (mv[0].created_at, mv[0].id))
    return out


def stack(vectors: Sequence[np.ndarray | None]) -> np.ndarray | None:
    if not vectors or any(v is None for v in vectors):
        return None
    return np.vstack(vectors)  # type: ignore[arg-type]


def duplicate_rate(kernel: Any, cube: str, cfg: DedupConfig = DedupConfig()) -> dict[str, Any]:
    """How many live facts duplicate an earlier live fact: ``{"facts", "duplicates", "rate"}``."""
    facts = live_facts(kernel, cube)
    groups = duplicate_groups([m.text for m, _ in facts], stack([v for _, v in facts]), cfg)
    dups = sum(len(g) - 1 for g in groups)
    return {"facts": len(facts), "duplicates": dups, "rate": round(dups / len(facts), 4) if facts else 0.0}


def merged_metadata(keeper: dict[str, Any], others: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The keeper's metadata after absorbing ``others``: mentions summed, source turns united."""
    turns = list(keeper.get("source_turns", []))
    mentions = int(keeper.get("mentions", 1))
    for meta in others:
        mentions += int(meta.get("mentions", 1))
        turns += [t for t in meta.get("source_turns", []) if t not in turns]
    return {**keeper, "mentions": mentions, "source_turns": turns[-MAX_SOURCE_TURNS:]}
