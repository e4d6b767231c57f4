"""One SQLite database per cube (``<home>/chatdb/<cube>.sqlite``), reached only through the allow-list.

Every statement is checked by :func:`memos_chatdb.safety.check_statement` before it reaches SQLite, and
the connection carries the authorizer from :mod:`memos_chatdb.safety`. :meth:`ChatDatabase.execute` runs
one statement in its own transaction (rolled back on any error); :meth:`ChatDatabase.setup_schema` is the
only path that may create tables.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from memos.errors import BackendError
from memos_chatdb.errors import SQLNotAllowed, UnsafeSQL
from memos_chatdb.safety import authorizer, check_statement


@dataclass(frozen=True)
class StepResult:
    """What one statement did: ``columns``/``rows`` for queries, ``rowcount``/``lastrowid`` for writes."""

    sql: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    rowcount: int = 0
    lastrowid: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"sql": self.sql, "columns": self.columns, "rows": self.rows, "rowcount": self.rowcount,
                "lastrowid": self.lastrowid}


def database_path(home: str | Path, cube: str) -> Path:
    return Path(home) / "chatdb" / f"{cube}.sqlite"


class ChatDatabase:
    """The symbolic memory of one cube."""

    def __init__(self, path: str | Path, *, max_rows: int = 200) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        # autocommit mode: transactions are explicit, one per step
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._setup = False
        self._tables = self._read_tables()
        self._conn.set_authorizer(authorizer(lambda: self._tables, lambda: self._setup))

    @classmethod
    def for_cube(cls, home: str | Path, cube: str, **kwargs: Any) -> ChatDatabase:
        return cls(database_path(home, cube), **kwargs)

    def _read_tables(self) -> set[str]:
        # before the authorizer is installed: the only read of sqlite_master, by the plugin itself
        rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                  "AND name NOT LIKE 'sqlite_%'").fetchall()
        return {r[0] for r in rows}

    @property
    def tables(self) -> list[str]:
        return sorted(self._tables)

    def schema(self) -> str:
        """The CREATE TABLE statements of the plugin's tables (for prompts)."""
        self._conn.set_authorizer(None)
        try:
            rows = self._conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' "
                                      "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        finally:
            self._conn.set_authorizer(authorizer(lambda: self._tables, lambda: self._setup))
        return ";\n".join(r[0] for r in rows) + (";" if rows else "")

    def check(self, sql: str, *, step: int | None = None) -> None:
        """Refuse ``sql`` (:class:`UnsafeSQL`) unless the allow-list accepts it; runs nothing."""
        check_statement(sql, self._tables, step=step)

    def execute(self, sql: str, *, step: int | None = None) -> StepResult:
        """Run one allowed statement in its own transaction.

        Raises :class:`UnsafeSQL` (nothing ran) or :class:`sqlite3.Error` (the transaction was rolled back).
        """
        check_statement(sql, self._tables, step=step)
        return self._run(sql, step)

    def setup_schema(self, ddl: list[str]) -> list[str]:
        """Create tables (the only path allowed to): each statement must be one CREATE TABLE."""
        for sql in ddl:
            check_statement(sql, self._tables, allow_create=True)
        self._setup = True
        try:
            self._conn.execute("BEGIN")
            for sql in ddl:
                self._conn.execute(sql)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise BackendError("chatdb", f"schema setup failed: {exc}") from exc
        finally:
            self._setup = False
        self._tables = self._read_tables_authorized()
        return self.tables

    def _read_tables_authorized(self) -> set[str]:
        self._conn.set_authorizer(None)
        try:
            return self._read_tables()
        finally:
            self._conn.set_authorizer(authorizer(lambda: self._tables, lambda: self._setup))

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _run(self, sql: str, step: int | None) -> StepResult:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            cur = self._conn.execute(sql)
            columns = [d[0] for d in cur.description or ()]
            rows = [list(r) for r in cur.fetchmany(self.max_rows)] if columns else []
            result = StepResult(sql, columns, rows, max(cur.rowcount, 0), cur.lastrowid if not columns else None)
            self._conn.execute("COMMIT")
            return result
        except sqlite3.DatabaseError as exc:
            self._rollback()
            if "not authorized" in str(exc) or "prohibited" in str(exc):
                raise SQLNotAllowed(f"SQLite refused the statement: {exc}", sql=sql, step=step) from exc
            raise
        except BaseException:
            self._rollback()
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ChatDatabase", "StepResult", "UnsafeSQL", "database_path"]
