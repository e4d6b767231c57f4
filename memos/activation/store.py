"""Activation memories in the kernel: KV caches built by an engine, stored as blobs, resident by policy.

* ``add``: build the KV cache of a text (as the system turn of the chat template, so the prefix pairs
  with chat generation), write it as safetensors into the blob store, commit a memory of kind
  ``activation`` whose ``payload`` records format, uri, bytes, sha256, token count and the model
  fingerprint.
* ``load``: the cache for a memory version, from the residency pool (hit) or the disk tier (miss,
  verified against the recorded sha256 and the engine's fingerprint, then made resident if it fits).
  Generation copies the cache (copy-on-read), so a resident or stored cache never changes.
* ``migrate``: plaintext -> activation (a new version of the same memory carrying a cache of its text),
  activation -> plaintext (a new version without payload), and the batch form that builds one prefix
  from several plaintext memories (their ids and versions in ``derived_from``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memos.activation.kvcache import FORMAT, load_kv, load_prefix, save_kv, save_prefix
from memos.engines.vllm import PREFIX_FORMAT, PrefixHandle
from memos.errors import InvalidInput, ModelMismatch
from memos.kernel.kernel import NewMemory, new_memory
from memos.models import DerivedFrom, Memory
from memos.residency import ResidencyPool
from memos.telemetry import span

if TYPE_CHECKING:
    from memos.engines.kv import KVCache
    from memos.kernel import Kernel


def _resident_bytes(settings: Any) -> dict[str, int]:
    budgets = {"host": int(settings.residency.host_bytes)}
    if settings.residency.device_bytes:
        budgets["device"] = int(settings.residency.device_bytes)
    return budgets


class ActivationMemory:
    def __init__(self, kernel: Kernel, pool: ResidencyPool | None = None) -> None:
        self.kernel = kernel
        if pool is None:
            from memos import plugins

            policy = plugins.lookup("policies", kernel.settings.residency.policy)()
            pool = ResidencyPool(_resident_bytes(kernel.settings), policy)
        self.pool = pool

    # ------------------------------------------------------------------------------- writing
    def _store(self, cube: str, engine: Any, text: str) -> dict[str, Any]:
        cache = engine.build_kv(text, chat=True)
        # KV tensors (local engine) or a prefix handle (vllm: ids whose KV vLLM keeps cached).
        save = save_prefix if isinstance(cache, PrefixHandle) else save_kv
        fd, tmp = tempfile.mkstemp(suffix=".kv.safetensors")
        os.close(fd)
        try:
            record = save(cache, tmp)
            blob = self.kernel.blobs.put_file(cube, tmp)
        finally:
            os.unlink(tmp)
        payload = {**record, "uri": blob["uri"], "engine": engine.name, "chat": True}
        self.pool.put(self._key(cube, payload), cache, cache.nbytes)
        return payload

    @staticmethod
    def _key(cube: str, payload: Any) -> tuple[str, str]:
        sha = payload["sha256"] if isinstance(payload, dict) else payload.sha256
        return cube, sha

    def add(self, cube: str, text: str, engine: Any, *, metadata: Any = None, tags: Any = None,
            derived_from: Sequence[DerivedFrom] = (), source: str | None = None,
            principal: str | None = None) -> Memory:
        item = new_memory(text, metadata, tags)  # validate before the (slow) KV build
        self.kernel.get_cube(cube, principal=principal)
        with span("activation.add", cube=cube, kind="activation"):
            payload = self._store(cube, engine, item.text)
            mem = NewMemory(item.text, item.metadata, item.tags, None, None, kind="activation", payload=payload,
                            derived_from=tuple(derived_from), source=source)
            return self.kernel.add_many(cube, [mem], principal=principal, op="add_activation")[0]

    def migrate(self, cube: str, memory_id: str, to: str, engine: Any | None, *,
                principal: str | None = None) -> Memory:
        current = self.kernel.get(cube, memory_id, principal=principal)
        if to == current.kind:
            raise InvalidInput(f"memory {memory_id!r} is already {to}", field="to")
        if to == "activation":
            if engine is None:
                raise InvalidInput("migration to activation needs an engine", field="engine")
            self.kernel.get_cube(cube, principal=principal)
            payload = self._store(cube, engine, current.text)
            return self.kernel.migrate_kind(cube, memory_id, "activation", payload, principal=principal)
        if to == "plaintext":
            return self.kernel.migrate_kind(cube, memory_id, "plaintext", None, principal=principal)
        raise InvalidInput(f"cannot migrate {current.kind} to {to!r} here", field="to")

    def build_from(self, cube: str, memory_ids: Sequence[str], engine: Any, *,
                   principal: str | None = None) -> Memory:
        """One activation memory (a single KV prefix) over several plaintext memories, in the given order."""
        if not memory_ids:
            raise InvalidInput("no memory ids to build a KV prefix from", field="ids")
        sources = [self.kernel.get(cube, mid, principal=principal) for mid in memory_ids]
        text = "\n".join(f"- {m.text}" for m in sources)
        return self.add(cube, text, engine, metadata={"built_from": len(sources)},
                        derived_from=[DerivedFrom(id=m.id, version=m.version) for m in sources],
                        source="migrate", principal=principal)

    # ------------------------------------------------------------------------------- reading
    def load(self, cube: str, memory: Memory, engine: Any) -> KVCache | PrefixHandle:
        if memory.kind != "activation" or memory.payload is None:
            raise InvalidInput(f"memory {memory.id!r} is {memory.kind}, not an activation memory", field="kv")
        if memory.payload.format not in (FORMAT, PREFIX_FORMAT):
            raise InvalidInput(f"payload format {memory.payload.format!r} is not a KV cache", field="kv")
        fp = engine.fingerprint()
        if memory.payload.model is not None and memory.payload.model != fp.model_dump():
            raise ModelMismatch(fp, memory.payload.model, what=f"activation memory {memory.id}")
        key = self._key(cube, memory.payload)
        cache = self.pool.get(key)
        if cache is None:
            with span("activation.load", cube=cube, kind="activation"):
                cache = self._read(memory, fp)
                self.pool.put(key, cache, cache.nbytes)
        return cache

    def _read(self, memory: Memory, fp: Any) -> KVCache | PrefixHandle:
        """The payload from the disk tier, verified (sha256, fingerprint); KV tensors or a vLLM prefix."""
        assert memory.payload is not None
        path = self.kernel.blobs.local_path(memory.payload.uri)
        load = load_prefix if memory.payload.format == PREFIX_FORMAT else load_kv
        return load(path, fp, sha256=memory.payload.sha256)

    def prefetch(self, cube: str, engine: Any, *, principal: str | None = None) -> int:
        """Make the cube's activation memories resident (most recently written first) while they fit.

        Run in the background when a query arrives for the cube, so the generation that usually follows
        finds its KV prefix in host memory. Returns how many caches were loaded."""
        rows = self.kernel.backend.scan(cube, with_vectors=False)
        fp = engine.fingerprint().model_dump()
        candidates = sorted((m for m, _ in rows if m.kind == "activation" and m.payload is not None
                             and m.payload.format in (FORMAT, PREFIX_FORMAT) and m.payload.model == fp),
                            key=lambda m: m.updated_at, reverse=True)
        loaded = 0
        for m in candidates:
            key = self._key(cube, m.payload)
            if key in self.pool:
                continue
            cache = self._read(m, engine.fingerprint())
            if not self.pool.put(key, cache, cache.nbytes):
                break
            loaded += 1
        return loaded

    def stats(self) -> dict[str, Any]:
        return self.pool.stats()
