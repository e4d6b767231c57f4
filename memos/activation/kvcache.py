"""KV cache value objects and their on-disk format (safetensors, never pickle).

A :class:`KVCache` is the attention key/value state a model produced for a token prefix. It is
only meaningful for the exact model and tokenizer that produced it, so it carries a
:class:`ModelFingerprint`; loading it for another fingerprint raises :class:`ModelMismatch`.

File layout (``format = "safetensors-kv"``, version 1): one safetensors file whose tensors are
``k.<layer>`` and ``v.<layer>``, each ``[n_kv_heads, tokens, head_dim]`` (no batch axis), and whose
string metadata holds JSON:

=================  ====================================================================
``memos.format``    ``"safetensors-kv"``
``memos.version``   ``"1"``
``fingerprint``     the model fingerprint (JSON object)
``token_ids``       the prefix token ids (JSON list of ints)
``tokens_sha256``   :func:`token_ids_sha256` of ``token_ids``
``data_sha256``     sha256 over the tensors' raw bytes in layer order, k then v
=================  ====================================================================

``data_sha256`` lets :func:`load_kv` detect flipped bytes even when the caller has no file-level
sha256 to check against; when it has one, the file hash covers everything and the inner hash is
skipped to keep load (and so time-to-first-token) short.

Importing this module does not import torch; torch and safetensors load on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from memos.engines.kv import KVCache, ModelFingerprint, _shape_problem, token_ids_sha256
from memos.engines.vllm import PREFIX_FORMAT, PrefixHandle  # no vllm import: value object only
from memos.errors import CorruptPayload, ModelMismatch

if TYPE_CHECKING:
    import torch

FORMAT = "safetensors-kv"
FORMAT_VERSION = "1"


def _data_sha256(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> str:
    h = hashlib.sha256()
    for k, v in layers:
        for t in (k, v):
            # Hash the raw little-endian bytes; numpy has no bfloat16, so view as bytes first.
            h.update(t.detach().cpu().contiguous().view(-1).view(_uint8()).numpy().data)
    return h.hexdigest()


def _uint8() -> Any:
    import torch

    return torch.uint8


def save_kv(cache: KVCache, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``cache`` to ``path`` atomically (temp file, fsync, rename) and describe it.

    Returns the payload record the kernel stores with the memory: ``{"format": "safetensors-kv",
    "bytes", "sha256", "tokens", "tokens_sha256", "model"}`` where ``sha256`` is of the whole file
    and ``model`` is the fingerprint as a dict. An existing file at ``path`` is replaced whole.
    """
    from safetensors.torch import save

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for i, (k, v) in enumerate(cache.layers):
        tensors[f"k.{i}"] = k.detach().cpu().contiguous()
        tensors[f"v.{i}"] = v.detach().cpu().contiguous()
    metadata = {
        "memos.format": FORMAT,
        "memos.version": FORMAT_VERSION,
        "fingerprint": cache.fingerprint.to_json(),
        "token_ids": json.dumps(list(cache.token_ids), separators=(",", ":")),
        "tokens_sha256": cache.tokens_sha256,
        "data_sha256": _data_sha256(cache.layers),
    }
    # Serialise to memory first: the file hash then costs no second read, at the price of holding
    # the payload twice for a moment (tens of MB for a few thousand tokens of a small model).
    data = save(tensors, metadata=metadata)
    _atomic_write(path, data)
    return {
        "format": FORMAT,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "tokens": cache.tokens,
        "tokens_sha256": cache.tokens_sha256,
        "model": cache.fingerprint.model_dump(),
    }


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    # Persist the rename itself, so a crash cannot leave the name pointing nowhere.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_kv(path: str | os.PathLike[str], expected: ModelFingerprint, sha256: str | None = None) -> KVCache:
    """Read a cache written by :func:`save_kv`, checking it before anything uses it.

    Args:
        path: the payload file.
        expected: fingerprint of the model that will use the cache.
        sha256: the file hash recorded at save time, if known; checked first.

    Raises:
        CorruptPayload: missing, truncated or malformed file, or a hash that does not match.
        ModelMismatch: the cache was computed by a model with another fingerprint.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptPayload(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise CorruptPayload(str(path), "sha256 of file does not match the recorded hash")

    meta = _read_metadata(path, data)
    if meta.get("memos.format") != FORMAT or meta.get("memos.version") != FORMAT_VERSION:
        raise CorruptPayload(
            str(path), f"not a {FORMAT} v{FORMAT_VERSION} file (format={meta.get('memos.format')!r})"
        )
    try:
        got = ModelFingerprint.model_validate_json(meta["fingerprint"])
        token_ids = json.loads(meta["token_ids"])
    except (KeyError, ValueError, ValidationError) as exc:
        raise CorruptPayload(str(path), f"bad metadata: {exc}") from exc
    if got != expected:
        raise ModelMismatch(expected, got)
    if not isinstance(token_ids, list) or not all(isinstance(t, int) for t in token_ids):
        raise CorruptPayload(str(path), "token_ids is not a list of integers")
    if token_ids_sha256(token_ids) != meta.get("tokens_sha256"):
        raise CorruptPayload(str(path), "token ids do not match tokens_sha256")

    layers = _read_tensors(path, data, got.n_layers)
    problem = _shape_problem(layers, got, len(token_ids))
    if problem:
        raise CorruptPayload(str(path), problem)
    if sha256 is None and _data_sha256(layers) != meta.get("data_sha256"):
        raise CorruptPayload(str(path), "tensor data does not match data_sha256")
    return KVCache(layers=layers, token_ids=tuple(token_ids), fingerprint=got)


def _read_metadata(path: Path, data: bytes) -> dict[str, str]:
    # Parse the safetensors header ourselves: the library only exposes metadata for files, and we
    # already hold the bytes. Layout: u64 little-endian header length, then that much JSON.
    if len(data) < 8:
        raise CorruptPayload(str(path), f"truncated: {len(data)} bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CorruptPayload(str(path), f"truncated: header wants {n} bytes, file has {len(data) - 8}")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptPayload(str(path), f"header is not JSON: {exc}") from exc
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise CorruptPayload(str(path), "no metadata in header")
    return meta


def _read_tensors(path: Path, data: bytes, n_layers: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except SafetensorError as exc:
        raise CorruptPayload(str(path), f"unreadable tensors: {exc}") from exc
    expected_names = {f"{kv}.{i}" for i in range(n_layers) for kv in "kv"}
    if set(tensors) != expected_names:
        raise CorruptPayload(str(path), f"expected tensors k.0..v.{n_layers - 1}, found {len(tensors)}")
    return tuple((tensors[f"k.{i}"], tensors[f"v.{i}"]) for i in range(n_layers))


def save_prefix(handle: PrefixHandle, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write a vLLM prefix handle (format ``vllm-prefix``: token ids, no tensors); returns the same
    payload record as :func:`save_kv`."""
    data = handle.to_bytes()
    _atomic_write(Path(path), data)
    return {
        "format": PREFIX_FORMAT,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "tokens": handle.tokens,
        "tokens_sha256": handle.tokens_sha256,
        "model": handle.fingerprint.model_dump(),
    }


def load_prefix(path: str | os.PathLike[str], expected: ModelFingerprint, sha256: str | None = None) -> PrefixHandle:
    """Read a handle written by :func:`save_prefix`; same checks and errors as :func:`load_kv`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CorruptPayload(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise CorruptPayload(str(path), "sha256 of file does not match the recorded hash")
    return PrefixHandle.from_bytes(data, expected, source=str(path))
