"""Memory reading: conversation turns in, raw turns stored, atomic facts extracted and reconciled.

``cube.add_messages(messages, session=..., event_time=..., llm=...)`` runs :func:`ingest_messages`:

1. every turn is stored first, as it was said (``metadata.memory_type = "turn"``, the neighbouring
   turns of its session as context), in one commit: nothing is ever lost;
2. with an LLM, windows of turns go to :class:`FactExtractor`; a window whose output stays invalid after
   repair and retries is recorded (``IngestReport.failures`` and ``metadata.extraction = "failed"`` plus
   the error on a new version of each of its turns), never dropped silently;
3. near-duplicates within a window are merged, then the cube's reconciliation policy applies the facts
   (``metadata.memory_type = "fact"``, provenance: the source turns).

Without an LLM only step 1 runs: turns as memories, the path ``memos eval locomo`` measures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from memos.kernel.kernel import new_memory
from memos.llm import ChatBackend
from memos.models import Memory, parse_time
from memos.reading.dedup import TURN, DedupConfig, duplicate_groups, stack
from memos.reading.extract import FactExtractor, Turn, normalise_messages, windows
from memos.reading.reconcile import Candidate, ReconcileContext, reconcile_policy
from memos.telemetry import span

#: Turns per extraction call by default: small models lose track of longer windows.
DEFAULT_WINDOW = 6
DEFAULT_DEDUP = DedupConfig()


class IngestFailure(BaseModel):
    """A step the model could not do; what it was given stays stored (the raw turns)."""

    stage: str
    """``extract`` (no valid facts for a window) or ``reconcile`` (no valid decision for a fact)."""
    turns: list[str]
    """Ids of the raw turn memories concerned."""
    error: str
    attempts: int
    raw: str = ""
    """The model's last reply (truncated)."""
    fact: str | None = None
    fallback: str | None = None
    """What was done instead (``ADD``: the fact was added unreconciled)."""


class IngestReport(BaseModel):
    """What one ``add_messages`` call stored and changed (memory ids)."""

    cube: str
    policy: str
    llm: str | None = None
    turns: list[str] = Field(default_factory=list)
    extracted: int = 0
    """Facts the model extracted (before deduplication and reconciliation)."""
    facts_added: list[str] = Field(default_factory=list)
    facts_updated: list[str] = Field(default_factory=list)
    facts_deleted: list[str] = Field(default_factory=list)
    facts_invalidated: list[str] = Field(default_factory=list)
    duplicates: list[str] = Field(default_factory=list)
    """Existing facts a new fact repeated (each got a new version counting the mention)."""
    merged_in_batch: int = 0
    """Extracted facts merged into another fact of the same window."""
    failures: list[IngestFailure] = Field(default_factory=list)
    llm_calls: int = 0
    repaired: int = 0
    """Model replies that were accepted only after a repair (tolerant parsing or a retry)."""
    seconds: float = 0.0
    consolidation_task: str | None = None

    def fail(self, stage: str, turns: list[str], error: str, attempts: int, raw: list[str],
             fact: str | None = None, fallback: str | None = None) -> IngestFailure:
        failure = IngestFailure(stage=stage, turns=turns, error=error or "no valid output", attempts=attempts,
                                raw=(raw[-1] if raw else "")[:500], fact=fact, fallback=fallback)
        self.failures.append(failure)
        return failure

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


#: Turns on each side of a turn stored as its context; the radius ``memos eval locomo`` measured best (2).
CONTEXT_RADIUS = 2


def _context(turns: list[Turn], i: int, radius: int = CONTEXT_RADIUS) -> str:
    """The turns around turn ``i`` in its session (as ``memos eval locomo`` stores them)."""
    return "\n".join(turns[j].line for j in range(i - radius, i + radius + 1)
                     if j != i and 0 <= j < len(turns) and turns[j].session == turns[i].session)


def store_turns(kernel: Any, cube: str, turns: list[Turn], principal: str | None) -> list[Memory]:
    """Every turn as a plaintext memory, in one commit; sets ``turn.memory``."""
    items = []
    for i, t in enumerate(turns):
        meta = {**t.metadata, "memory_type": TURN, "speaker": t.speaker, "turn": i + 1}
        for key, value in (("role", t.role), ("session", t.session), ("turn_id", t.turn_id)):
            if value is not None:
                meta[key] = value
        items.append(new_memory(t.line, meta, None, t.when, None, _context(turns, i), source="conversation"))
    stored = kernel.add_many(cube, items, principal=principal, op="add")
    for t, m in zip(turns, stored):
        t.memory = m
    return stored


def ingest_messages(kernel: Any, cube: str, messages: Any, *, session: Any = None, event_time: Any = None,
                    llm: ChatBackend | None = None, principal: str | None = None, reconcile: str | None = None,
                    window: int = DEFAULT_WINDOW, dedup: DedupConfig | None = DEFAULT_DEDUP,
                    max_attempts: int = 3, progress: Callable[[int, int], None] | None = None) -> IngestReport:
    """Store ``messages`` as turns, then (with ``llm``) extract and reconcile facts; see the module doc."""
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 64:
        from memos.errors import InvalidInput

        raise InvalidInput("window must be an integer in 1..64", field="window")
    turns = normalise_messages(messages, session=session, event_time=event_time)
    policy_name = reconcile or kernel.get_cube(cube, principal=principal).policy.reconcile
    policy = reconcile_policy(policy_name)
    report = IngestReport(cube=cube, policy=policy_name, llm=getattr(llm, "name", None) if llm else None)
    t0 = time.perf_counter()
    with span("read", cube=cube, items=len(turns), llm=report.llm or "none", policy=policy_name):
        report.turns = [m.id for m in store_turns(kernel, cube, turns, principal)]
        if llm is not None:
            extractor = FactExtractor(llm, max_attempts=max_attempts)
            ctx = ReconcileContext(kernel, cube, principal, report, llm=llm, dedup=dedup, max_attempts=max_attempts)
            embedder = getattr(kernel, "embedder", None)
            done = 0
            for win in windows(turns, window):
                with span("read.extract", cube=cube, items=len(win)):
                    facts = _extract(extractor, win, report, kernel, cube, principal)
                if facts:
                    facts = _merge_in_batch(facts, embedder, dedup, report)
                    with span("read.reconcile", cube=cube, items=len(facts), policy=policy_name):
                        policy.apply(ctx, facts)
                done += len(win)
                if progress is not None:
                    progress(done, len(turns))
    report.seconds = round(time.perf_counter() - t0, 4)
    return report


def _extract(extractor: FactExtractor, win: list[Turn], report: IngestReport, kernel: Any, cube: str,
             principal: str | None) -> list[Candidate]:
    out = extractor.extract(win)
    report.llm_calls += out.attempts
    if out.value is None:
        ids = [t.memory.id for t in win]
        failure = report.fail("extract", ids, out.error, out.attempts, out.raw)
        for t in win:  # the failure is part of each turn's history, not only of this report
            meta = {**t.memory.metadata, "extraction": "failed", "extraction_error": failure.error[:500]}
            t.memory = kernel.update(cube, t.memory.id, metadata=meta, source="reading:extract-failed",
                                     principal=principal)
        return []
    report.repaired += int(out.repaired)
    report.extracted += len(out.value.facts)
    facts = []
    for f in out.value.facts:
        sources = [win[i - 1] for i in f.turns] or win  # no turn numbers: the whole window is the source
        times = [t.when for t in sources if t.when is not None]
        when = parse_time(f.when, "when") if f.when else (max(times) if times else None)
        facts.append(Candidate(f.text, [t.memory for t in sources], when, session=sources[0].session))
    return facts


def _merge_in_batch(facts: list[Candidate], embedder: Any, dedup: DedupConfig | None,
                    report: IngestReport) -> list[Candidate]:
    """Embed the facts (query embeddings: cached for the neighbour search) and merge near-duplicates."""
    if embedder is not None:
        batch = getattr(embedder, "embed_queries", None)  # optional capability: one forward for the window
        vecs = batch([f.text for f in facts]) if batch else [embedder.embed_query(f.text) for f in facts]
        for f, vec in zip(facts, vecs):
            f.vector = vec
    if dedup is None or len(facts) < 2:
        return facts
    groups = duplicate_groups([f.text for f in facts], stack([f.vector for f in facts]), dedup)
    drop: set[int] = set()
    for g in groups:
        keep = facts[g[0]]
        for j in g[1:]:
            keep.turns += [t for t in facts[j].turns if t.id not in {k.id for k in keep.turns}]
            keep.mentions += facts[j].mentions
            drop.add(j)
    report.merged_in_batch += len(drop)
    return [f for i, f in enumerate(facts) if i not in drop]
