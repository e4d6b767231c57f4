"""Problems given by examples, and the domain adaptor that tells the solver how to show and run them.

The memory core (:mod:`.memory`, :mod:`.write`, :mod:`.read`) sees problems only as rendered text; the
solver (:mod:`.solver`) asks the domain how to render values, what the program's entry point and signature
are, and how to compare outputs. :class:`JsonDomain` takes any JSON inputs and outputs; ARC grids are
:class:`memos_arcmemo.arc.ArcDomain`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from memos.errors import InvalidInput


@dataclass(frozen=True)
class Example:
    input: Any
    output: Any = None
    """``None`` for a test input whose answer is not known."""


@dataclass(frozen=True)
class Problem:
    """A problem given by input/output examples: find the program that maps each input to its output."""

    id: str
    train: tuple[Example, ...]
    test: tuple[Example, ...] = ()
    statement: str = ""
    """Optional words about the problem, shown before the examples."""

    @classmethod
    def from_obj(cls, problem_id: str, obj: Any) -> Problem:
        """From the ARC task layout ``{"train": [{"input", "output"}], "test": [{"input", "output"?}]}``."""
        if not isinstance(problem_id, str) or not problem_id.strip():
            raise InvalidInput("a problem needs a non-empty id", field="id")
        if not isinstance(obj, Mapping) or not isinstance(obj.get("train"), list) or not obj["train"]:
            raise InvalidInput(f"problem {problem_id!r} needs a non-empty 'train' list of examples", field="train")

        def examples(items: Any, part: str, need_output: bool) -> tuple[Example, ...]:
            if not isinstance(items, list):
                raise InvalidInput(f"problem {problem_id!r}: {part!r} must be a list", field=part)
            out = []
            for i, ex in enumerate(items):
                if not isinstance(ex, Mapping) or "input" not in ex or (need_output and "output" not in ex):
                    raise InvalidInput(f"problem {problem_id!r}: {part}[{i}] needs 'input'"
                                       + (" and 'output'" if need_output else ""), field=part)
                out.append(Example(ex["input"], ex.get("output")))
            return tuple(out)

        statement = obj.get("statement", "")
        return cls(problem_id.strip(), examples(obj["train"], "train", True),
                   examples(obj.get("test", []), "test", False), statement if isinstance(statement, str) else "")


class Domain(Protocol):
    """How a kind of problem is shown to the model and run (see :class:`JsonDomain`)."""

    name: str
    entry: str
    """Name of the function the model writes."""
    signature: str
    """Its signature and what it receives, in one line for the prompt."""
    as_array: bool
    """Pass inputs to the program as numpy arrays."""

    def render_value(self, value: Any) -> str: ...

    def same(self, expected: Any, got: Any) -> bool: ...

    def explain(self, expected: Any, got: Any) -> str:
        """How ``got`` differs from ``expected``, for the retry prompt."""


@dataclass(frozen=True)
class JsonDomain:
    """Any JSON inputs and outputs, shown as JSON."""

    name: ClassVar[str] = "json"
    entry: str = "transform"
    signature: str = "def transform(x): receives one input (a JSON value) and returns the output"
    as_array: bool = False

    def render_value(self, value: Any) -> str:
        return json.dumps(value)

    def same(self, expected: Any, got: Any) -> bool:
        return bool(expected == got)

    def explain(self, expected: Any, got: Any) -> str:
        return f"expected {json.dumps(expected)[:1000]}, got {json.dumps(got)[:1000]}"


def render_problem(domain: Domain, problem: Problem, *, with_test: bool = True) -> str:
    """The examples (and the test inputs) as text."""
    parts = [problem.statement.strip()] if problem.statement.strip() else []
    for i, ex in enumerate(problem.train, 1):
        parts.append(f"Example {i} input:\n{domain.render_value(ex.input)}\n"
                     f"Example {i} output:\n{domain.render_value(ex.output)}")
    if with_test:
        for i, ex in enumerate(problem.test, 1):
            parts.append(f"Test input {i}:\n{domain.render_value(ex.input)}")
    return "\n\n".join(parts)
