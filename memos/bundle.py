"""Portable cube bundles: ``memos export`` / ``memos import``.

A bundle is a zip file::

    manifest.json        {"format": "memos-bundle", "format_version": 1, "cube", "head", "embedder",
                          "embedder_model",
                          "dim", "files": {name: sha256}}
    cube.json            the MemCube (owner, acl, policy, description)
    log.jsonl            every commit, in order (tombstones of purged memories included)
    versions.jsonl       every stored version of every memory
    vectors.safetensors  float32 "vectors" (row i = the main vector of versions.jsonl line i), float32 "parts"
                         (the part vectors of every version, in order) and int32 "part_counts" (row i = how
                         many parts line i has; see memos.retrieval.parts) - no pickle
    payloads/<sha256>    payload bytes of activation / parametric memories

Import replays the log commit by commit, so ids, versions, commit numbers and history are identical to
the source cube. Every file is checked against the manifest's sha256 first: a damaged bundle raises
:class:`memos.errors.CorruptPayload` and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from memos.embed import embedder_identity
from memos.errors import CorruptPayload, CubeExists, InvalidInput
from memos.kernel import acl
from memos.models import LogEntry, MemCube, Memory, validate_cube_name
from memos.retrieval.parts import pack, unpack
from memos.storage import Commit, PutCube
from memos.telemetry import span

if TYPE_CHECKING:
    from memos.kernel import Kernel

FORMAT = "memos-bundle"
FORMAT_VERSION = 1


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_cube(kernel: Kernel, name: str, path: str, *, principal: str | None = None) -> dict[str, Any]:
    from safetensors.numpy import save

    with span("export", cube=name):
        cube = kernel.get_cube(name, principal=principal)
        acl.check(cube, principal, "read")
        log = kernel.backend.read_log(name)
        head = log[-1].commit if log else 0
        current = kernel.backend.scan(name, with_vectors=False)
        versions: list[Memory] = []
        for m, _ in current:
            versions.extend(kernel.backend.history(name, m.id))
        versions.sort(key=lambda v: (v.commit, v.id, v.version))
        vecs, parts, counts = _version_vectors(kernel, name, versions)
        files: dict[str, bytes] = {
            "cube.json": cube.model_copy(update={"head": head}).model_dump_json(indent=2).encode(),
            "log.jsonl": "".join(e.model_dump_json() + "\n" for e in log).encode(),
            "versions.jsonl": "".join(v.model_dump_json() + "\n" for v in versions).encode(),
            "vectors.safetensors": save({"vectors": vecs, "parts": parts, "part_counts": counts},
                                        metadata={"embedder": kernel.settings.embedder.name}),
        }
        for v in versions:
            if v.payload is not None:
                with open(kernel.blobs.local_path(v.payload.uri), "rb") as fh:
                    files[f"payloads/{v.payload.sha256}"] = fh.read()
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "cube": name, "head": head,
                    "embedder": kernel.settings.embedder.name, "dim": int(vecs.shape[1]),
                    "embedder_model": _embedder_model(kernel),
                    "memories": len(current), "versions": len(versions),
                    "files": {fname: _sha(data) for fname, data in files.items()}}
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".memos.tmp")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("manifest.json", json.dumps(manifest, indent=2))
                for fname, data in files.items():
                    zf.writestr(fname, data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return {"path": os.path.abspath(path), **{k: manifest[k] for k in ("cube", "head", "memories", "versions")}}


def _version_vectors(kernel: Kernel, name: str, versions: list[Memory]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(main vectors, part vectors, part counts) of every version: stored blobs, re-embedding only
    versions stored without one."""
    dim = int(kernel.embedder.dim)
    blobs: list[bytes | None] = [None] * len(versions)
    current = {m.id: (m.version, v) for m, v in kernel.backend.scan(name, with_vectors=True)}
    missing = []
    for i, v in enumerate(versions):
        cur = current.get(v.id)
        if cur is not None and cur[0] == v.version and cur[1] is not None:
            blobs[i] = cur[1]
        else:
            missing.append(i)
    if missing:
        fresh = kernel._embed([versions[i].text for i in missing], [versions[i].context for i in missing])
        for i, blob in zip(missing, fresh):
            blobs[i] = blob
    unpacked = [unpack(b, dim) for b in blobs]
    mains = np.stack([m for m, _ in unpacked]) if unpacked else np.zeros((0, dim), dtype=np.float32)
    part_list = [p for _, p in unpacked if p is not None]
    parts = np.concatenate(part_list) if part_list else np.zeros((0, dim), dtype=np.float32)
    counts = np.array([0 if p is None else len(p) for _, p in unpacked], dtype=np.int32)
    return mains, parts, counts


def _read_bundle(path: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    if not os.path.exists(path):
        raise InvalidInput(f"no bundle at {path!r}", field="path")
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
            files = {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise CorruptPayload(path, f"not a memos bundle ({exc})") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CorruptPayload(path, f"unsupported bundle format {manifest.get('format')!r}")
    for fname, sha in manifest.get("files", {}).items():
        if fname not in files:
            raise CorruptPayload(path, f"{fname} is missing")
        if _sha(files[fname]) != sha:
            raise CorruptPayload(path, f"{fname} does not match its sha256")
    return manifest, files


def import_cube(kernel: Kernel, path: str, *, name: str | None = None, principal: str | None = None) -> MemCube:
    from safetensors.numpy import load

    with span("import", cube=name):
        manifest, files = _read_bundle(path)
        try:
            cube = MemCube.model_validate_json(files["cube.json"])
            log = [LogEntry.model_validate_json(line) for line in files["log.jsonl"].splitlines() if line]
            versions = [Memory.model_validate_json(line) for line in files["versions.jsonl"].splitlines() if line]
            tensors = load(files["vectors.safetensors"])
            vectors = tensors["vectors"]
        except (ValueError, KeyError) as exc:
            raise CorruptPayload(path, f"unreadable bundle content ({exc})") from exc
        target = validate_cube_name(name or cube.name)
        if principal is not None and cube.owner != principal:
            cube = cube.model_copy(update={"owner": principal})
        if kernel.backend.get_cube(target) is not None:
            raise CubeExists(target)
        if len(vectors) != len(versions):
            raise CorruptPayload(path, "vectors and versions disagree in length")
        dim = int(kernel.embedder.dim)
        if manifest.get("embedder") != kernel.settings.embedder.name or vectors.shape[1] != dim \
                or manifest.get("embedder_model", _embedder_model(kernel)) != _embedder_model(kernel) \
                or "part_counts" not in tensors:  # another embedder, or a bundle written before parts
            blobs = kernel._embed([v.text for v in versions], [v.context for v in versions])
        else:
            blobs = _blobs(vectors, tensors.get("parts"), tensors["part_counts"], path)
        # Payload blobs first: a version is only committed once its bytes are durable.
        uris: dict[str, str] = {}
        for fname, data in files.items():
            if fname.startswith("payloads/"):
                with tempfile.NamedTemporaryFile(delete=False) as tmp:
                    tmp.write(data)
                try:
                    uris[fname.split("/", 1)[1]] = kernel.blobs.put_file(target, tmp.name)["uri"]
                finally:
                    os.unlink(tmp.name)
        by_commit: dict[int, list[int]] = defaultdict(list)
        for i, v in enumerate(versions):
            by_commit[v.commit].append(i)

        def retarget(m: Memory) -> Memory:
            upd: dict[str, Any] = {"cube": target}
            if m.payload is not None:
                upd["payload"] = m.payload.model_copy(update={"uri": uris[m.payload.sha256]})
            return m.model_copy(update=upd)

        new_cube = cube.model_copy(update={"name": target, "head": 0})
        kernel.backend.put_cube(new_cube, create=True)
        try:
            head = 0
            for entry in log:
                idx = by_commit.get(entry.commit, [])
                op = Commit(entry=entry.model_copy(update={"cube": target}),
                            versions=tuple(retarget(versions[i]) for i in idx),
                            vectors={(versions[i].id, versions[i].version): blobs[i] for i in idx},
                            expected_head=head)
                head = kernel.backend.batch([op])[0]
        except BaseException:
            kernel.backend.drop_cube(target)
            raise
        kernel.backend.batch([PutCube(new_cube)])
        return kernel.get_cube(target, principal=principal)


def _blobs(mains: np.ndarray, parts: np.ndarray | None, counts: np.ndarray, path: str) -> list[bytes]:
    """Stored vector blobs from a bundle's main vectors, part vectors and part counts."""
    if parts is None or counts.shape != (len(mains),) or (counts < 0).any() or int(counts.sum()) != len(parts) \
            or (len(parts) and parts.shape[1] != mains.shape[1]):
        raise CorruptPayload(path, "part vectors and part counts disagree")
    out, at = [], 0
    for main, c in zip(mains, counts.tolist()):
        out.append(pack(main, parts[at:at + c] if c else None))
        at += c
    return out


def _embedder_model(kernel: Kernel) -> str:
    return str(embedder_identity(kernel.settings.embedder.name, kernel.embedder)["model"])
