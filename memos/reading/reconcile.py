"""Memory reading, step 2: how newly extracted facts meet the facts a cube already holds.

A reconciliation policy is a plugin class (``memos_register_policies``, ``kind = "reconcile"``) keyed by
``name``; a cube picks one with ``policy={"reconcile": NAME}``. Three are built in:

* ``accumulate``: every new fact is added (near-duplicates are merged into the fact they repeat).
* ``update`` (Mem0-style): for each new fact the model sees its nearest live facts and answers ADD,
  UPDATE (the old fact gets a new version with the new text: one id, full history), DELETE (the old
  fact is archived, the new one added) or NOOP (already known).
* ``invalidate`` (Graphiti-style, time-aware): the new fact is added; a fact it contradicts is not
  rewritten but end-dated: a new version with ``metadata.valid_to`` (when it stopped being true, the new
  fact's event time), ``metadata.invalidated_by`` and ``expires_at`` (now), so it leaves default search
  and stays in history (``include_archived=True``, time travel). A new fact older than the one it
  contradicts is itself stored end-dated.

Every change goes through a kernel operation (one commit, one new version) whose provenance lists the
previous version and the source turns. :class:`ReconcileContext` carries those operations, so a
third-party policy only decides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from memos.errors import InvalidInput, PluginError
from memos.kernel.kernel import NewMemory
from memos.models import DerivedFrom, Memory, State, utcnow
from memos.reading.dedup import FACT, MAX_SOURCE_TURNS, DedupConfig, is_duplicate, merged_metadata
from memos.reading.structured import structured_chat
from memos.retrieval.parts import unpack

if TYPE_CHECKING:
    from memos.llm import ChatBackend
    from memos.reading.ingest import IngestReport


@dataclass
class Candidate:
    """A fact extracted from turns, not yet reconciled."""

    text: str
    turns: list[Memory]
    event_time: datetime | None
    session: Any = None
    vector: np.ndarray | None = None
    mentions: int = 1

    def sources(self) -> list[DerivedFrom]:
        return [DerivedFrom(id=t.id, version=t.version) for t in self.turns]

    def turn_ids(self) -> list[str]:
        return [t.id for t in self.turns]


# ------------------------------------------------------------------------------------ decisions
class Decision(BaseModel):
    """What the model answers for one new fact against numbered existing facts."""

    model_config = ConfigDict(extra="ignore")
    op: Literal["ADD", "UPDATE", "DELETE", "NOOP"]
    id: int | None = None
    """Number of the existing fact the op applies to (UPDATE, DELETE, NOOP)."""
    text: str | None = None
    """UPDATE: the fact's new text (default: the new fact)."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = dict(value)
            for alias in ("event", "action", "operation", "decision"):
                if "op" not in value and alias in value:
                    value["op"] = value.pop(alias)
            if isinstance(value.get("op"), str):
                value["op"] = value["op"].strip().upper()
            if value.get("id") in ("", "null", "none", "None"):
                value["id"] = None
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        v = " ".join(v.split()) if isinstance(v, str) else None
        return v if v and len(v) <= 2000 else None

    @model_validator(mode="after")
    def _target(self, info: ValidationInfo) -> Decision:
        n = (info.context or {}).get("neighbours", 0)
        if self.op in ("UPDATE", "DELETE") and self.id is None:
            raise ValueError(f"{self.op} needs the id of an existing fact")
        if self.id is not None and not 1 <= self.id <= n:
            raise ValueError(f"id must be one of the existing facts 1..{n}")
        return self


DECISION_PROMPT = (
    "You keep a memory of facts. Compare a NEW fact with the EXISTING facts and answer with one "
    "operation: ADD if the new fact is new information; UPDATE with the id of the existing fact it "
    "changes or makes more precise, and the updated text; DELETE with the id of an existing fact it "
    "shows is no longer true; NOOP with the id of an existing fact that already says it. Reply with "
    'JSON only, shaped like {"op": "UPDATE", "id": 1, "text": "<updated fact>"}.'
)
DECISION_EXAMPLE = '{"op": "ADD"} or {"op": "UPDATE", "id": 2, "text": "<updated fact>"}'


def decision_prompt(fact: Candidate, neighbours: list[Memory]) -> list[dict[str, str]]:
    def when(t: datetime | None) -> str:
        return f" (as of {t.date().isoformat()})" if t else ""

    existing = "\n".join(f"[{i}] {m.text}{when(m.event_time)}" for i, m in enumerate(neighbours, 1))
    return [{"role": "system", "content": DECISION_PROMPT},
            {"role": "user", "content": f"EXISTING:\n{existing}\nNEW: {fact.text}{when(fact.event_time)}"}]


# -------------------------------------------------------------------------------------- context
@dataclass
class ReconcileContext:
    """The kernel operations a policy may use, on one cube for one ingest call, and its report."""

    kernel: Any
    cube: str
    principal: str | None
    report: IngestReport
    llm: ChatBackend | None = None
    dedup: DedupConfig | None = field(default_factory=DedupConfig)
    neighbours_k: int = 5
    max_attempts: int = 3
    source: str = "reading"

    # ------------------------------------------------------------------------------- lookups
    def neighbours(self, fact: Candidate) -> list[tuple[Memory, float | None]]:
        """The nearest live facts of the cube, with their cosine similarity to ``fact`` when known."""
        hits = self.kernel.search(self.cube, fact.text, top_k=self.neighbours_k, filters={"memory_type": FACT},
                                  principal=self.principal)
        if not hits:
            return []
        vectors: dict[str, np.ndarray] = {}
        if fact.vector is not None:
            rows = self.kernel.backend.scan(self.cube, ids=tuple(h.memory.id for h in hits), with_vectors=True)
            dim = int(self.kernel.embedder.dim)
            vectors = {m.id: unpack(v, dim)[0] for m, v in rows if v is not None}
        out = []
        for h in hits:
            vec = vectors.get(h.memory.id)
            out.append((h.memory, None if vec is None else float(vec @ fact.vector)))
        return out

    def duplicate_of(self, fact: Candidate, neighbours: list[tuple[Memory, float | None]]) -> Memory | None:
        if self.dedup is None:
            return None
        for m, cos in neighbours:
            if is_duplicate(m.text, fact.text, cos, self.dedup):
                return m
        return None

    def decide(self, fact: Candidate, neighbours: list[Memory]) -> Decision | None:
        """The model's decision for ``fact``; None (and a recorded failure) if it gave no valid one."""
        if self.llm is None:
            raise InvalidInput("this reconciliation policy needs an LLM", field="llm")
        out = structured_chat(self.llm, decision_prompt(fact, neighbours), Decision, example=DECISION_EXAMPLE,
                              max_attempts=self.max_attempts, max_tokens=128,
                              context={"neighbours": len(neighbours)})
        self.report.llm_calls += out.attempts
        if out.value is None:
            self.report.fail("reconcile", fact.turn_ids(), out.error, out.attempts, out.raw, fact=fact.text,
                             fallback="ADD")
        return out.value

    # ---------------------------------------------------------------------------- operations
    def _fact_metadata(self, fact: Candidate, **extra: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {"memory_type": FACT, "source_turns": fact.turn_ids(), "mentions": fact.mentions}
        if fact.session is not None:
            meta["session"] = fact.session
        if fact.event_time is not None:
            meta["valid_from"] = fact.event_time.isoformat()
        return {**meta, **extra}

    def add(self, facts: list[Candidate], extra: list[dict[str, Any]] | None = None) -> list[Memory]:
        """Add ``facts`` as new memories in one commit (provenance: their source turns)."""
        if not facts:
            return []
        extra = extra or [{} for _ in facts]
        # a fact stored already ended (valid_to) is expired from now on: kept, not searched by default
        items = [NewMemory(f.text, self._fact_metadata(f, **more), [], f.event_time,
                           utcnow() if more.get("valid_to") else None,
                           derived_from=tuple(f.sources()), source=f"{self.source}:extract")
                 for f, more in zip(facts, extra)]
        out = self.kernel.add_many(self.cube, items, principal=self.principal, op="add")
        self.report.facts_added += [m.id for m in out]
        return out

    def mention(self, existing: Memory, fact: Candidate) -> Memory:
        """``fact`` repeats ``existing``: a new version counting the mention and its source turns."""
        meta = merged_metadata(existing.metadata, [{"mentions": fact.mentions, "source_turns": fact.turn_ids()}])
        out = self.kernel.update(self.cube, existing.id, metadata=meta, derived_from=fact.sources(),
                                 source=f"{self.source}:duplicate", principal=self.principal)
        self.report.duplicates.append(out.id)
        return out

    def supersede(self, existing: Memory, fact: Candidate, text: str | None = None) -> Memory:
        """UPDATE: a new version of ``existing`` saying ``text`` (default the new fact)."""
        turns = list(existing.metadata.get("source_turns", []))
        meta = {**existing.metadata, "previous_text": existing.text,
                "source_turns": (turns + [t for t in fact.turn_ids() if t not in turns])[-MAX_SOURCE_TURNS:]}
        if fact.event_time is not None:
            meta["valid_from"] = fact.event_time.isoformat()
        if fact.session is not None:
            meta["session"] = fact.session
        out = self.kernel.update(self.cube, existing.id, text=text or fact.text, metadata=meta,
                                 event_time=fact.event_time or existing.event_time, derived_from=fact.sources(),
                                 source=f"{self.source}:update", principal=self.principal)
        self.report.facts_updated.append(out.id)
        return out

    def retire(self, existing: Memory, fact: Candidate) -> Memory:
        """DELETE: archive ``existing`` (a new version; provenance: the turns that contradicted it)."""
        out = self.kernel.set_state(self.cube, [existing.id], State.archived, op="delete",
                                    principal=self.principal, derived_from=fact.sources(),
                                    source=f"{self.source}:delete",
                                    detail={"reason": "contradicted", "by": fact.text[:300]})[0]
        self.report.facts_deleted.append(out.id)
        return out

    def invalidate(self, existing: Memory, by: Memory, at: datetime | None) -> Memory:
        """End-date ``existing``: valid until ``at`` (default now), replaced by ``by``; kept in history."""
        ended = at or utcnow()
        meta = {**existing.metadata, "valid_to": ended.isoformat(), "invalidated_by": by.id}
        out = self.kernel.update(self.cube, existing.id, metadata=meta, expires_at=utcnow(),
                                 derived_from=[DerivedFrom(id=by.id, version=by.version),
                                               *by.provenance.derived_from],
                                 source=f"{self.source}:invalidate", principal=self.principal)
        self.report.facts_invalidated.append(out.id)
        return out


# ------------------------------------------------------------------------------------- policies
class ReconcilePolicy(ABC):
    """Decides, for each new fact, which :class:`ReconcileContext` operations to run."""

    name: ClassVar[str]
    kind: ClassVar[str] = "reconcile"

    @abstractmethod
    def apply(self, ctx: ReconcileContext, facts: list[Candidate]) -> None: ...


class AccumulatePolicy(ReconcilePolicy):
    name: ClassVar[str] = "accumulate"

    def apply(self, ctx: ReconcileContext, facts: list[Candidate]) -> None:
        fresh = []
        for fact in facts:
            dup = ctx.duplicate_of(fact, ctx.neighbours(fact)) if ctx.dedup is not None else None
            if dup is not None:
                ctx.mention(dup, fact)
            else:
                fresh.append(fact)
        ctx.add(fresh)


class _DecidingPolicy(ReconcilePolicy):
    """Asks the model about each new fact that has live neighbours and is no duplicate."""

    def apply(self, ctx: ReconcileContext, facts: list[Candidate]) -> None:
        for fact in facts:  # one at a time: a fact sees the facts added just before it
            near = ctx.neighbours(fact)
            dup = ctx.duplicate_of(fact, near)
            if dup is not None:
                ctx.mention(dup, fact)
                continue
            if not near:
                ctx.add([fact])
                continue
            neighbours = [m for m, _ in near]
            decision = ctx.decide(fact, neighbours)
            if decision is None or decision.op == "ADD":
                ctx.add([fact])
            elif decision.op == "NOOP":
                if decision.id is not None:
                    ctx.mention(neighbours[decision.id - 1], fact)
            else:
                self.change(ctx, fact, neighbours[decision.id - 1], decision)  # type: ignore[operator]

    @abstractmethod
    def change(self, ctx: ReconcileContext, fact: Candidate, target: Memory, decision: Decision) -> None: ...


class UpdatePolicy(_DecidingPolicy):
    name: ClassVar[str] = "update"

    def change(self, ctx: ReconcileContext, fact: Candidate, target: Memory, decision: Decision) -> None:
        if decision.op == "UPDATE":
            ctx.supersede(target, fact, decision.text)
        else:
            ctx.retire(target, fact)
            ctx.add([fact])


class InvalidatePolicy(_DecidingPolicy):
    name: ClassVar[str] = "invalidate"

    def change(self, ctx: ReconcileContext, fact: Candidate, target: Memory, decision: Decision) -> None:
        if fact.event_time and target.event_time and fact.event_time < target.event_time:
            # the new fact is the older truth (turns ingested out of order): store it already ended
            ctx.add([fact], extra=[{"valid_to": target.event_time.isoformat(), "invalidated_by": target.id}])
            ctx.report.facts_invalidated.append(ctx.report.facts_added[-1])
            return
        new = ctx.add([fact])[0]
        ctx.invalidate(target, new, fact.event_time)


RECONCILE_POLICIES: tuple[type[ReconcilePolicy], ...] = (AccumulatePolicy, UpdatePolicy, InvalidatePolicy)


def reconcile_policy(name: str) -> ReconcilePolicy:
    """The registered reconciliation policy ``name`` (``InvalidInput`` if there is none)."""
    from memos.plugins import registry

    found = {n: c for n, c in registry("policies").items() if getattr(c, "kind", None) == "reconcile"}
    if name not in found:
        raise InvalidInput(f"no reconciliation policy {name!r} (installed: {', '.join(sorted(found))})",
                           field="reconcile")
    try:
        return found[name]()
    except TypeError as exc:
        raise PluginError(f"reconciliation policy {name!r} cannot be built: {exc}", plugin=name) from exc
