"""One engine instance per (engine name, models folder) in a process: a model loads once, not per handle."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from memos import plugins

_ENGINES: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def get_engine(name: str, models_dir: Path, **options: Any) -> Any:
    key = (name, str(models_dir))
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            cls = plugins.lookup("engines", name)
            engine = _ENGINES[key] = cls(models_dir, **options)
        return engine


def loaded_engine(name: str, models_dir: Path | None) -> Any | None:
    """The engine if this process has already loaded it (never loads one)."""
    with _LOCK:
        return _ENGINES.get((name, str(models_dir)))
