"""Incremental BM25 (Okapi, k1=1.2, b=0.75) over integer slots.

Documents are added and retired (never edited in place): an updated memory gets a new slot and its old
slot is retired. Retired slots are masked out at query time; the owner compacts by rebuilding. Postings
are compact ``array('i')`` buffers per term, scored with numpy ``bincount``.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# A short English stop list: words that carry no topic. Kept small on purpose: "where", "when", "who"
# are dropped (question words), but negations and pronoun-free content words stay.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would you
    your yours yourself yourselves s t don ll ve re d m o y also ever really much many get got like one
    thing things""".split()
)


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _stemmer().stemWord(word)


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens, stop words removed, Snowball-stemmed; possessive 's dropped."""
    out = []
    for tok in _TOKEN_RE.findall(text.lower()):
        if tok.endswith("'s"):
            tok = tok[:-2]
        tok = tok.replace("'", "")
        if tok and tok not in STOPWORDS:
            out.append(_stem(tok))
    return out


class BM25Index:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._postings: dict[str, tuple[array, array]] = {}
        self._doc_len = array("i")
        self._total_len = 0
        self._live = 0

    def __len__(self) -> int:
        return len(self._doc_len)

    def add(self, slot: int, text: str) -> None:
        """Index ``text`` under ``slot``; slots must be added in increasing order without gaps."""
        if slot != len(self._doc_len):
            raise ValueError(f"BM25 slots must be dense: expected {len(self._doc_len)}, got {slot}")
        tokens = tokenize(text)
        counts: dict[str, int] = {}
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
        for term, tf in counts.items():
            post = self._postings.get(term)
            if post is None:
                post = self._postings[term] = (array("i"), array("i"))
            post[0].append(slot)
            post[1].append(tf)
        self._doc_len.append(len(tokens))
        self._total_len += len(tokens)
        self._live += 1

    def retire(self, slot: int) -> None:
        """Count a slot out of the collection statistics (its postings stay until compaction)."""
        self._live -= 1
        self._total_len -= self._doc_len[slot]

    def scores(self, query_terms: Iterable[str], mask: np.ndarray) -> np.ndarray:
        """BM25 score per slot (0 where no query term occurs); ``mask`` is the live/allowed bool array."""
        n = len(self._doc_len)
        out = np.zeros(n, dtype=np.float32)
        if n == 0 or self._live <= 0:
            return out
        avgdl = max(self._total_len / self._live, 1.0)
        dl = np.frombuffer(self._doc_len, dtype=np.int32).astype(np.float32)
        norm = self.k1 * (1.0 - self.b + self.b * dl / avgdl)
        for term in set(query_terms):
            post = self._postings.get(term)
            if post is None:
                continue
            slots = np.frombuffer(post[0], dtype=np.int32)
            tf = np.frombuffer(post[1], dtype=np.int32).astype(np.float32)
            live = mask[slots]
            df = int(live.sum())
            if df == 0:
                continue
            idf = math.log(1.0 + (self._live - df + 0.5) / (df + 0.5))
            contrib = idf * tf * (self.k1 + 1.0) / (tf + norm[slots])
            out += np.bincount(slots, weights=contrib * live, minlength=n).astype(np.float32)
        return out
