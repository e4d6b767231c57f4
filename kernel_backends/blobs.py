"""File blob store: payload bytes (KV caches, adapters) content-addressed under ``<home>/blobs``.

A blob is written to a temporary file, fsynced, then renamed to ``<cube>/<sha256>``; its URI is
``blob://<cube>/<sha256>``. Identical payloads share one file. Blobs are immutable: a new version of a
memory is a new blob, which is what makes copy-on-read and rollback of payloads trivial.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from memos.errors import CorruptPayload, InvalidInput
from memos.hookspecs import hookimpl
from memos.models import validate_cube_name
from memos.storage import BlobStore

_SCHEME = "blob://"


def file_sha256(path: str | os.PathLike[str]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class FileBlobStore(BlobStore):
    name: ClassVar[str] = "file"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put_file(self, cube: str, src_path: str) -> dict[str, Any]:
        validate_cube_name(cube)
        sha, size = file_sha256(src_path)
        dest_dir = self.root / cube
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / sha
        if not dest.exists():
            fd, tmp = tempfile.mkstemp(dir=dest_dir, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out, open(src_path, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return {"uri": f"{_SCHEME}{cube}/{sha}", "bytes": size, "sha256": sha}

    def local_path(self, uri: str) -> str:
        if not uri.startswith(_SCHEME):
            raise InvalidInput(f"not a blob URI: {uri!r}", field="uri")
        cube, _, sha = uri[len(_SCHEME):].partition("/")
        validate_cube_name(cube)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise InvalidInput(f"malformed blob URI: {uri!r}", field="uri")
        path = self.root / cube / sha
        if not path.exists():
            raise CorruptPayload(str(path), "blob file is missing")
        return str(path)

    def delete(self, uri: str) -> None:
        path = Path(self.local_path(uri))
        path.unlink(missing_ok=True)


@hookimpl
def memos_register_blob_stores() -> list[type]:
    return [FileBlobStore]
