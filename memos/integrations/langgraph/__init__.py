"""LangGraph over memos: a long-term ``BaseStore`` and a checkpointer whose checkpoints are memory versions.

    from memos import MemOS
    from memos.integrations.langgraph import MemosCheckpointSaver, MemosStore

    mos = MemOS.open()
    graph = builder.compile(store=MemosStore(mos), checkpointer=MemosCheckpointSaver(mos))

:class:`MemosStore` maps a LangGraph namespace onto a cube (``f"{cube_prefix}-{namespace[0]}"``, created on
first put) plus metadata (``lg_ns``, ``lg_key``, ``lg_prefixes``); the value is the memory's JSON text, its
``text``/``content`` field (or the ``index`` fields) is indexed with it, so ``search(query=...)`` runs memos
hybrid retrieval. A put on an existing key writes a new version; a put of ``None`` archives the memory.

:class:`MemosCheckpointSaver` keeps one memory per ``(thread_id, checkpoint_ns)``: each checkpoint is a new
version of it, so ``cube.history(id)`` is the thread's history and time travel reads an older version.
Pending writes are separate memories. Everything is serialised with ``JsonPlusSerializer`` (no pickle
fallback) and stored base64 inside JSON text.

Requires ``langgraph`` (``pip install langgraph``).
"""

from memos.integrations.langgraph._common import cube_name_for
from memos.integrations.langgraph.checkpoint import MemosCheckpointSaver
from memos.integrations.langgraph.store import MemosStore

__all__ = ["MemosCheckpointSaver", "MemosStore", "cube_name_for"]
