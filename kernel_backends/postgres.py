"""PostgreSQL storage backend (psycopg 3): the shared store for kernels that already run on PostgreSQL.

Schema and semantics follow :mod:`kernel_backends.sqlite` (docs as JSONB, vectors as BYTEA). Tables live in
one schema, ``?schema=NAME`` in the URL (default ``memos``), created with its tables on first use under an
advisory lock, so concurrent first starts do not race on ``CREATE TABLE IF NOT EXISTS``. Key columns use the
``"C"`` collation: ``ORDER BY id`` must be byte order, as in SQLite, whatever the database's locale.

A write batch is one READ COMMITTED transaction; a commit locks its cube row (``SELECT ... FOR UPDATE``), so
writers to one cube queue on that row and the second sees the first's head, which is a Conflict. A read
batch of several ops runs in one REPEATABLE READ READ ONLY transaction (one snapshot); a single read op is
one statement, already a snapshot. The versions of a commit go in with one pipelined ``executemany``, one
round trip whatever the size. With PostgreSQL's default ``synchronous_commit = on`` a batch is on disk
(WAL fsynced) when it returns. Every statement is parameterised; table names are constants.

JSONB cannot hold the character U+0000, which SQLite and Redis store: a memory whose text or metadata has
one fails here with a BackendError (the batch writes nothing).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

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

DEFAULT_SCHEMA = "memos"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS cubes (
    name TEXT COLLATE "C" PRIMARY KEY,
    head BIGINT NOT NULL DEFAULT 0,
    doc  JSONB NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    cube      TEXT COLLATE "C" NOT NULL,
    commit_no BIGINT NOT NULL,
    doc       JSONB NOT NULL,
    PRIMARY KEY (cube, commit_no)
);
CREATE TABLE IF NOT EXISTS versions (
    cube      TEXT COLLATE "C" NOT NULL,
    id        TEXT COLLATE "C" NOT NULL,
    version   INTEGER NOT NULL,
    commit_no BIGINT NOT NULL,
    doc       JSONB NOT NULL,
    vector    BYTEA,
    PRIMARY KEY (cube, id, version)
);
CREATE INDEX IF NOT EXISTS versions_commit ON versions (cube, commit_no);
CREATE TABLE IF NOT EXISTS items (
    cube    TEXT COLLATE "C" NOT NULL,
    id      TEXT COLLATE "C" NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (cube, id)
);
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT COLLATE "C" NOT NULL,
    key       TEXT COLLATE "C" NOT NULL,
    doc       JSONB NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""

# the latest version of each memory written at or before a commit (%s: cube, commit [, ids])
_AT_COMMIT = ("SELECT DISTINCT ON (id) id, version FROM versions WHERE cube = %s AND commit_no <= %s {ids} "
              "ORDER BY id, version DESC")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{parts.hostname or ''}{port}", parts.path, "", ""))


class _Pool:
    """A few connections handed out one per batch; a connection left broken or mid-transaction is closed."""

    def __init__(self, connect: Any, size: int) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if self._closed:
            raise BackendError("postgres", "the backend is closed")
        self._slots.acquire()
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            try:
                yield conn
            finally:
                if self._closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.close()
                else:
                    self._idle.put(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class PostgresBackend(StorageBackend):
    """Storage in a PostgreSQL schema, shared by every kernel that opens the same URL.

    ``url`` is a libpq URL plus memos options in its query: ``schema`` (default ``memos``) and
    ``pool_size`` (connections, default 4).
    """

    name: ClassVar[str] = "postgres"
    shared: ClassVar[bool] = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.schema = query.pop("schema", DEFAULT_SCHEMA)
        if not _SCHEMA_RE.match(self.schema):
            raise BackendError(self.name, f"schema {self.schema!r}: use [a-z_][a-z0-9_]*, at most 63 characters")
        try:
            size = int(query.pop("pool_size", 4))
        except ValueError as exc:
            raise BackendError(self.name, f"pool_size: {exc}") from exc
        query.setdefault("connect_timeout", "10")
        self.url = _redact(url)
        self._conninfo = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
        self._pool = _Pool(self._open, max(1, size))
        try:
            with self._pool.connection() as conn:
                self._create_schema(conn)
        except psycopg.Error as exc:
            raise BackendError(self.name, f"cannot open {self.url} (schema {self.schema}): {exc}") from exc

    def _open(self) -> psycopg.Connection:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        return conn

    def _create_schema(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"memos-schema:{self.schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------------------------ batch
    def batch(self, ops: Sequence[Op]) -> list[Any]:
        writes = any(isinstance(op, WRITE_OPS) for op in ops)
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                if not writes and len(ops) == 1:
                    return [self._run(cur, ops[0])]  # one statement: its own snapshot, no BEGIN/COMMIT trip
                cur.execute("BEGIN" if writes else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    results = [self._run(cur, op) for op in ops]
                except BaseException:
                    if not conn.broken:
                        cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
                return results
        except psycopg.Error as exc:
            raise BackendError(self.name, str(exc).strip()) from exc

    def _run(self, cur: psycopg.Cursor, op: Op) -> Any:
        handler = _HANDLERS.get(type(op))
        if handler is None:
            raise TypeError(f"unsupported op {type(op).__name__}")
        return handler(self, cur, op)

    # ------------------------------------------------------------------------------------ cubes
    def _put_cube(self, cur: psycopg.Cursor, op: PutCube) -> None:
        if op.create:
            cur.execute("INSERT INTO cubes (name, head, doc) VALUES (%s, 0, %s::jsonb) ON CONFLICT (name) DO NOTHING",
                        (op.cube.name, cube_doc(op.cube)))
            if cur.rowcount == 0:
                raise CubeExists(op.cube.name)
        else:
            cur.execute("INSERT INTO cubes (name, head, doc) VALUES (%s, 0, %s::jsonb) "
                        "ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc", (op.cube.name, cube_doc(op.cube)))

    def _get_cube(self, cur: psycopg.Cursor, op: GetCube) -> MemCube | None:
        row = cur.execute("SELECT doc::text, head FROM cubes WHERE name = %s", (op.name,)).fetchone()
        return load_cube(row[0], row[1]) if row else None

    def _list_cubes(self, cur: psycopg.Cursor, op: ListCubes) -> list[MemCube]:
        return [load_cube(d, h) for d, h in cur.execute("SELECT doc::text, head FROM cubes ORDER BY name")]

    def _drop_cube(self, cur: psycopg.Cursor, op: DropCube) -> bool:
        # the cubes row first: it is the lock a concurrent commit holds or waits on
        existed = cur.execute("DELETE FROM cubes WHERE name = %s", (op.name,)).rowcount > 0
        for table in ("log", "versions", "items"):
            cur.execute(sql.SQL("DELETE FROM {} WHERE cube = %s").format(sql.Identifier(table)), (op.name,))
        return existed

    # ----------------------------------------------------------------------------------- commit
    def _commit(self, cur: psycopg.Cursor, op: Commit) -> int:
        cube = op.entry.cube
        row = cur.execute("SELECT head FROM cubes WHERE name = %s FOR UPDATE", (cube,)).fetchone()
        if row is None:
            raise CubeNotFound(cube)
        if row[0] != op.expected_head or op.entry.commit != op.expected_head + 1:
            raise Conflict(cube, op.expected_head, row[0])
        new_head = op.entry.commit
        cur.execute("INSERT INTO log (cube, commit_no, doc) VALUES (%s, %s, %s::jsonb)",
                    (cube, new_head, op.entry.model_dump_json()))
        if op.purge:
            purge = list(op.purge)
            cur.execute("DELETE FROM versions WHERE cube = %s AND id = ANY(%s)", (cube, purge))
            cur.execute("DELETE FROM items WHERE cube = %s AND id = ANY(%s)", (cube, purge))
        if op.versions:
            vs = op.versions
            # executemany runs in pipeline mode (one round trip); vectors go as binary (%b): adapting a
            # bytea[] array for unnest() costs ~7x more client time
            cur.executemany(
                "INSERT INTO versions (cube, id, version, commit_no, doc, vector) VALUES (%s, %s, %s, %s, %s::jsonb, %b)",
                [(cube, m.id, m.version, m.commit, m.model_dump_json(), op.vectors.get((m.id, m.version)))
                 for m in vs])
            latest: dict[str, int] = {}
            for m in vs:  # ON CONFLICT cannot touch one row twice in a statement: fold per id first
                latest[m.id] = max(latest.get(m.id, 0), m.version)
            cur.execute(
                "INSERT INTO items (cube, id, version) SELECT %s, i, v FROM unnest(%s::text[], %s::int[]) AS t(i, v) "
                "ON CONFLICT (cube, id) DO UPDATE SET version = EXCLUDED.version "
                "WHERE EXCLUDED.version > items.version",
                (cube, list(latest), list(latest.values())))
        cur.execute("UPDATE cubes SET head = %s WHERE name = %s", (new_head, cube))
        return new_head

    # ------------------------------------------------------------------------------------ reads
    def _get_memories(self, cur: psycopg.Cursor, op: GetMemories) -> list[Memory | None]:
        ids = list(dict.fromkeys(op.ids))
        if op.version is not None:
            rows = cur.execute("SELECT doc::text FROM versions WHERE cube = %s AND version = %s AND id = ANY(%s)",
                               (op.cube, op.version, ids))
        elif op.at_commit is not None:
            rows = cur.execute(
                f"SELECT v.doc::text FROM ({_AT_COMMIT.format(ids='AND id = ANY(%s)')}) m "
                "JOIN versions v ON v.cube = %s AND v.id = m.id AND v.version = m.version",
                (op.cube, op.at_commit, ids, op.cube))
        else:
            rows = cur.execute(
                "SELECT v.doc::text FROM items i JOIN versions v ON v.cube = i.cube AND v.id = i.id "
                "AND v.version = i.version WHERE i.cube = %s AND i.id = ANY(%s)", (op.cube, ids))
        found = {m.id: m for m in (Memory.model_validate_json(d) for (d,) in rows)}
        return [found.get(i) for i in op.ids]

    def _history(self, cur: psycopg.Cursor, op: History) -> list[Memory]:
        rows = cur.execute("SELECT doc::text FROM versions WHERE cube = %s AND id = %s ORDER BY version",
                           (op.cube, op.id))
        return [Memory.model_validate_json(d) for (d,) in rows]

    def _scan(self, cur: psycopg.Cursor, op: Scan) -> list[tuple[Memory, bytes | None]]:
        if op.ids is not None and not op.ids:
            return []
        vec = "v.vector" if op.with_vectors else "NULL::bytea"
        ids_param: list[Any] = [] if op.ids is None else [list(op.ids)]
        if op.at_commit is None:
            query = (f"SELECT v.doc::text, {vec} FROM items m JOIN versions v ON v.cube = m.cube AND v.id = m.id "
                     f"AND v.version = m.version WHERE m.cube = %s {'' if op.ids is None else 'AND m.id = ANY(%s)'}")
            params: list[Any] = [op.cube, *ids_param]
        else:
            inner = _AT_COMMIT.format(ids="" if op.ids is None else "AND id = ANY(%s)")
            query = (f"SELECT v.doc::text, {vec} FROM ({inner}) m "
                     f"JOIN versions v ON v.cube = %s AND v.id = m.id AND v.version = m.version")
            params = [op.cube, op.at_commit, *ids_param, op.cube]
        query += " ORDER BY m.id LIMIT %s OFFSET %s"  # LIMIT NULL = no limit
        params += [op.limit, op.offset]
        return [(Memory.model_validate_json(d), v) for d, v in cur.execute(query, params)]

    def _read_log(self, cur: psycopg.Cursor, op: ReadLog) -> list[LogEntry]:
        query = "SELECT doc::text FROM log WHERE cube = %s AND commit_no > %s"
        params: list[Any] = [op.cube, op.after]
        if op.upto is not None:
            query += " AND commit_no <= %s"
            params.append(op.upto)
        rows = cur.execute(query + " ORDER BY commit_no LIMIT %s", [*params, op.limit])
        return [LogEntry.model_validate_json(d) for (d,) in rows]

    # ---------------------------------------------------------------------------------- records
    def _put_record(self, cur: psycopg.Cursor, op: PutRecord) -> None:
        if op.value is None:
            cur.execute("DELETE FROM records WHERE namespace = %s AND key = %s", (op.namespace, op.key))
        else:
            cur.execute("INSERT INTO records (namespace, key, doc) VALUES (%s, %s, %s) "
                        "ON CONFLICT (namespace, key) DO UPDATE SET doc = EXCLUDED.doc",
                        (op.namespace, op.key, Jsonb(op.value)))

    def _get_record(self, cur: psycopg.Cursor, op: GetRecord) -> dict[str, Any] | None:
        row = cur.execute("SELECT doc FROM records WHERE namespace = %s AND key = %s",
                          (op.namespace, op.key)).fetchone()
        return row[0] if row else None


_HANDLERS = {
    PutCube: PostgresBackend._put_cube,
    GetCube: PostgresBackend._get_cube,
    ListCubes: PostgresBackend._list_cubes,
    DropCube: PostgresBackend._drop_cube,
    Commit: PostgresBackend._commit,
    GetMemories: PostgresBackend._get_memories,
    History: PostgresBackend._history,
    Scan: PostgresBackend._scan,
    ReadLog: PostgresBackend._read_log,
    PutRecord: PostgresBackend._put_record,
    GetRecord: PostgresBackend._get_record,
}


@hookimpl
def memos_register_backends() -> list[type]:
    return [PostgresBackend]
