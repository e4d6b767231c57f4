"""SQLite storage backend: the embedded default.

WAL journal with ``synchronous=FULL``: a batch is one transaction, fsynced before ``batch`` returns, so an
acknowledged write survives a SIGKILL or power loss. All SQL is parameterised. One connection guarded by
a lock: SQLite serialises writers anyway, and the kernel keeps hot reads in memory.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from memos.errors import BackendError, Conflict, CubeExists, CubeNotFound
from memos.hookspecs import hookimpl
from memos.models import LogEntry, MemCube, Memory
from memos.storage import (
    WRITE_OPS,
    Commit,
    DropCube,
    GetCube,
    GetMemories,
    GetRecord,
    History,
    ListCubes,
    Op,
    PutCube,
    PutRecord,
    ReadLog,
    Scan,
    StorageBackend,
    cube_doc,
    load_cube,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cubes (
    name TEXT PRIMARY KEY,
    head INTEGER NOT NULL DEFAULT 0,
    doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    cube   TEXT NOT NULL,
    commit_no INTEGER NOT NULL,
    doc    TEXT NOT NULL,
    PRIMARY KEY (cube, commit_no)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    cube    TEXT NOT NULL,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    commit_no INTEGER NOT NULL,
    doc     TEXT NOT NULL,
    vector  BLOB,
    PRIMARY KEY (cube, id, version)
);
CREATE INDEX IF NOT EXISTS versions_commit ON versions (cube, commit_no);
CREATE TABLE IF NOT EXISTS items (
    cube    TEXT NOT NULL,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (cube, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""

_CHUNK = 500  # stay well under SQLite's host-parameter limit


class SqliteBackend(StorageBackend):
    name: ClassVar[str] = "sqlite"
    shared: ClassVar[bool] = False

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
                raise ValueError(f"synchronous={synchronous!r}")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise BackendError(self.name, f"cannot open {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------------------------ batch
    def batch(self, ops: Sequence[Op]) -> list[Any]:
        writes = any(isinstance(op, WRITE_OPS) for op in ops)
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
                results = [self._run(cur, op) for op in ops]
                cur.execute("COMMIT")
                return results
            except BaseException as exc:
                if self._db.in_transaction:
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise BackendError(self.name, str(exc)) from exc
                raise
            finally:
                cur.close()

    def _run(self, cur: sqlite3.Cursor, op: Op) -> Any:
        handler = _HANDLERS.get(type(op))
        if handler is None:
            raise TypeError(f"unsupported op {type(op).__name__}")
        return handler(self, cur, op)

    # ------------------------------------------------------------------------------------ cubes
    def _put_cube(self, cur: sqlite3.Cursor, op: PutCube) -> None:
        row = cur.execute("SELECT head FROM cubes WHERE name = ?", (op.cube.name,)).fetchone()
        if row is not None and op.create:
            raise CubeExists(op.cube.name)
        if row is None:
            cur.execute("INSERT INTO cubes (name, head, doc) VALUES (?, 0, ?)", (op.cube.name, cube_doc(op.cube)))
        else:
            cur.execute("UPDATE cubes SET doc = ? WHERE name = ?", (cube_doc(op.cube), op.cube.name))

    def _get_cube(self, cur: sqlite3.Cursor, op: GetCube) -> MemCube | None:
        row = cur.execute("SELECT doc, head FROM cubes WHERE name = ?", (op.name,)).fetchone()
        return load_cube(row[0], row[1]) if row else None

    def _list_cubes(self, cur: sqlite3.Cursor, op: ListCubes) -> list[MemCube]:
        return [load_cube(d, h) for d, h in cur.execute("SELECT doc, head FROM cubes ORDER BY name")]

    def _drop_cube(self, cur: sqlite3.Cursor, op: DropCube) -> bool:
        existed = cur.execute("DELETE FROM cubes WHERE name = ?", (op.name,)).rowcount > 0
        for table in ("log", "versions", "items"):
            cur.execute(f"DELETE FROM {table} WHERE cube = ?", (op.name,))  # table names are constants
        return existed

    # ----------------------------------------------------------------------------------- commit
    def _commit(self, cur: sqlite3.Cursor, op: Commit) -> int:
        cube = op.entry.cube
        row = cur.execute("SELECT head FROM cubes WHERE name = ?", (cube,)).fetchone()
        if row is None:
            raise CubeNotFound(cube)
        if row[0] != op.expected_head or op.entry.commit != op.expected_head + 1:
            raise Conflict(cube, op.expected_head, row[0])
        new_head = op.entry.commit
        cur.execute("INSERT INTO log (cube, commit_no, doc) VALUES (?, ?, ?)",
                    (cube, new_head, op.entry.model_dump_json()))
        for mid in op.purge:
            cur.execute("DELETE FROM versions WHERE cube = ? AND id = ?", (cube, mid))
            cur.execute("DELETE FROM items WHERE cube = ? AND id = ?", (cube, mid))
        if op.versions:
            cur.executemany(
                "INSERT INTO versions (cube, id, version, commit_no, doc, vector) VALUES (?, ?, ?, ?, ?, ?)",
                [(cube, m.id, m.version, m.commit, m.model_dump_json(), op.vectors.get((m.id, m.version)))
                 for m in op.versions],
            )
            cur.executemany(
                "INSERT INTO items (cube, id, version) VALUES (?, ?, ?) "
                "ON CONFLICT (cube, id) DO UPDATE SET version = excluded.version "
                "WHERE excluded.version > items.version",
                [(cube, m.id, m.version) for m in op.versions],
            )
        cur.execute("UPDATE cubes SET head = ? WHERE name = ?", (new_head, cube))
        return new_head

    # ------------------------------------------------------------------------------------ reads
    def _get_memories(self, cur: sqlite3.Cursor, op: GetMemories) -> list[Memory | None]:
        found: dict[str, Memory] = {}
        for i in range(0, len(op.ids), _CHUNK):
            chunk = op.ids[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            if op.version is not None:
                sql = f"SELECT doc FROM versions WHERE cube = ? AND version = ? AND id IN ({marks})"
                params: tuple = (op.cube, op.version, *chunk)
            elif op.at_commit is not None:
                sql = (f"SELECT v.doc FROM versions v JOIN (SELECT id, MAX(version) AS mv FROM versions "
                       f"WHERE cube = ? AND commit_no <= ? AND id IN ({marks}) GROUP BY id) m "
                       f"ON v.id = m.id AND v.version = m.mv WHERE v.cube = ?")
                params = (op.cube, op.at_commit, *chunk, op.cube)
            else:
                sql = (f"SELECT v.doc FROM items i JOIN versions v ON v.cube = i.cube AND v.id = i.id "
                       f"AND v.version = i.version WHERE i.cube = ? AND i.id IN ({marks})")
                params = (op.cube, *chunk)
            for (doc,) in cur.execute(sql, params):
                m = Memory.model_validate_json(doc)
                found[m.id] = m
        return [found.get(i) for i in op.ids]

    def _history(self, cur: sqlite3.Cursor, op: History) -> list[Memory]:
        rows = cur.execute("SELECT doc FROM versions WHERE cube = ? AND id = ? ORDER BY version",
                           (op.cube, op.id))
        return [Memory.model_validate_json(d) for (d,) in rows]

    def _scan(self, cur: sqlite3.Cursor, op: Scan) -> list[tuple[Memory, bytes | None]]:
        vec = "v.vector" if op.with_vectors else "NULL"
        params: list[Any] = []
        if op.at_commit is None:
            sql = (f"SELECT v.doc, {vec} FROM items i JOIN versions v ON v.cube = i.cube AND v.id = i.id "
                   f"AND v.version = i.version WHERE i.cube = ?")
            params.append(op.cube)
        else:
            sql = (f"SELECT v.doc, {vec} FROM versions v JOIN (SELECT id, MAX(version) AS mv FROM versions "
                   f"WHERE cube = ? AND commit_no <= ? GROUP BY id) m ON v.id = m.id AND v.version = m.mv "
                   f"WHERE v.cube = ?")
            params += [op.cube, op.at_commit, op.cube]
        if op.ids is not None:
            if not op.ids:
                return []
            sql += f" AND v.id IN ({','.join('?' * len(op.ids))})"
            params += list(op.ids)
        sql += " ORDER BY v.id"
        if op.limit is not None or op.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if op.limit is None else op.limit, op.offset]
        return [(Memory.model_validate_json(d), v) for d, v in cur.execute(sql, params)]

    def _read_log(self, cur: sqlite3.Cursor, op: ReadLog) -> list[LogEntry]:
        sql = "SELECT doc FROM log WHERE cube = ? AND commit_no > ?"
        params: list[Any] = [op.cube, op.after]
        if op.upto is not None:
            sql += " AND commit_no <= ?"
            params.append(op.upto)
        sql += " ORDER BY commit_no"
        if op.limit is not None:
            sql += " LIMIT ?"
            params.append(op.limit)
        return [LogEntry.model_validate_json(d) for (d,) in cur.execute(sql, params)]

    # ---------------------------------------------------------------------------------- records
    def _put_record(self, cur: sqlite3.Cursor, op: PutRecord) -> None:
        if op.value is None:
            cur.execute("DELETE FROM records WHERE namespace = ? AND key = ?", (op.namespace, op.key))
        else:
            cur.execute("INSERT INTO records (namespace, key, doc) VALUES (?, ?, ?) "
                        "ON CONFLICT (namespace, key) DO UPDATE SET doc = excluded.doc",
                        (op.namespace, op.key, json.dumps(op.value)))

    def _get_record(self, cur: sqlite3.Cursor, op: GetRecord) -> dict[str, Any] | None:
        row = cur.execute("SELECT doc FROM records WHERE namespace = ? AND key = ?",
                          (op.namespace, op.key)).fetchone()
        return json.loads(row[0]) if row else None


_HANDLERS = {
    PutCube: SqliteBackend._put_cube,
    GetCube: SqliteBackend._get_cube,
    ListCubes: SqliteBackend._list_cubes,
    DropCube: SqliteBackend._drop_cube,
    Commit: SqliteBackend._commit,
    GetMemories: SqliteBackend._get_memories,
    History: SqliteBackend._history,
    Scan: SqliteBackend._scan,
    ReadLog: SqliteBackend._read_log,
    PutRecord: SqliteBackend._put_record,
    GetRecord: SqliteBackend._get_record,
}


@hookimpl
def memos_register_backends() -> list[type]:
    return [SqliteBackend]
