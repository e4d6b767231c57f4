"""KV export/import for :class:`~memos.engines.vllm.VLLMEngine` through a vLLM KV connector.

vLLM 0.32 hands a prefix's KV to outside storage only through its KV-transfer connector
interface (``kv_transfer_config``). Of the connectors it ships, only ``ExampleConnector`` works on
the CPU build: ``OffloadingConnector``/``SimpleCPUOffloadConnector`` move blocks between GPU and
host memory and ``LMCache``/``Nixl``/``Mooncake`` need their own services. ``ExampleConnector`` saves
each layer's slots to safetensors and injects them into a fresh engine's paged pool, but it only
matches a request whose whole prompt was saved (a prefix followed by a new question never hits)
and it saves every request it has not seen. :class:`MemosPrefixConnector` keeps its worker side
(extract and inject by slot) and replaces the scheduler side:

* it saves only requests flagged ``kv_transfer_params={"memos_export": True}``, once their
  prefill is complete, over the prefix's leading full blocks;
* it loads for any request whose prompt *starts with* a saved prefix (the longest one), at block
  granularity, leaving at least the prompt's last token to compute.

Connector storage is ``<kv_store_dir>/<tokens>-<tokens_sha256>/<layer>.safetensors`` plus a
``complete`` marker written once every layer is there. :func:`export_prefix` bundles such a folder
into one portable safetensors file (format ``vllm-kv``); :func:`import_prefix` unpacks one. The
tensors are vLLM's internal per-slot layout (on CPU ``[tokens, n_kv_heads, 2 * head_dim]`` cut from
blocks of ``block_size``), so a file is valid only for the same fingerprint and block size.

This module imports vLLM at import time: vLLM loads it by name (``kv_connector_module_path``)
inside its engine core, and memos only imports it when an engine is given ``kv_store_dir``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load, load_file, save, save_file
from vllm.config import KVTransferConfig
from vllm.distributed.kv_transfer.kv_connector.v1.example_connector import (
    ExampleConnector,
    ExampleConnectorMetadata,
    ReqMeta,
)

from memos.engines.kv import ModelFingerprint, token_ids_sha256
from memos.engines.vllm import read_safetensors_metadata
from memos.errors import CorruptPayload, ModelMismatch

if TYPE_CHECKING:
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.request import Request

KV_FORMAT = "vllm-kv"
KV_FORMAT_VERSION = "1"
COMPLETE = "complete"
EXPORT_FLAG = "memos_export"


def transfer_config(store: Path) -> KVTransferConfig:
    """The ``kv_transfer_config`` that makes vLLM load :class:`MemosPrefixConnector` over ``store``."""
    return KVTransferConfig(
        kv_connector=MemosPrefixConnector.__name__,
        kv_connector_module_path=__name__,
        kv_role="kv_both",
        kv_connector_extra_config={"shared_storage_path": str(store)},
    )


def prefix_folder(store: Path, token_ids: Any) -> Path:
    """Connector folder of a block-aligned prefix: ``<tokens>-<tokens_sha256>``."""
    ids = [int(t) for t in token_ids]
    return store / f"{len(ids)}-{token_ids_sha256(ids)}"


class MemosPrefixConnector(ExampleConnector):
    """``ExampleConnector``'s slot copying with prefix matching and explicit saves (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._store = Path(self._storage_path)
        self._matched: dict[str, tuple[int, list[int]]] = {}  # req id -> (tokens to load, prompt)
        self._exports: dict[str, list[int]] = {}  # req id -> prompt ids, until its prefill is done
        self._export_blocks: dict[str, list[int]] = {}

    # -- scheduler side --------------------------------------------------------------------

    def get_num_new_matched_tokens(self, request: Request, num_computed_tokens: int) -> tuple[int | None, bool]:
        prompt = list(request.prompt_token_ids or [])
        if (request.kv_transfer_params or {}).get(EXPORT_FLAG):
            self._exports[request.request_id] = prompt
            return 0, False
        n = self._longest_saved_prefix(prompt)
        if n <= num_computed_tokens:
            return 0, False
        self._matched[request.request_id] = (n, prompt)
        return n - num_computed_tokens, False

    def update_state_after_alloc(self, request: Request, blocks: KVCacheBlocks, num_external_tokens: int) -> None:
        if num_external_tokens > 0:
            self._requests_need_load[request.request_id] = request
        else:
            self._matched.pop(request.request_id, None)

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> ExampleConnectorMetadata:
        meta = ExampleConnectorMetadata()
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            rid = new.req_id
            if rid in self._requests_need_load and rid in self._matched:
                n, prompt = self._matched.pop(rid)
                meta.requests.append(self._req_meta(prompt[:n], new.block_ids[0], is_store=False))
            if rid in self._exports:
                self._export_blocks[rid] = list(new.block_ids[0])
                self._maybe_save(meta, rid, new.num_computed_tokens + scheduled.get(rid, 0))
        cached = scheduler_output.scheduled_cached_reqs
        for i, rid in enumerate(cached.req_ids):
            if rid not in self._exports:
                continue
            new_blocks = cached.new_block_ids[i]
            if new_blocks is not None:
                if rid in cached.resumed_req_ids:  # preempted and resumed: the list is complete
                    self._export_blocks[rid] = list(new_blocks[0])
                else:
                    self._export_blocks[rid].extend(new_blocks[0])
            self._maybe_save(meta, rid, cached.num_computed_tokens[i] + scheduled.get(rid, 0))
        self._requests_need_load.clear()
        return meta

    def request_finished(self, request: Request, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        # An aborted request may never reach build_connector_meta; forget it.
        for table in (self._matched, self._exports, self._export_blocks):
            table.pop(request.request_id, None)
        return False, None

    # -- shared with the worker side -------------------------------------------------------

    def _generate_foldername_debug(
        self, token_ids: torch.Tensor, mm_hashes: list[str], create_folder: bool = False
    ) -> str:
        # The worker names its files through this; key them by our own prefix folder.
        folder = prefix_folder(self._store, token_ids.tolist())
        if create_folder:
            folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    # -- helpers ---------------------------------------------------------------------------

    def _maybe_save(self, meta: ExampleConnectorMetadata, rid: str, computed_after_step: int) -> None:
        prompt = self._exports[rid]
        if computed_after_step < len(prompt):
            return  # chunked prefill: the prefix's KV is complete only after its last chunk
        n = len(prompt) // self._block_size * self._block_size
        if n:
            meta.requests.append(self._req_meta(prompt[:n], self._export_blocks[rid], is_store=True))
        del self._exports[rid]
        self._export_blocks.pop(rid, None)

    def _req_meta(self, token_ids: list[int], block_ids: list[int], *, is_store: bool) -> ReqMeta:
        n, bs = len(token_ids), self._block_size
        blocks = torch.tensor(block_ids[: (n + bs - 1) // bs], dtype=torch.long)
        slots = (torch.arange(bs, dtype=torch.long)[None, :] + blocks[:, None] * bs).flatten()[:n]
        return ReqMeta(token_ids=torch.tensor(token_ids, dtype=torch.long), slot_mapping=slots,
                       is_store=is_store, mm_hashes=[])

    def _longest_saved_prefix(self, prompt: list[int]) -> int:
        """Tokens of the longest complete saved prefix of ``prompt`` (0 if none). At least the
        last prompt token must stay to compute, so a prefix equal to the prompt does not count."""
        if not self._store.is_dir():
            return 0
        lengths = sorted({int(p.name.split("-", 1)[0]) for p in self._store.iterdir()
                          if p.name[:1].isdigit() and (p / COMPLETE).is_file()}, reverse=True)
        for n in lengths:
            if n % self._block_size == 0 and n < len(prompt) and (
                prefix_folder(self._store, prompt[:n]) / COMPLETE
            ).is_file():
                return n
        return 0


# -- files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KVFile:
    """An exported prefix: its full token ids and how many of them have saved KV."""

    token_ids: tuple[int, ...]
    kv_tokens: int


def export_prefix(store: Path, token_ids: tuple[int, ...], block_size: int, fingerprint: ModelFingerprint,
                  path: str | os.PathLike[str]) -> dict[str, Any]:
    """Bundle the connector folder of ``token_ids`` (saved by an export request) into ``path``."""
    n = len(token_ids) // block_size * block_size
    if n == 0:
        raise ValueError(f"prefix of {len(token_ids)} tokens is shorter than one {block_size}-token block")
    folder = prefix_folder(store, token_ids[:n])
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if len(files) != fingerprint.n_layers:
        raise RuntimeError(f"the KV connector saved {len(files)} of {fingerprint.n_layers} layers in {folder}")
    (folder / COMPLETE).touch()
    tensors = {f"kv.{f.name.removesuffix('.safetensors')}": load_file(f)["kv_cache"] for f in files}
    metadata = {
        "memos.format": KV_FORMAT,
        "memos.version": KV_FORMAT_VERSION,
        "fingerprint": fingerprint.to_json(),
        "block_size": str(block_size),
        "token_ids": json.dumps(list(token_ids), separators=(",", ":")),
        "tokens_sha256": token_ids_sha256(token_ids),
        "kv_tokens": str(n),
    }
    data = save(tensors, metadata=metadata)
    _atomic_write(Path(path), data)
    return {
        "format": KV_FORMAT,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "tokens": len(token_ids),
        "kv_tokens": n,
        "tokens_sha256": metadata["tokens_sha256"],
        "model": fingerprint.model_dump(),
    }


def import_prefix(store: Path, path: str | os.PathLike[str], expected: ModelFingerprint,
                  block_size: int) -> KVFile:
    """Unpack a file from :func:`export_prefix` into the connector folder, checking it first."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CorruptPayload(source, f"cannot read: {exc.strerror or exc}") from exc
    meta = read_safetensors_metadata(data, source)
    if meta.get("memos.format") != KV_FORMAT or meta.get("memos.version") != KV_FORMAT_VERSION:
        raise CorruptPayload(source, f"not a {KV_FORMAT} v{KV_FORMAT_VERSION} file")
    try:
        got = ModelFingerprint.model_validate_json(meta["fingerprint"])
        token_ids = tuple(int(t) for t in json.loads(meta["token_ids"]))
        n, saved_block = int(meta["kv_tokens"]), int(meta["block_size"])
        tensors = load(data)
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptPayload(source, f"bad metadata or tensors: {exc}") from exc
    if got != expected:
        raise ModelMismatch(expected, got, what=f"KV file {source}")
    if saved_block != block_size:
        raise ModelMismatch({"block_size": block_size}, {"block_size": saved_block}, what=f"KV file {source}")
    if token_ids_sha256(token_ids) != meta.get("tokens_sha256"):
        raise CorruptPayload(source, "token ids do not match tokens_sha256")
    if len(tensors) != expected.n_layers or any(t.shape[0] != n for t in tensors.values()):
        raise CorruptPayload(source, f"expected {expected.n_layers} layers of {n} tokens")
    final = prefix_folder(store, token_ids[:n])
    if not (final / COMPLETE).is_file():
        # Unpack beside the final name and rename, so the connector never sees half a folder.
        tmp = store / f".import-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            for name, tensor in tensors.items():
                save_file({"kv_cache": tensor.contiguous()}, str(tmp / f"{name.removeprefix('kv.')}.safetensors"))
            (tmp / COMPLETE).touch()
            if final.exists():
                shutil.rmtree(final)  # an unfinished folder (no marker) from an interrupted export
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return KVFile(token_ids=token_ids, kv_tokens=n)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
