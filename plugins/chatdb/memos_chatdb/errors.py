"""ChatDB errors, inside the memos error tree::

    InvalidInput
    └── UnsafeSQL          a statement outside the allow-list (refused before it runs)
        └── SQLNotAllowed  refused by the SQLite authorizer while being prepared
"""

from __future__ import annotations

from typing import Any

from memos.errors import InvalidInput


class UnsafeSQL(InvalidInput):
    """A SQL statement the allow-list refuses: nothing of it ran."""

    def __init__(self, message: str, *, sql: str, step: int | None = None, **context: Any) -> None:
        super().__init__(message, field="sql", sql=sql, step=step, **context)


class SQLNotAllowed(UnsafeSQL):
    """The SQLite authorizer denied an action while the statement was prepared."""
