"""Redis storage backend: the shared store that lets several kernels (processes, cluster nodes) serve one set of
cubes. Semantics match :mod:`kernel_backends.sqlite` exactly; the conformance suite checks both.

Key layout, everything under ``prefix`` (``?prefix=...`` in the URL, default ``memos:``). The cube name in
braces is a Redis Cluster hash tag: every key of one cube lands in one slot, so a commit stays a one-slot
transaction if the store is ever sharded::

    {p}cubes                  SET     cube names
    {p}{<cube>}:meta          HASH    doc (MemCube JSON without head), head
    {p}{<cube>}:log           STREAM  one entry per commit, entry id ``0-<commit>``, field ``e`` = LogEntry JSON
    {p}{<cube>}:cur           HASH    memory id -> current (highest) version
    {p}{<cube>}:ids           ZSET    memory ids, all scored 0: byte order, so scans page like SQLite's ORDER BY
    {p}{<cube>}:mem:<id>      HASH    version -> Memory JSON
    {p}{<cube>}:vec:<id>      HASH    version -> float32 vector bytes
    {p}{<cube>}:cm:<id>       HASH    version -> commit that wrote it (time travel)
    {p}rec:<namespace>        HASH    key -> record JSON
    {p}events                 channel ``PUBLISH {"cube", "commit", "op"}`` after every commit

Why a Stream for the log: commits are dense and append-only, so the stream id *is* the commit number and
``ReadLog`` is one ``XRANGE (0-after 0-upto COUNT n`` (a radix-tree seek, where ``LRANGE`` would walk the
earlier entries); Redis itself refuses an id that does not exceed the last one, a second guard against a gap
or a duplicate commit; and a worker can tail a cube with ``XREAD BLOCK`` without losing entries while it was
down, which pub/sub (fire and forget) cannot give. The ``events`` channel is only the low-latency nudge.

Every op compiles to commands that need no earlier reply (reads that resolve versions first are small Lua
scripts), so a batch runs in order inside one ``MULTI``/``EXEC``: a read sees exactly the batch's earlier
writes, and a read batch is one snapshot in one round trip. A write batch takes two round trips on one
connection: (1) ``WATCH`` the meta key of every cube it writes and read what validation needs (heads, current
versions of the ids written, ids of dropped cubes); (2) having validated every op against a simulated state
(so a batch raising ``Conflict``/``CubeExists``/``CubeNotFound`` sends no write), ``MULTI``, the commands,
``PUBLISH``, ``EXEC``. Every write to a cube rewrites its meta key, so ``EXEC`` aborts if another writer got
in after step 1; the batch is then validated again, where a moved head is a Conflict. If the connection drops
around ``EXEC``, the outcome is looked up (is our log entry there?), never retried blindly.

Durability. Redis acknowledges a write once it is in memory. For "acknowledged = durable" production needs
``appendonly yes`` with ``appendfsync always`` (the reply then follows the fsync) and, for failover,
replicas: ``?wait_replicas=N&wait_timeout_ms=T`` sends ``WAIT N T`` after each write batch and
``?waitaof=1`` sends ``WAITAOF 1 0 T`` (Redis >= 7.2) to confirm the local fsync; a batch that is not
confirmed raises BackendError (it may still have been applied: the outcome is unknown, as with any lost ack).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memos.errors import BackendError, Conflict, CubeExists, CubeNotFound, MemosError
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

DEFAULT_PREFIX = "memos:"
_MAX_ATTEMPTS = 64  # EXEC aborted by other writers this many times in a row: report contention
_LOST = (RedisConnectionError, RedisTimeoutError)

# Memories of one cube in id order: the current version, or the latest written at or before a commit.
# KEYS[1] = <base>cur; ARGV: key base "<prefix>{<cube>}:", at_commit or '', with_vectors '1'/'0', offset,
# limit or '', then the wanted ids sorted by the caller (none: every memory, from the ids ZSET).
# Returns doc[, vector] per memory found, skipping the first ``offset`` found.
_FETCH = """
local base, at, vecs = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = {}
if #ARGV > 5 then
  for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', base .. 'ids', 0, -1)
end
local out, found = {}, 0
for _, id in ipairs(ids) do
  local v = false
  if at == nil then
    v = redis.call('HGET', KEYS[1], id)
  else
    local best = -1
    local cm = redis.call('HGETALL', base .. 'cm:' .. id)
    for i = 1, #cm, 2 do
      local ver = tonumber(cm[i])
      if tonumber(cm[i + 1]) <= at and ver > best then best = ver end
    end
    if best >= 0 then v = string.format('%d', best) end
  end
  if v then
    found = found + 1
    if found > offset then
      out[#out + 1] = redis.call('HGET', base .. 'mem:' .. id, v)
      if vecs then out[#out + 1] = redis.call('HGET', base .. 'vec:' .. id, v) end
      if limit and found - offset >= limit then break end
    end
  end
end
return out
"""

# Every cube's doc and head. KEYS[1] = the cubes SET; ARGV[1] = prefix (meta key as in _Keys.meta).
_LIST_CUBES = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local meta = redis.call('HMGET', ARGV[1] .. '{' .. name .. '}:meta', 'doc', 'head')
  out[#out + 1] = meta[1]
  out[#out + 1] = meta[2]
end
return out
"""

Cmd = tuple[Any, ...]
Decoder = Callable[[list[Any]], Any]


def _redact(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{parts.hostname or ''}{port}", parts.path, "", ""))


class _Keys:
    """Key names, as in the layout above."""

    def __init__(self, prefix: str) -> None:
        self.p, self.cubes, self.events = prefix, f"{prefix}cubes", f"{prefix}events"

    def base(self, cube: str) -> str:
        return f"{self.p}{{{cube}}}:"

    def meta(self, cube: str) -> str:
        return f"{self.base(cube)}meta"

    def per_cube(self, cube: str) -> list[str]:
        return [self.base(cube) + part for part in ("meta", "log", "cur", "ids")]

    def per_memory(self, cube: str, mid: str) -> list[str]:
        return [f"{self.base(cube)}{part}:{mid}" for part in ("mem", "vec", "cm")]

    def record(self, namespace: str) -> str:
        return f"{self.p}rec:{namespace}"


@dataclass
class _CubeSim:
    """What a write batch knows about one cube while it validates its ops in order."""

    exists: bool
    head: int
    cur: dict[str, int] = field(default_factory=dict)  # id -> current version, for the ids the batch writes
    ids: set[str] = field(default_factory=set)  # every stored id (read for dropped cubes only)
    stored: set[tuple[str, int]] = field(default_factory=set)  # (id, version) pairs the batch must not rewrite


class RedisBackend(StorageBackend):
    """Storage on a Redis server, shared by every kernel that opens the same URL and prefix.

    ``url`` is a redis-py URL plus memos options in its query: ``prefix`` (key prefix, default ``memos:``),
    ``wait_replicas``/``wait_timeout_ms`` (WAIT after writes) and ``waitaof`` (WAITAOF after writes).
    """

    name: ClassVar[str] = "redis"
    shared: ClassVar[bool] = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.prefix = query.pop("prefix", DEFAULT_PREFIX)
        try:
            self.wait_replicas = int(query.pop("wait_replicas", 0))
            self.wait_timeout_ms = int(query.pop("wait_timeout_ms", 1000))
            self.waitaof = query.pop("waitaof", "0").lower() in {"1", "true", "yes"}
        except ValueError as exc:
            raise BackendError(self.name, f"bad option in {_redact(url)}: {exc}") from exc
        self.url = _redact(url)
        self.keys = _Keys(self.prefix)
        try:
            self._r = redis.Redis.from_url(urlunsplit(parts._replace(query=urlencode(query, quote_via=quote))))
            self._r.ping()
        except redis.RedisError as exc:
            raise BackendError(self.name, f"cannot reach {self.url}: {exc}") from exc

    def close(self) -> None:
        self._r.close()

    # ------------------------------------------------------------------------------------ batch
    def batch(self, ops: Sequence[Op]) -> list[Any]:
        try:
            if any(isinstance(op, WRITE_OPS) for op in ops):
                return self._write_batch(ops)
            return self._read_batch(ops)
        except redis.RedisError as exc:
            raise BackendError(self.name, str(exc)) from exc

    def _read_batch(self, ops: Sequence[Op]) -> list[Any]:
        plans = [self._plan_read(op) for op in ops]
        cmds = [c for p_cmds, _ in plans for c in p_cmds]
        for attempt in (1, 2):  # reads are idempotent: one retry on a dropped connection
            try:
                with self._connection() as conn:
                    replies = _exchange(conn, [("MULTI",), *cmds, ("EXEC",)] if len(cmds) > 1 else cmds)
                break
            except _LOST:
                if attempt == 2:
                    raise
        if len(cmds) > 1:
            _raise_errors(self.name, replies[:-1])
            replies = replies[-1]
        return _decode(self.name, plans, replies)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        pool = self._r.connection_pool
        conn = pool.get_connection()
        try:
            yield conn
        except MemosError:  # raised between complete exchanges; drop the WATCH a failed validation leaves
            try:
                _exchange(conn, [("UNWATCH",)])
            except _LOST:
                conn.disconnect()
            raise
        except BaseException:
            conn.disconnect()  # whatever was in flight, do not hand the socket to the next batch
            raise
        finally:
            pool.release(conn)

    # ----------------------------------------------------------------------------------- writes
    def _write_batch(self, ops: Sequence[Op]) -> list[Any]:
        for _ in range(_MAX_ATTEMPTS):
            with self._connection() as conn:
                results = self._attempt(conn, ops)
            if results is not None:
                return results
        raise BackendError(self.name, f"gave up after {_MAX_ATTEMPTS} attempts: cubes under heavy contention")

    def _watch(self, conn: Any, ops: Sequence[Op]) -> dict[str, _CubeSim]:
        """WATCH the cubes the batch writes and read what validating it needs, as simulated cube states."""
        k = self.keys
        names = sorted({op.cube.name if isinstance(op, PutCube) else op.entry.cube if isinstance(op, Commit)
                        else op.name for op in ops if isinstance(op, (PutCube, Commit, DropCube))})
        written = {n: list(dict.fromkeys(m.id for op in ops if isinstance(op, Commit) and op.entry.cube == n
                                         for m in op.versions)) for n in names}
        dropped = {op.name for op in ops if isinstance(op, DropCube)}
        cmds: list[Cmd] = []
        for n in names:
            cmds.append(("HGET", k.meta(n), "head"))
            cmds.append(("HMGET", k.base(n) + "cur", *written[n]) if written[n] else ("PING",))
            cmds.append(("HKEYS", k.base(n) + "cur") if n in dropped else ("PING",))
        replies = _exchange(conn, [("WATCH", *(k.meta(n) for n in names))] + cmds)[1:] if names else []
        _raise_errors(self.name, replies)
        sims: dict[str, _CubeSim] = {}
        for i, n in enumerate(names):
            head, cur, ids = replies[3 * i:3 * i + 3]
            sims[n] = _CubeSim(exists=head is not None, head=int(head or 0),
                               cur={m: int(v) for m, v in zip(written[n], cur or []) if v is not None},
                               ids={m.decode() for m in ids} if n in dropped else set())
        # A version above the current one cannot exist (cur is never lowered): only lower ones need a look,
        # which the kernel never writes, so this round trip is for odd callers only.
        doubt = [(op.entry.cube, m.id, m.version) for op in ops if isinstance(op, Commit) for m in op.versions
                 if m.version <= sims[op.entry.cube].cur.get(m.id, 0)]
        found = _exchange(conn, [("HEXISTS", f"{k.base(n)}mem:{mid}", v) for n, mid, v in doubt])
        _raise_errors(self.name, found)
        for (n, mid, v), hit in zip(doubt, found):
            if hit:
                sims[n].stored.add((mid, v))
        return sims

    def _attempt(self, conn: Any, ops: Sequence[Op]) -> list[Any] | None:
        """One WATCH / validate / MULTI..EXEC round; None if another writer made EXEC abort."""
        sims = self._watch(conn, ops)
        results: list[Any] = [None] * len(ops)
        queued: list[Cmd] = []
        reads: list[tuple[int, int, int, Decoder]] = []  # (op index, first reply, reply count, decoder)
        for i, op in enumerate(ops):
            if isinstance(op, WRITE_OPS):
                results[i] = self._plan_write(op, sims, queued)  # raises before anything is sent
            else:
                read_cmds, decoder = self._plan_read(op)
                reads.append((i, len(queued), len(read_cmds), decoder))
                queued += read_cmds
        tail: list[Cmd] = [("EXEC",)]
        if self.wait_replicas:
            tail.append(("WAIT", self.wait_replicas, self.wait_timeout_ms))
        if self.waitaof:
            tail.append(("WAITAOF", 1, 0, self.wait_timeout_ms))
        try:
            replies = _exchange(conn, [("MULTI",), *queued, *tail])
        except _LOST as exc:
            conn.disconnect()
            landed = self._landed(ops)
            if landed:  # applied, reply lost: answer the reads afresh
                for i, *_ in reads:
                    results[i] = self._read_batch([ops[i]])[0]
                return results
            outcome = "was not applied" if landed is False else "may or may not have been applied"
            raise BackendError(self.name, f"connection lost during EXEC; the batch {outcome}: {exc}") from exc
        _raise_errors(self.name, replies[:len(queued) + 2])  # MULTI, QUEUED..., EXEC (EXECABORT: nothing ran)
        executed = replies[len(queued) + 1]
        if executed is None:
            return None  # a watched cube changed after step 1
        for reply in executed:
            if isinstance(reply, Exception):  # only a corrupted layout gets here; MULTI has no rollback
                raise BackendError(self.name, f"a write failed inside EXEC, the others were applied: {reply}")
        self._check_acks(replies[len(queued) + 2:])
        for i, start, count, decoder in reads:
            results[i] = decoder(executed[start:start + count])
        return results

    def _check_acks(self, acks: list[Any]) -> None:
        _raise_errors(self.name, acks)
        if self.wait_replicas and int(acks[0]) < self.wait_replicas:
            raise BackendError(self.name, f"write reached {acks[0]} of {self.wait_replicas} replicas in "
                                          f"{self.wait_timeout_ms} ms; it may not survive a failover")
        if self.waitaof and int(acks[-1][0]) < 1:
            raise BackendError(self.name, f"write not fsynced to the AOF within {self.wait_timeout_ms} ms "
                                          f"(needs appendonly yes)")

    def _landed(self, ops: Sequence[Op]) -> bool | None:
        """After a lost EXEC reply: did the batch apply (None: it has no marker to tell)? MULTI is all or
        nothing, so one commit's log entry or one created cube's doc answers for the whole batch."""
        for op in ops:
            if isinstance(op, Commit):
                log = self.keys.base(op.entry.cube) + "log"
                got = self._r.xrange(log, f"0-{op.entry.commit}", f"0-{op.entry.commit}")
                return bool(got) and got[0][1][b"e"] == op.entry.model_dump_json().encode()
            if isinstance(op, PutCube) and op.create:
                return self._r.hget(self.keys.meta(op.cube.name), "doc") == cube_doc(op.cube).encode()
        return None

    def _plan_write(self, op: Op, sims: dict[str, _CubeSim], q: list[Cmd]) -> Any:
        """Validate one write against the simulated state, queue its commands and return its result."""
        k = self.keys
        if isinstance(op, PutRecord):
            if op.value is None:
                q.append(("HDEL", k.record(op.namespace), op.key))
            else:
                q.append(("HSET", k.record(op.namespace), op.key, json.dumps(op.value)))
            return None
        if isinstance(op, PutCube):
            sim = sims[op.cube.name]
            if sim.exists and op.create:
                raise CubeExists(op.cube.name)
            if not sim.exists:
                q.append(("HSET", k.meta(op.cube.name), "head", 0))
                q.append(("SADD", k.cubes, op.cube.name))
                sim.exists, sim.head = True, 0
            q.append(("HSET", k.meta(op.cube.name), "doc", cube_doc(op.cube)))
            return None
        if isinstance(op, DropCube):
            sim = sims[op.name]
            per_memory = [key for mid in sorted(sim.ids) for key in k.per_memory(op.name, mid)]
            q.append(("UNLINK", *k.per_cube(op.name), *per_memory))
            q.append(("SREM", k.cubes, op.name))
            sims[op.name] = _CubeSim(exists=False, head=0)
            return sim.exists
        assert isinstance(op, Commit)
        return self._plan_commit(op, sims[op.entry.cube], q)

    def _plan_commit(self, op: Commit, sim: _CubeSim, q: list[Cmd]) -> int:
        cube, new_head = op.entry.cube, op.entry.commit
        if not sim.exists:
            raise CubeNotFound(cube)
        if sim.head != op.expected_head or new_head != op.expected_head + 1:
            raise Conflict(cube, op.expected_head, sim.head)
        base = self.keys.base(cube)
        for mid in op.purge:  # before the new versions, as in SQLite: a commit may purge then rewrite an id
            q += [("UNLINK", *self.keys.per_memory(cube, mid)), ("HDEL", base + "cur", mid),
                  ("ZREM", base + "ids", mid)]
            sim.cur.pop(mid, None)
            sim.ids.discard(mid)
            sim.stored = {(i, v) for i, v in sim.stored if i != mid}
        for m in op.versions:  # SQLite's primary key (cube, id, version): a stored version is never rewritten
            if (m.id, m.version) in sim.stored:
                raise BackendError(self.name, f"cube {cube!r}: memory {m.id!r} version {m.version} already exists")
            sim.stored.add((m.id, m.version))
        if op.versions:
            for m in op.versions:
                q.append(("HSET", f"{base}mem:{m.id}", m.version, m.model_dump_json()))
                q.append(("HSET", f"{base}cm:{m.id}", m.version, m.commit))
                vector = op.vectors.get((m.id, m.version))
                if vector is not None:
                    q.append(("HSET", f"{base}vec:{m.id}", m.version, vector))
                sim.cur[m.id] = max(sim.cur.get(m.id, 0), m.version)  # never lowered, as SQLite's upsert
                sim.ids.add(m.id)
            ids = list(dict.fromkeys(m.id for m in op.versions))
            q.append(("HSET", base + "cur", *[x for mid in ids for x in (mid, sim.cur[mid])]))
            q.append(("ZADD", base + "ids", *[x for mid in ids for x in (0, mid)]))
        q.append(("XADD", base + "log", f"0-{new_head}", "e", op.entry.model_dump_json()))
        q.append(("HSET", base + "meta", "head", new_head))
        q.append(("PUBLISH", self.keys.events, json.dumps({"cube": cube, "commit": new_head, "op": op.entry.op})))
        sim.head = new_head
        return new_head

    # ------------------------------------------------------------------------------------ reads
    # Each planner returns the commands answering one read op (none needs an earlier reply, so they can sit
    # inside MULTI) and a decoder of their replies.
    def _plan_read(self, op: Op) -> tuple[list[Cmd], Decoder]:
        planner = _READ_PLANNERS.get(type(op))
        if planner is None:
            raise TypeError(f"unsupported op {type(op).__name__}")
        return planner(self, op)

    def _get_cube(self, op: GetCube) -> tuple[list[Cmd], Decoder]:
        return [("HMGET", self.keys.meta(op.name), "doc", "head")], \
            lambda r: load_cube(*r[0]) if r[0][0] is not None else None

    def _list_cubes(self, op: ListCubes) -> tuple[list[Cmd], Decoder]:
        def decode(r: list[Any]) -> list[MemCube]:
            flat = r[0]
            cubes = (load_cube(flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
            return sorted(cubes, key=lambda c: c.name)
        return [("EVAL", _LIST_CUBES, 1, self.keys.cubes, self.keys.p)], decode

    def _get_memories(self, op: GetMemories) -> tuple[list[Cmd], Decoder]:
        if not op.ids:
            return [], lambda r: []
        wanted = sorted(set(op.ids))
        if op.version is not None:
            cmds: list[Cmd] = [("HGET", f"{self.keys.base(op.cube)}mem:{mid}", op.version) for mid in wanted]
        else:
            cmds = [self._fetch(op.cube, op.at_commit, False, 0, None, wanted)]

        def decode(r: list[Any]) -> list[Memory | None]:
            docs = r if op.version is not None else r[0]
            found = {m.id: m for m in (Memory.model_validate_json(d) for d in docs if d is not None)}
            return [found.get(i) for i in op.ids]
        return cmds, decode

    def _history(self, op: History) -> tuple[list[Cmd], Decoder]:
        def decode(r: list[Any]) -> list[Memory]:
            docs = _as_dict(r[0])
            return [Memory.model_validate_json(docs[v]) for v in sorted(docs, key=int)]
        return [("HGETALL", f"{self.keys.base(op.cube)}mem:{op.id}")], decode

    def _scan(self, op: Scan) -> tuple[list[Cmd], Decoder]:
        if (op.ids is not None and not op.ids) or op.limit == 0:
            return [], lambda r: []
        wanted = sorted(set(op.ids), key=str.encode) if op.ids is not None else None  # the ids ZSET's order

        def decode(r: list[Any]) -> list[tuple[Memory, bytes | None]]:
            flat = r[0]
            if not op.with_vectors:
                return [(Memory.model_validate_json(d), None) for d in flat]
            return [(Memory.model_validate_json(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]
        return [self._fetch(op.cube, op.at_commit, op.with_vectors, op.offset, op.limit, wanted)], decode

    def _fetch(self, cube: str, at_commit: int | None, with_vectors: bool, offset: int, limit: int | None,
               ids: list[str] | None) -> Cmd:
        base = self.keys.base(cube)
        return ("EVAL", _FETCH, 1, base + "cur", base, "" if at_commit is None else at_commit,
                int(with_vectors), offset, "" if limit is None else limit, *(ids or ()))

    def _read_log(self, op: ReadLog) -> tuple[list[Cmd], Decoder]:
        if (op.upto is not None and op.upto <= op.after) or op.limit == 0:
            return [], lambda r: []
        cmd: Cmd = ("XRANGE", self.keys.base(op.cube) + "log", f"(0-{op.after}",
                    "+" if op.upto is None else f"0-{op.upto}")
        if op.limit is not None:
            cmd += ("COUNT", op.limit)
        return [cmd], lambda r: [LogEntry.model_validate_json(_as_dict(fields)[b"e"]) for _, fields in r[0]]

    def _get_record(self, op: GetRecord) -> tuple[list[Cmd], Decoder]:
        return [("HGET", self.keys.record(op.namespace), op.key)], \
            lambda r: json.loads(r[0]) if r[0] is not None else None


def _as_dict(reply: Any) -> dict[bytes, Any]:
    """A hash reply as a dict: RESP3 gives a map, RESP2 a flat list."""
    return reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))


def _exchange(conn: Any, cmds: list[Cmd]) -> list[Any]:
    """Send ``cmds`` in one write and read every reply; error replies are returned, not raised, so the
    connection stays in step with the server."""
    if not cmds:
        return []
    conn.send_packed_command(conn.pack_commands(cmds))
    out: list[Any] = []
    for _ in cmds:
        try:
            out.append(conn.read_response())
        except ResponseError as exc:
            out.append(exc)
    return out


def _raise_errors(backend: str, replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise BackendError(backend, str(reply)) from reply


def _decode(backend: str, plans: list[tuple[list[Cmd], Decoder]], replies: list[Any]) -> list[Any]:
    _raise_errors(backend, replies)
    out, pos = [], 0
    for cmds, decoder in plans:
        out.append(decoder(replies[pos:pos + len(cmds)]))
        pos += len(cmds)
    return out


_READ_PLANNERS: dict[type, Callable[[RedisBackend, Any], tuple[list[Cmd], Decoder]]] = {
    GetCube: RedisBackend._get_cube,
    ListCubes: RedisBackend._list_cubes,
    GetMemories: RedisBackend._get_memories,
    History: RedisBackend._history,
    Scan: RedisBackend._scan,
    ReadLog: RedisBackend._read_log,
    GetRecord: RedisBackend._get_record,
}


@hookimpl
def memos_register_backends() -> list[type]:
    return [RedisBackend]
