"""Hook specifications: every ``memos_*`` hook a plugin may implement.

A plugin is a module (or object) with functions marked ``@memos.hookimpl``, found through the ``memos``
entry-point group. First-party backends (``kernel_backends``), the scheduler and method plugins register
exactly like third-party packages. Registration hooks return a list of classes, each identified by its
``name`` attribute; two classes with the same name for the same hook fail at start-up.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("memos")
hookimpl = pluggy.HookimplMarker("memos")


@hookspec
def memos_register_backends() -> list[type]:
    """Storage backends (:class:`memos.storage.StorageBackend` subclasses) keyed by ``name``."""


@hookspec
def memos_register_vector_indexes() -> list[type]:
    """Dense index factories (``create(dim)``, ``load(path)``) keyed by ``name``."""


@hookspec
def memos_register_blob_stores() -> list[type]:
    """Payload blob stores (:class:`memos.storage.BlobStore` subclasses) keyed by ``name``."""


@hookspec
def memos_register_embedders() -> list[type]:
    """Embedders (``embed(texts)``, ``embed_query(text)``, ``dim``) keyed by ``name``."""


@hookspec
def memos_register_engines() -> list[type]:
    """Model engines (``generate``, ``build_kv``, ``fingerprint``) keyed by ``name``."""


@hookspec
def memos_register_memory_kinds() -> list[type]:
    """Extra memory kinds (handlers for a ``kind`` beyond the three built-in ones) keyed by ``name``."""


@hookspec
def memos_register_policies() -> list[type]:
    """Placement, residency and reconciliation policies keyed by ``name``."""


@hookspec
def memos_register_runtimes() -> list[type]:
    """Distributed runtimes (``RuntimeClass(url).connect() -> MemOS-like``) keyed by ``name``, used by
    ``MemOS.connect`` for URLs it does not handle itself (``ray://``)."""


@hookspec
def memos_register_commands(app: Any) -> None:
    """Add sub-commands to the ``memos`` Typer app."""


@hookspec
def memos_before_operation(op: str, cube: str | None, principal: str | None, args: dict[str, Any]) -> None:
    """Called before every kernel operation; raise a :class:`memos.errors.MemosError` to refuse it
    (quotas, policy). ``args`` may be inspected, not modified."""


@hookspec
def memos_after_operation(op: str, cube: str | None, principal: str | None, result: Any) -> None:
    """Called after every successful kernel operation (audit, metrics)."""
