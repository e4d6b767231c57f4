"""The two memory formats of ArcMemo, as value objects that round-trip through a memory's metadata.

* :class:`Concept` (program-synthesis format, "PS"): a typed, parameterised abstraction. ``kind`` is
  ``structure`` (a kind of object or pattern to look for) or ``routine`` (an operation, possibly taking
  other routines as parameters); ``cues`` say what in a new problem suggests it, ``notes`` how to implement it.
* :class:`Lesson` (open-ended format, "OE"): a ``situation`` and the ``suggestion`` for it.

An entry is identified by its :attr:`key` (the normalised name, or situation): an entry written with the
key of a stored one is merged into it (:meth:`merge`), never added beside it. ``problems`` is the
provenance: the ids of the problems whose solutions the entry was abstracted from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from memos.errors import InvalidInput

KINDS = ("structure", "routine")
MAX_FIELD_CHARS = 500
"""Longer text fields are cut (a concept is a short abstraction; this keeps its metadata well under the
kernel's 64 kB limit)."""
MAX_ITEMS = 16
"""Most parameters, cues and notes kept per concept (merges keep the first ones)."""
SUGGESTION_CHARS = 4000
"""A lesson's suggestions (one per line, accumulated by merges) are kept up to this length."""


def normalise(text: str) -> str:
    """The matching key of a name or situation: lower case, runs of other characters as one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _text(obj: Mapping[str, Any], name: str, *, required: bool = False, limit: int = MAX_FIELD_CHARS) -> str:
    value = obj.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise InvalidInput(f"concept field {name!r} must be text, got {type(value).__name__}", field=name)
    value = str(value).strip()
    if required and not value:
        raise InvalidInput(f"concept field {name!r} is required", field=name)
    return value if len(value) <= limit else value[:limit - 1] + "…"


def _texts(obj: Mapping[str, Any], name: str) -> list[str]:
    value = obj.get(name) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput(f"concept field {name!r} must be a list of strings", field=name)
    out = [_text({name: v}, name) for v in value]
    return _union([], [v for v in out if v])[:MAX_ITEMS]


def _ids(obj: Mapping[str, Any]) -> list[str]:
    """The ``problems`` provenance: every id kept (no cap, no cut)."""
    value = obj.get("problems") or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("'problems' must be a list of problem ids", field="problems")
    return [v for v in value if v.strip()]


def _union(old: Iterable[str], new: Iterable[str]) -> list[str]:
    """Both lists in order, without repeats (compared normalised)."""
    out, seen = [], set()
    for item in [*old, *new]:
        key = normalise(item) or item
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str = ""
    description: str = ""

    @classmethod
    def from_obj(cls, obj: Any) -> Parameter:
        if isinstance(obj, str):
            obj = {"name": obj}
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"a parameter must be an object or a name, got {type(obj).__name__}",
                               field="parameters")
        return cls(_text(obj, "name", required=True), _text(obj, "type"), _text(obj, "description"))

    def to_obj(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "description": self.description}

    def render(self) -> str:
        typed = f"{self.name} ({self.type})" if self.type else self.name
        return f"{typed}: {self.description}" if self.description else typed


@dataclass(frozen=True)
class Concept:
    """A program-synthesis concept (see the module docstring)."""

    format: ClassVar[str] = "ps"
    name: str
    kind: Literal["structure", "routine"] = "routine"
    description: str = ""
    parameters: tuple[Parameter, ...] = ()
    output: str = ""
    """What a routine returns (a type, in words)."""
    cues: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    """Implementation notes."""
    problems: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return normalise(self.name)

    @classmethod
    def from_obj(cls, obj: Any, problems: Iterable[str] = ()) -> Concept:
        """Validate a concept written by a model (or read back from metadata)."""
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"a concept must be an object, got {type(obj).__name__}", field="concept")
        name = _text(obj, "name", required=True)
        if not normalise(name):
            raise InvalidInput(f"concept name {name!r} has no letters or digits", field="name")
        kind = _text(obj, "kind") or _text(obj, "type") or "routine"
        if kind.lower() not in KINDS:
            raise InvalidInput(f"concept kind must be one of {KINDS}, got {kind!r}", field="kind")
        params = obj.get("parameters") or []
        if not isinstance(params, list):
            raise InvalidInput("concept field 'parameters' must be a list", field="parameters")
        return cls(name=name, kind=kind.lower(),  # type: ignore[arg-type]
                   description=_text(obj, "description"),
                   parameters=tuple(Parameter.from_obj(p) for p in params[:MAX_ITEMS]),
                   output=_text(obj, "output"), cues=tuple(_texts(obj, "cues")),
                   notes=tuple(_texts(obj, "notes") or _texts(obj, "implementation")),
                   problems=tuple(_union(_ids(obj), problems)))

    def to_obj(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "parameters": [p.to_obj() for p in self.parameters], "output": self.output,
                "cues": list(self.cues), "notes": list(self.notes), "problems": list(self.problems)}

    def merge(self, other: Concept) -> Concept:
        """This concept revised by ``other`` (same key): the newer description and output where given,
        parameters merged by name, cues, notes and problems united."""
        params = {normalise(p.name): p for p in self.parameters}
        for p in other.parameters:
            old = params.get(normalise(p.name))
            params[normalise(p.name)] = p if old is None else Parameter(
                old.name, p.type or old.type, p.description or old.description)
        return replace(self, description=other.description or self.description,
                       parameters=tuple(params.values())[:MAX_ITEMS], output=other.output or self.output,
                       cues=tuple(_union(self.cues, other.cues)[:MAX_ITEMS]),
                       notes=tuple(_union(self.notes, other.notes)[:MAX_ITEMS]),
                       problems=tuple(_union(self.problems, other.problems)))

    def render(self) -> str:
        """The text shown to models and indexed for retrieval."""
        lines = [f"- {self.name} ({self.kind})" + (f": {self.description}" if self.description else "")]
        if self.parameters:
            lines.append("  parameters: " + "; ".join(p.render() for p in self.parameters))
        if self.output:
            lines.append(f"  output: {self.output}")
        if self.cues:
            lines.append("  cues: " + "; ".join(self.cues))
        if self.notes:
            lines.append("  notes: " + "; ".join(self.notes))
        return "\n".join(lines)


@dataclass(frozen=True)
class Lesson:
    """An open-ended lesson: in ``situation``, do ``suggestion``."""

    format: ClassVar[str] = "oe"
    situation: str
    suggestion: str
    problems: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return normalise(self.situation)

    @property
    def name(self) -> str:
        return self.situation

    @classmethod
    def from_obj(cls, obj: Any, problems: Iterable[str] = ()) -> Lesson:
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"a lesson must be an object, got {type(obj).__name__}", field="lesson")
        situation = _text(obj, "situation", required=True)
        if not normalise(situation):
            raise InvalidInput(f"situation {situation!r} has no letters or digits", field="situation")
        return cls(situation, _text(obj, "suggestion", required=True, limit=SUGGESTION_CHARS),
                   tuple(_union(_ids(obj), problems)))

    def to_obj(self) -> dict[str, Any]:
        return {"situation": self.situation, "suggestion": self.suggestion, "problems": list(self.problems)}

    def merge(self, other: Lesson) -> Lesson:
        """Suggestions for the same situation accumulate (one per line), problems are united."""
        lines = _union(self.suggestion.splitlines(), [s for s in other.suggestion.splitlines() if normalise(s)])
        while len(lines) > 1 and (len(lines) > MAX_ITEMS or len("\n".join(lines)) > SUGGESTION_CHARS):
            lines.pop()  # full: the earlier suggestions stay
        return replace(self, suggestion="\n".join(lines),
                       problems=tuple(_union(self.problems, other.problems)))

    def render(self) -> str:
        return f"- situation: {self.situation}\n  suggestion: " + self.suggestion.replace("\n", "\n  ")


Entry = Concept | Lesson
FORMATS: dict[str, type[Concept | Lesson]] = {"ps": Concept, "oe": Lesson}


def with_problems(entry: Entry, problems: Iterable[str]) -> Entry:
    """``entry`` with ``problems`` added to its provenance."""
    return replace(entry, problems=tuple(_union(entry.problems, problems)))


def entry_type(format: str) -> type[Concept | Lesson]:
    if format not in FORMATS:
        raise InvalidInput(f"memory format must be one of {sorted(FORMATS)}, got {format!r}", field="format")
    return FORMATS[format]
