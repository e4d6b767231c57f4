"""Storage interfaces: the narrow contract every kernel backend implements.

Modelled on LangGraph's ``BaseStore``: a backend implements one abstract method, :meth:`StorageBackend.batch`,
over small immutable op objects; every convenience method here is built on it. A batch that holds
writes is applied atomically (all or nothing) and is durable when ``batch`` returns; that is what lets
the kernel acknowledge a write. Backends map their driver's exceptions to :class:`memos.errors.BackendError`
(``raise ... from exc``) and raise :class:`memos.errors.Conflict` / :class:`memos.errors.CubeExists`
themselves.

Vectors travel with versions as raw little-endian float32 bytes so a backend never needs numpy, and the
dense index can always be rebuilt from storage alone.

Two other interfaces live here because the kernel depends on them, not on their implementations:
:class:`VectorIndex` (a dense index of one cube, FAISS by default) and :class:`BlobStore` (payload bytes
of activation and parametric memories).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from memos.models import LogEntry, MemCube, Memory

# ------------------------------------------------------------------------------- shared encoding


def cube_doc(cube: MemCube) -> str:
    """A cube as stored by backends: JSON without ``head`` (the head lives beside it, owned by commits)."""
    return cube.model_dump_json(exclude={"head"})


def load_cube(doc: str | bytes, head: int | bytes | str) -> MemCube:
    return MemCube.model_validate_json(doc).model_copy(update={"head": int(head)})


# ---------------------------------------------------------------------------------------------- ops


@dataclass(frozen=True, slots=True)
class PutCube:
    """Create a cube (``create=True``: fails with CubeExists) or replace its owner/acl/policy/description.

    The head is owned by :class:`Commit` and never changed by PutCube.
    """

    cube: MemCube
    create: bool = False


@dataclass(frozen=True, slots=True)
class GetCube:
    name: str


@dataclass(frozen=True, slots=True)
class ListCubes:
    pass


@dataclass(frozen=True, slots=True)
class DropCube:
    """Remove a cube with its log, versions and vectors. Result: True if it existed."""

    name: str


@dataclass(frozen=True, slots=True)
class Commit:
    """Append one log entry and the versions it wrote, advancing the cube head by one.

    ``entry.commit`` must equal ``expected_head + 1``; if the stored head is not ``expected_head`` the
    backend raises :class:`memos.errors.Conflict` and writes nothing. ``vectors`` maps
    ``(memory id, version)`` to float32 bytes. ``purge`` lists memory ids whose every version is
    hard-deleted (the log entry itself is the tombstone). Result: the new head.
    """

    entry: LogEntry
    versions: tuple[Memory, ...] = ()
    vectors: dict[tuple[str, int], bytes] = field(default_factory=dict)
    purge: tuple[str, ...] = ()
    expected_head: int = 0


@dataclass(frozen=True, slots=True)
class GetMemories:
    """Result: a list aligned with ``ids``, each the Memory or None.

    ``version``: that exact version; ``at_commit``: the latest version written at or before that commit;
    neither: the latest version.
    """

    cube: str
    ids: tuple[str, ...]
    version: int | None = None
    at_commit: int | None = None


@dataclass(frozen=True, slots=True)
class History:
    """Result: every stored version of one memory, oldest first (empty if unknown or purged)."""

    cube: str
    id: str


@dataclass(frozen=True, slots=True)
class Scan:
    """Result: list of ``(Memory, vector bytes or None)`` for the latest version of every memory.

    ``at_commit`` reads the cube as it was; ``ids`` restricts the scan; ``with_vectors=False`` skips
    vector bytes; ``offset``/``limit`` page through the items in id order.
    """

    cube: str
    at_commit: int | None = None
    ids: tuple[str, ...] | None = None
    with_vectors: bool = True
    offset: int = 0
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class ReadLog:
    """Result: log entries with ``after < commit <= upto``, in order."""

    cube: str
    after: int = 0
    upto: int | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class PutRecord:
    """Small JSON records outside cubes (API keys, plugin state). ``value=None`` deletes."""

    namespace: str
    key: str
    value: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class GetRecord:
    namespace: str
    key: str


Op = PutCube | GetCube | ListCubes | DropCube | Commit | GetMemories | History | Scan | ReadLog | PutRecord | GetRecord
WRITE_OPS = (PutCube, DropCube, Commit, PutRecord)


class StorageBackend(ABC):
    """A kernel storage backend. Subclasses implement :meth:`batch` (and optionally :meth:`close`)."""

    #: Entry-point name of the backend ("sqlite", "redis", "postgres" ...).
    name: ClassVar[str] = "abstract"
    #: Whether two processes may open the same store at once (SQLite: no, servers: yes).
    shared: ClassVar[bool] = False

    @abstractmethod
    def batch(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` in order and return one result per op; writes in one batch are atomic."""

    async def abatch(self, ops: Sequence[Op]) -> list[Any]:
        return await asyncio.to_thread(self.batch, ops)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # ---- conveniences built on batch -----------------------------------------------------------
    def put_cube(self, cube: MemCube, *, create: bool = False) -> None:
        self.batch([PutCube(cube, create)])

    def get_cube(self, name: str) -> MemCube | None:
        return self.batch([GetCube(name)])[0]

    def list_cubes(self) -> list[MemCube]:
        return self.batch([ListCubes()])[0]

    def drop_cube(self, name: str) -> bool:
        return self.batch([DropCube(name)])[0]

    def commit(self, op: Commit) -> int:
        return self.batch([op])[0]

    def get_memories(self, cube: str, ids: Iterable[str], *, version: int | None = None,
                     at_commit: int | None = None) -> list[Memory | None]:
        return self.batch([GetMemories(cube, tuple(ids), version, at_commit)])[0]

    def history(self, cube: str, memory_id: str) -> list[Memory]:
        return self.batch([History(cube, memory_id)])[0]

    def scan(self, cube: str, **kwargs: Any) -> list[tuple[Memory, bytes | None]]:
        return self.batch([Scan(cube, **kwargs)])[0]

    def read_log(self, cube: str, after: int = 0, upto: int | None = None,
                 limit: int | None = None) -> list[LogEntry]:
        return self.batch([ReadLog(cube, after, upto, limit)])[0]

    def put_record(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        self.batch([PutRecord(namespace, key, value)])

    def get_record(self, namespace: str, key: str) -> dict[str, Any] | None:
        return self.batch([GetRecord(namespace, key)])[0]


# ------------------------------------------------------------------------------------ dense index


@runtime_checkable
class VectorIndex(Protocol):
    """Dense inner-product index over int64 labels (unit vectors, so IP = cosine)."""

    dim: int

    def add(self, labels: Any, vectors: Any) -> None: ...

    def search(self, query: Any, k: int, allowed: Any | None = None) -> tuple[Any, Any]:
        """Return ``(labels, scores)`` of the best ``k``; ``allowed`` is a bool mask over labels."""

    def __len__(self) -> int: ...

    def save(self, path: str) -> None: ...


class VectorIndexFactory(Protocol):
    def create(self, dim: int, expected_size: int = 0) -> VectorIndex: ...

    def load(self, path: str) -> VectorIndex: ...


# ------------------------------------------------------------------------------------- blob store


class BlobStore(ABC):
    """Content-addressed payload bytes (KV caches, adapters). URIs are opaque to callers."""

    name: ClassVar[str] = "abstract"

    @abstractmethod
    def put_file(self, cube: str, src_path: str) -> dict[str, Any]:
        """Copy a finished file in; return ``{"uri", "bytes", "sha256"}`` (durable on return)."""

    @abstractmethod
    def local_path(self, uri: str) -> str:
        """A local file path to read the blob from (downloading it first if remote)."""

    @abstractmethod
    def delete(self, uri: str) -> None: ...


__all__ = sorted(
    [
        "BlobStore",
        "Commit",
        "DropCube",
        "GetCube",
        "GetMemories",
        "GetRecord",
        "History",
        "ListCubes",
        "Op",
        "PutCube",
        "PutRecord",
        "ReadLog",
        "Scan",
        "StorageBackend",
        "VectorIndex",
        "VectorIndexFactory",
        "WRITE_OPS",
        "cube_doc",
        "load_cube",
    ]
)
