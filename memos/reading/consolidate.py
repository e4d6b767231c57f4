"""Sleep-time consolidation: background upkeep of a cube's facts, run as the ``consolidate`` task.

``mos.submit("consolidate", {"cube": ...})`` queues it (embedded: the in-process worker thread;
cluster: the Redis Streams queue, any kernel worker runs it); ``cube.consolidate()`` runs it now. Steps,
each a kernel commit with provenance:

1. **expire**: memories past ``expires_at`` (TTL policy, invalidated facts) get their ``expired`` version;
2. **deduplicate**: near-duplicate live facts merge into the oldest (a new version counting every
   mention and source turn; the others move to ``merged`` with ``detail.into``);
3. **summarise**: groups of related facts (cosine >= ``related`` to a seed fact, ``min_group`` or more)
   become one summary memory (``memory_type = "summary"``, ``derived_from`` = every source fact and
   version); the sources move to ``merged`` (kept in history, not searched). With an LLM the summary is
   written by the model (validated, retried; a failure is recorded and the group left alone), without
   one it is the facts joined;
4. **promote** (``promote_top > 0``): the hottest live memories (search hits by reciprocal rank, see
   :mod:`memos.reading.access`, plus repeated mentions) become one activation memory, a KV prefix built
   by the activation-memory API; the previous hot prefix is archived.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from memos.kernel import acl
from memos.kernel.kernel import new_memory
from memos.llm import ChatBackend
from memos.models import DerivedFrom, Memory, State
from memos.reading.access import access_counter
from memos.reading.dedup import (
    MAX_SOURCE_TURNS,
    SUMMARY,
    DedupConfig,
    duplicate_groups,
    live_facts,
    merged_metadata,
    stack,
)
from memos.reading.ingest import IngestFailure
from memos.reading.structured import structured_chat
from memos.telemetry import span

HOT = "hot"


class Summary(BaseModel):
    model_config = ConfigDict(extra="ignore")
    summary: str = Field(min_length=3, max_length=4000)

    @field_validator("summary")
    @classmethod
    def _clean(cls, v: str) -> str:
        return " ".join(v.split())


SUMMARY_PROMPT = ("Merge these related facts into one short paragraph that keeps every detail (names, dates, "
                  'numbers). Reply with JSON only, shaped like {"summary": "<paragraph>"}.')


@dataclass(frozen=True)
class ConsolidationOptions:
    related: float = 0.6
    """Least cosine similarity to a group's seed fact for a fact to join the group."""
    min_group: int = 3
    max_group: int = 8
    expire: bool = True
    dedup: DedupConfig | None = field(default_factory=DedupConfig)
    promote_top: int = 0
    """Most memories in the hot KV prefix (0: no promotion, no model loaded)."""
    promote_min_heat: float = 1.0
    engine: str | None = None

    def check(self) -> None:
        from memos.errors import InvalidInput
        from memos.models import check_int

        if isinstance(self.related, bool) or not isinstance(self.related, (int, float)) \
                or not 0.0 < self.related <= 1.0:
            raise InvalidInput("related must be a number within (0, 1]", field="related")
        check_int(self.min_group, "min_group", lo=2, hi=64)
        check_int(self.max_group, "max_group", lo=self.min_group, hi=64)
        check_int(self.promote_top, "promote_top", lo=0, hi=256)
        if isinstance(self.promote_min_heat, bool) or not isinstance(self.promote_min_heat, (int, float)):
            raise InvalidInput("promote_min_heat must be a number", field="promote_min_heat")
        if not isinstance(self.expire, bool) or not (self.engine is None or isinstance(self.engine, str)):
            raise InvalidInput("expire must be a boolean and engine a name", field="expire")


class ConsolidationReport(BaseModel):
    cube: str
    expired: list[str] = Field(default_factory=list)
    deduplicated: list[dict[str, Any]] = Field(default_factory=list)
    """``{"into": id, "merged": [ids]}`` per group of duplicates."""
    summaries: list[dict[str, Any]] = Field(default_factory=list)
    """``{"id": summary id, "sources": [fact ids]}``."""
    promoted: dict[str, Any] | None = None
    failures: list[IngestFailure] = Field(default_factory=list)
    llm_calls: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def related_groups(vectors: np.ndarray, related: float, min_group: int, max_group: int) -> list[list[int]]:
    """Greedy groups: each unassigned item (in order) seeds a group of its most similar unassigned items."""
    n = len(vectors)
    free = np.ones(n, dtype=bool)
    groups = []
    for i in range(n):
        if not free[i]:
            continue
        sims = vectors @ vectors[i]
        sims[~free] = -1.0
        sims[i] = -1.0
        near = [int(j) for j in np.argsort(-sims)[: max_group - 1] if sims[j] >= related]
        if len(near) + 1 >= min_group:
            group = [i, *sorted(near)]
            free[group] = False
            groups.append(group)
    return groups


def _refs(ms: list[Memory]) -> list[DerivedFrom]:
    return [DerivedFrom(id=m.id, version=m.version) for m in ms]


def consolidate(mos: Any, cube: str, *, llm: ChatBackend | None = None,
                options: ConsolidationOptions = ConsolidationOptions()) -> ConsolidationReport:
    options.check()
    kernel, principal = mos._kernel, mos.principal
    acl.check(kernel.get_cube(cube, principal=principal), principal, "write")
    report = ConsolidationReport(cube=cube)
    t0 = time.perf_counter()
    with span("consolidate", cube=cube):
        if options.expire:
            report.expired = [m.id for m in kernel.sweep_expired(cube, principal=principal)]
        if options.dedup is not None:
            _deduplicate(kernel, cube, principal, options.dedup, report)
        _summarise(kernel, cube, principal, llm, options, report)
        if options.promote_top:
            _promote(mos, cube, options, report)
    report.seconds = round(time.perf_counter() - t0, 4)
    return report


def _deduplicate(kernel: Any, cube: str, principal: str | None, cfg: DedupConfig,
                 report: ConsolidationReport) -> None:
    facts = live_facts(kernel, cube)
    for group in duplicate_groups([m.text for m, _ in facts], stack([v for _, v in facts]), cfg):
        keeper, others = facts[group[0]][0], [facts[j][0] for j in group[1:]]
        kept = kernel.update(cube, keeper.id, metadata=merged_metadata(keeper.metadata, [o.metadata for o in others]),
                             derived_from=_refs(others), source="reading:dedup", principal=principal)
        kernel.set_state(cube, [o.id for o in others], State.merged, op="merge", principal=principal,
                         derived_from=_refs([kept]), source="reading:dedup",
                         detail={"into": kept.id, "reason": "duplicate"})
        report.deduplicated.append({"into": kept.id, "merged": [o.id for o in others]})


def _summary_text(llm: ChatBackend | None, sources: list[Memory], report: ConsolidationReport) -> str | None:
    if llm is None:
        return "; ".join(m.text.rstrip(".") for m in sources) + "."
    body = "\n".join(f"- {m.text}" for m in sources)
    out = structured_chat(llm, [{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": body}],
                          Summary, example='{"summary": "<paragraph>"}', max_tokens=256)
    report.llm_calls += out.attempts
    if out.value is None:
        report.failures.append(IngestFailure(stage="summarise", turns=[m.id for m in sources], error=out.error,
                                             attempts=out.attempts, raw=(out.raw[-1] if out.raw else "")[:500]))
        return None
    return out.value.summary


def _summarise(kernel: Any, cube: str, principal: str | None, llm: ChatBackend | None,
               options: ConsolidationOptions, report: ConsolidationReport) -> None:
    facts = live_facts(kernel, cube)
    vectors = stack([v for _, v in facts])
    if vectors is None or len(facts) < options.min_group:
        return
    for group in related_groups(vectors, options.related, options.min_group, options.max_group):
        sources = [facts[j][0] for j in group]
        text = _summary_text(llm, sources, report)
        if text is None:
            continue
        times = [m.event_time for m in sources if m.event_time is not None]
        turns: list[str] = []
        for m in sources:
            turns += [t for t in m.metadata.get("source_turns", []) if t not in turns]
        meta = {"memory_type": SUMMARY, "source_facts": [m.id for m in sources],
                "source_turns": turns[-MAX_SOURCE_TURNS:],
                "mentions": sum(int(m.metadata.get("mentions", 1)) for m in sources)}
        item = new_memory(text, meta, None, max(times) if times else None, None, None,
                          derived_from=tuple(_refs(sources)), source="reading:consolidate")
        summary = kernel.add_many(cube, [item], principal=principal, op="consolidate")[0]
        kernel.set_state(cube, [m.id for m in sources], State.merged, op="merge", principal=principal,
                         derived_from=_refs([summary]), source="reading:consolidate",
                         detail={"into": summary.id, "reason": "summary"})
        report.summaries.append({"id": summary.id, "sources": [m.id for m in sources]})


def _promote(mos: Any, cube: str, options: ConsolidationOptions, report: ConsolidationReport) -> None:
    kernel, principal = mos._kernel, mos.principal
    heat = access_counter(kernel).heat(cube)
    live = live_facts(kernel, cube, types=None)
    scored = sorted(((heat.get(m.id, 0.0) + 0.5 * (int(m.metadata.get("mentions", 1)) - 1), m) for m, _ in live),
                    key=lambda sm: -sm[0])
    hot = [m for score, m in scored[: options.promote_top] if score >= options.promote_min_heat]
    if not hot:
        return
    previous = [m for m, _ in kernel.backend.scan(cube, with_vectors=False)
                if m.kind == "activation" and m.metadata.get("memory_type") == HOT and m.state == State.activated]
    wanted = {(r.id, r.version) for r in _refs(hot)}
    for p in previous:
        if {(d.id, d.version) for d in p.provenance.derived_from} == wanted:
            report.promoted = {"id": p.id, "sources": [m.id for m in hot], "unchanged": True}
            return
    text = "\n".join(f"- {m.text}" for m in hot)
    built = mos._activation().add(cube, text, mos.engine(options.engine),
                                  metadata={"memory_type": HOT, "built_from": len(hot)},
                                  derived_from=_refs(hot), source="reading:consolidate", principal=principal)
    if previous:
        kernel.set_state(cube, [p.id for p in previous], State.archived, op="delete", principal=principal,
                         derived_from=_refs([built]), detail={"reason": "superseded", "by": built.id})
    report.promoted = {"id": built.id, "sources": [m.id for m in hot], "unchanged": False}
