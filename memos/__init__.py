"""memos: a memory operating system for LLM agents.

    import memos
    mos = memos.MemOS.open()                 # embedded: SQLite + FAISS under $MEMOS_HOME or ~/.memos
    cube = mos.create_cube("alice", owner="alice")
    cube.add("Alice moved to Lisbon in 2023", metadata={"session": 3}, event_time="2023-05-01")
    cube.search("where does alice live?", top_k=5)

Heavy modules (torch, faiss, transformers) load on first use, so ``import memos`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memos import errors
from memos.hookspecs import hookimpl

__version__ = "0.1.0"

if TYPE_CHECKING:
    from memos.models import Hit, MemCube, Memory, State
    from memos.sdk import Cube, MemOS

_LAZY = {
    "MemOS": "memos.sdk",
    "Cube": "memos.sdk",
    "Memory": "memos.models",
    "MemCube": "memos.models",
    "Hit": "memos.models",
    "State": "memos.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memos' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted(["Cube", "Hit", "MemCube", "MemOS", "Memory", "State", "__version__", "errors", "hookimpl"])
