"""Concept memory over a MemCube: one plaintext memory per concept (or lesson).

A memory's text is the entry as models see it (so search finds it by its words); its metadata holds the
structured entry, so it round-trips::

    {"arcmemo": "ps" | "oe", "key": <normalised name>, "entry": {...fields...}, "problems": [ids]}

Writing an entry whose key is already stored merges the two and writes the result as a new version of
the stored memory (``cube.history`` shows every revision; the kernel's provenance links each version to
the previous one); ``problems`` in the metadata lists the problems the entry was abstracted from. The
memory does not know about ARC: any problem id and any text work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from memos.errors import InvalidInput
from memos.models import check_metadata, check_text
from memos_arcmemo.concepts import Entry, entry_type, normalise, with_problems

PAGE = 500


@dataclass(frozen=True)
class StoredEntry:
    """An entry and the memory holding it."""

    entry: Entry
    memory_id: str
    version: int

    def public(self) -> dict[str, Any]:
        return {"id": self.memory_id, "version": self.version, **self.entry.to_obj()}


@dataclass(frozen=True)
class WriteOutcome:
    added: tuple[StoredEntry, ...] = ()
    merged: tuple[StoredEntry, ...] = ()
    unchanged: tuple[StoredEntry, ...] = ()

    def public(self) -> dict[str, Any]:
        return {"added": [s.entry.name for s in self.added], "merged": [s.entry.name for s in self.merged],
                "unchanged": [s.entry.name for s in self.unchanged]}


class ConceptMemory:
    """The ArcMemo memory of one format (``"ps"`` concepts or ``"oe"`` lessons) in ``cube``."""

    def __init__(self, cube: Any, format: str = "ps") -> None:
        self.type = entry_type(format)
        self.format = format
        self.cube = cube

    # ---------------------------------------------------------------------------------- reads
    def _stored(self, memory: Any) -> StoredEntry | None:
        meta = memory.metadata or {}
        if meta.get("arcmemo") != self.format or not isinstance(meta.get("entry"), dict):
            return None
        return StoredEntry(self.type.from_obj(meta["entry"]), memory.id, memory.version)

    def entries(self) -> list[StoredEntry]:
        """Every live entry of this format, oldest first."""
        out: list[StoredEntry] = []
        offset = 0
        while True:
            page = self.cube.list(offset=offset, limit=PAGE)
            out += [s for s in (self._stored(m) for m in page) if s is not None]
            if len(page) < PAGE:
                return out
            offset += PAGE

    def __len__(self) -> int:
        return len(self.entries())

    def find(self, name: str) -> StoredEntry | None:
        """The entry stored under a concept name (or a lesson's situation), compared normalised."""
        key = normalise(name)
        return next((s for s in self.entries() if s.entry.key == key), None)

    def render(self, entries: Iterable[StoredEntry] | None = None) -> str:
        """The entries as one text block for a prompt (``(memory is empty)`` when there are none)."""
        items = list(self.entries() if entries is None else entries)
        return "\n".join(s.entry.render() for s in items) if items else "(memory is empty)"

    def search(self, description: str, top_k: int = 5) -> list[StoredEntry]:
        """The ``top_k`` entries whose text best matches a written problem description (hybrid search)."""
        if not isinstance(description, str) or not description.strip():
            raise InvalidInput("the problem description is empty", field="description")
        if not isinstance(top_k, int) or top_k < 1:
            raise InvalidInput(f"top_k must be a positive integer, got {top_k!r}", field="top_k")
        hits = self.cube.search(description, top_k=top_k, filters={"arcmemo": self.format})
        return [s for s in (self._stored(h.memory) for h in hits) if s is not None]

    # --------------------------------------------------------------------------------- writes
    def write(self, entries: Sequence[Entry], problem_id: str | None = None) -> WriteOutcome:
        """Add new entries, merge those whose key is stored (a new version each). ``problem_id`` joins the
        provenance of every entry written."""
        if any(not isinstance(e, self.type) for e in entries):
            raise InvalidInput(f"a {self.format} memory stores {self.type.__name__} entries", field="entries")
        pending: dict[str, Entry] = {}
        for e in entries:  # the same concept twice in one write: one entry
            if problem_id:
                e = with_problems(e, [problem_id])
            pending[e.key] = pending[e.key].merge(e) if e.key in pending else e  # type: ignore[arg-type]
        stored = {s.entry.key: s for s in self.entries()}
        added: list[Entry] = []
        updates: list[tuple[StoredEntry, Entry]] = []
        unchanged: list[StoredEntry] = []
        for key, e in pending.items():
            old = stored.get(key)
            if old is None:
                added.append(e)
                continue
            new = old.entry.merge(e)  # type: ignore[arg-type]
            if new == old.entry:
                unchanged.append(old)
            else:
                updates.append((old, new))
        for e in [*added, *(new for _, new in updates)]:  # all valid before anything is written
            check_text(e.render())
            check_metadata(self._metadata(e))
        merged = []
        for old, new in updates:
            m = self.cube.update(old.memory_id, new.render(), metadata=self._metadata(new))
            merged.append(StoredEntry(new, m.id, m.version))
        created = self.cube.add_many([{"text": e.render(), "metadata": self._metadata(e)} for e in added]
                                     ) if added else []
        return WriteOutcome(tuple(StoredEntry(e, m.id, m.version) for e, m in zip(added, created)),
                            tuple(merged), tuple(unchanged))

    def _metadata(self, e: Entry) -> dict[str, Any]:
        return {"arcmemo": self.format, "key": e.key, "entry": e.to_obj(), "problems": list(e.problems)}
