"""Memory reading: from conversations to facts (extraction, reconciliation, deduplication) and sleep-time
consolidation. See docs/reading.md.

The SDK entry points are ``cube.add_messages(...)`` (:func:`add_messages`) and ``cube.consolidate(...)``
(:func:`consolidate_cube`); ``mos.submit("consolidate", {"cube": ...})`` runs the latter in the
background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memos.errors import InvalidInput

if TYPE_CHECKING:
    from memos.reading.consolidate import ConsolidationReport
    from memos.reading.dedup import DedupConfig
    from memos.reading.ingest import IngestReport

# Submodules load on first use: ``cube.search`` imports ``memos.reading.access`` on its hot path.
_LAZY = {
    "ConsolidationOptions": "consolidate", "ConsolidationReport": "consolidate",
    "DedupConfig": "dedup", "duplicate_rate": "dedup", "is_duplicate": "dedup",
    "Extraction": "extract", "FactExtractor": "extract", "normalise_messages": "extract",
    "DEFAULT_WINDOW": "ingest", "IngestFailure": "ingest", "IngestReport": "ingest", "ingest_messages": "ingest",
    "RECONCILE_POLICIES": "reconcile", "AccumulatePolicy": "reconcile", "Candidate": "reconcile",
    "InvalidatePolicy": "reconcile", "ReconcileContext": "reconcile", "ReconcilePolicy": "reconcile",
    "UpdatePolicy": "reconcile", "reconcile_policy": "reconcile",
    "Structured": "structured", "parse_json": "structured", "structured_chat": "structured",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memos.reading' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"memos.reading.{module}"), name)
    globals()[name] = value
    return value


def resolve_llm(mos: Any, spec: Any) -> Any:
    """A chat backend from ``spec``: None/``"none"`` (no LLM), a backend object (anything with
    ``chat``), ``"local"`` (the local engine), an endpoint URL, or ``{"endpoint", "model", "api_key"}``."""
    from memos.llm import chat_backend

    if spec is None or spec == "none":
        return None
    if hasattr(spec, "chat"):
        return spec
    if spec == "local":
        return chat_backend(mos)
    if isinstance(spec, str) and spec.startswith(("http://", "https://")):
        return chat_backend(mos, spec)
    if isinstance(spec, dict) and isinstance(spec.get("endpoint"), str):
        return chat_backend(mos, spec["endpoint"], spec.get("model"), spec.get("api_key"))
    raise InvalidInput(f"llm must be None, 'local', an endpoint URL, {{'endpoint', 'model'}} or a chat backend, "
                       f"got {spec!r}", field="llm")


def dedup_config(value: Any) -> DedupConfig | None:
    """``True`` (default thresholds), ``False``/None (off), a DedupConfig or ``{"embedding", "text"}``."""
    from memos.reading.dedup import DedupConfig

    if value is True:
        return DedupConfig()
    if value is False or value is None:
        return None
    if isinstance(value, DedupConfig):
        return value
    if isinstance(value, dict) and set(value) <= {"embedding", "text"} and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in value.values()):
        return DedupConfig(**{k: float(v) for k, v in value.items()})
    raise InvalidInput("dedup must be true, false or {'embedding': 0..1, 'text': 0..1}", field="dedup")


def add_messages(mos: Any, cube: str, messages: Any, *, session: Any = None, event_time: Any = None,
                 llm: Any = None, reconcile: str | None = None, window: int = 6, dedup: Any = True,
                 consolidate: bool = False, progress: Any = None) -> IngestReport:
    """``cube.add_messages``: see :func:`memos.reading.ingest.ingest_messages`. ``consolidate=True`` then
    queues a background ``consolidate`` task for the cube (its id in ``report.consolidation_task``)."""
    from memos.reading.ingest import ingest_messages

    report = ingest_messages(mos._kernel, cube, messages, session=session, event_time=event_time,
                             llm=resolve_llm(mos, llm), principal=mos.principal, reconcile=reconcile,
                             window=window, dedup=dedup_config(dedup), progress=progress)
    if consolidate:
        head = mos._kernel.get_cube(cube, principal=mos.principal).head
        spec = llm if llm is None or isinstance(llm, (str, dict)) else None  # a backend object stays here
        report.consolidation_task = mos.submit("consolidate", {"cube": cube, "llm": spec},
                                               key=f"consolidate:{cube}:{head}")
    return report


def consolidate_cube(mos: Any, cube: str, *, llm: Any = None, related: float = 0.6, min_group: int = 3,
                     max_group: int = 8, expire: bool = True, dedup: Any = True, promote_top: int = 0,
                     promote_min_heat: float = 1.0, engine: str | None = None) -> ConsolidationReport:
    from memos.reading.consolidate import ConsolidationOptions, consolidate

    options = ConsolidationOptions(related=related, min_group=min_group, max_group=max_group, expire=expire,
                                   dedup=dedup_config(dedup), promote_top=promote_top,
                                   promote_min_heat=promote_min_heat, engine=engine)
    return consolidate(mos, cube, llm=resolve_llm(mos, llm), options=options)


def consolidate_task(mos: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Handler of the ``consolidate`` task: ``{"cube", "llm"?, "options"?: {...}}`` (JSON only)."""
    options = payload.get("options") or {}
    known = {"related", "min_group", "max_group", "expire", "dedup", "promote_top", "promote_min_heat", "engine"}
    if not isinstance(options, dict) or set(options) - known:
        raise InvalidInput(f"consolidate options must be an object with keys among {sorted(known)}",
                           field="options")
    return consolidate_cube(mos, payload["cube"], llm=payload.get("llm"), **options).as_dict()


__all__ = [
    "RECONCILE_POLICIES",
    "AccumulatePolicy",
    "Candidate",
    "ConsolidationOptions",
    "ConsolidationReport",
    "DedupConfig",
    "Extraction",
    "FactExtractor",
    "IngestFailure",
    "IngestReport",
    "InvalidatePolicy",
    "ReconcileContext",
    "ReconcilePolicy",
    "Structured",
    "UpdatePolicy",
    "add_messages",
    "consolidate_cube",
    "consolidate_task",
    "dedup_config",
    "duplicate_rate",
    "ingest_messages",
    "is_duplicate",
    "normalise_messages",
    "parse_json",
    "reconcile_policy",
    "resolve_llm",
    "structured_chat",
]
