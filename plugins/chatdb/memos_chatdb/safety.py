"""The SQL allow-list, checked twice: statically with sqlglot, then by SQLite's authorizer.

Static check (:func:`check_statement`): exactly one statement; SELECT (and UNION/INTERSECT/EXCEPT of
SELECTs), INSERT, UPDATE or DELETE; CREATE TABLE only when the caller is the schema-setup path; every
table referenced is one of the plugin's own tables (or a CTE of the statement) in the ``main`` schema.

Authorizer (:func:`authorizer`): defence in depth for what sqlglot might parse differently from SQLite:
denies ATTACH/DETACH, PRAGMA, ``load_extension``, schema changes outside setup, and any read or write of
a table that is not one of the plugin's own tables (``sqlite_master`` included) or not in ``main``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from memos_chatdb.errors import UnsafeSQL

_QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except)
_WRITES = (exp.Insert, exp.Update, exp.Delete)
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


def check_statement(sql: str, tables: Collection[str], *, allow_create: bool = False,
                    step: int | None = None) -> exp.Expression:
    """Parse ``sql`` and refuse it (:class:`UnsafeSQL`) unless it is one allowed statement."""
    try:
        parsed = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except (ParseError, TokenError) as exc:
        raise UnsafeSQL(f"SQL does not parse: {exc}".splitlines()[0], sql=sql, step=step) from exc
    if len(parsed) != 1:
        raise UnsafeSQL(f"exactly one SQL statement per step is allowed, got {len(parsed)}", sql=sql, step=step)
    tree = parsed[0]
    if isinstance(tree, exp.Create):
        if not allow_create or str(tree.args.get("kind", "")).upper() != "TABLE":
            raise UnsafeSQL("CREATE is only allowed for tables, in the schema-setup path", sql=sql, step=step)
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        if not isinstance(target, exp.Table) or target.db not in ("", "main") or target.catalog:
            raise UnsafeSQL("CREATE TABLE must name a table in the main schema", sql=sql, step=step)
        if target.name.lower().startswith("sqlite_"):
            raise UnsafeSQL("table names starting with sqlite_ are reserved", sql=sql, step=step)
        return tree
    if not isinstance(tree, _QUERIES + _WRITES):
        raise UnsafeSQL(f"{type(tree).__name__.upper()} statements are not allowed (only SELECT, INSERT, "
                        "UPDATE, DELETE)", sql=sql, step=step)
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    own = {t.lower() for t in tables}
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if table.catalog or table.db not in ("", "main"):
            raise UnsafeSQL(f"table {table.sql(dialect='sqlite')} is outside this database", sql=sql, step=step)
        if name not in own and not (name in ctes and not table.db):
            raise UnsafeSQL(f"table {table.name!r} is not one of this database's tables "
                            f"({', '.join(sorted(own)) or 'none'})", sql=sql, step=step)
    for fn in tree.find_all(exp.Anonymous):
        if str(fn.this).lower() in _DENIED_FUNCTIONS:
            raise UnsafeSQL(f"function {fn.this}() is not allowed", sql=sql, step=step)
    return tree


def authorizer(tables: Callable[[], Collection[str]], setup: Callable[[], bool]) -> Callable[..., int]:
    """A ``Connection.set_authorizer`` callback; ``tables``/``setup`` are read at each call."""

    def decide(action: int, arg1: str | None, arg2: str | None, db: str | None, _trigger: str | None) -> int:
        own = {t.lower() for t in tables()}
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_PRAGMA):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE):
            table = (arg1 or "").lower()
            if setup() and db == "main":
                return sqlite3.SQLITE_OK  # validated CREATE TABLEs: the schema table and the new tables
            if db in ("main", None) and table in own:  # None: a whole-table read (count(*))
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_INDEX):
            return sqlite3.SQLITE_OK if setup() and db == "main" else sqlite3.SQLITE_DENY
        # indexes, views, triggers, drops, ALTER, VACUUM, savepoints, temp objects ...
        return sqlite3.SQLITE_DENY

    return decide
