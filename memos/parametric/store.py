"""Parametric memories in the kernel: weights trained from plaintext memories, stored as one blob each.

* ``train``: distil plaintext memories (ids, or ``"all"`` live plaintext memories of the cube) into a
  LoRA adapter, TokMem memory tokens or a product-key memory layer; write the artifact (one
  safetensors file, :mod:`memos.parametric.artifact`) into the blob store; commit a memory of kind
  ``parametric`` whose text describes what it holds (the facts, listed) and whose payload records
  ``format`` (``peft-lora`` | ``tokmem`` | ``pkm``), ``uri``, ``bytes``, ``sha256``, ``model`` (the
  base-model fingerprint), ``sources`` and ``training``. The sources are also its
  ``provenance.derived_from``.
* ``retrain``: a **new version** of the same memory with a freshly trained payload (by default from
  the latest versions of the same sources). Old payloads stay in the blob store, so
  ``kernel.rollback`` to an older version brings its adapter back unchanged.
* ``to_plaintext``: a new version of kind plaintext (no payload) keeping the description; the source
  memories stay linked in ``payload.sources`` of the older versions and in their provenance.
* ``resolve``: a stored LoRA as the peft adapter folder ``engine.generate(adapters=[folder])`` takes,
  unpacked once into ``<home>/cache/parametric/<sha256>/`` after checking the blob's sha256 and the
  engine's fingerprint (``ModelMismatch`` for an adapter trained on another base model).
* ``load``: any format as a usable object (LoRA folder, :class:`TokMem`, :class:`PKMAdapter`);
  ``generate`` answers with a TokMem or PKM memory (LoRA goes through the engine).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memos.errors import InvalidInput
from memos.kernel.kernel import NewMemory, new_memory
from memos.models import SEARCHABLE_STATES, DerivedFrom, Memory
from memos.parametric.artifact import Artifact, check_model, fingerprint_dict, write_artifact
from memos.telemetry import span

if TYPE_CHECKING:
    from memos.engines.base import Generation
    from memos.kernel import Kernel
    from memos.parametric.lora import LoraSettings
    from memos.parametric.pkm import PKMSettings
    from memos.parametric.tokmem import TokMemSettings

#: User-facing format names -> payload formats.
FORMATS = {"lora": "peft-lora", "tokmem": "tokmem", "pkm": "pkm"}
#: Loaded TokMem / PKM objects kept per service (each is small; they share one frozen model).
_LOADED_MAX = 4


class ParametricMemory:
    """The parametric-memory service of one kernel (create once, share; see ``kernel.services``)."""

    def __init__(self, kernel: Kernel, cache_dir: str | os.PathLike[str] | None = None, *,
                 lora: LoraSettings | None = None, tokmem: TokMemSettings | None = None,
                 pkm: PKMSettings | None = None) -> None:
        """Args:
            cache_dir: where stored LoRAs are unpacked (default ``<home>/cache/parametric``).
            lora, tokmem, pkm: default training settings per format (``train``'s arguments override
                ``steps``, ``rank``, ``lr`` and ``seed``).
        """
        from memos.parametric.lora import LoraSettings
        from memos.parametric.pkm import PKMSettings
        from memos.parametric.tokmem import TokMemSettings

        self.kernel = kernel
        self.cache_dir = Path(cache_dir) if cache_dir else Path(kernel.settings.home) / "cache" / "parametric"
        self.defaults: dict[str, Any] = {"peft-lora": lora or LoraSettings(), "tokmem": tokmem or TokMemSettings(),
                                         "pkm": pkm or PKMSettings()}
        # TokMem and PKM run on a frozen copy of the engine's model shared by every such memory:
        # PKM attaches hooks to it while it runs, so one call at a time.
        self._frozen: dict[int, Any] = {}
        self._lock = threading.RLock()
        self._loaded: OrderedDict[tuple[str, str, int], Any] = OrderedDict()

    # ------------------------------------------------------------------------------- writing
    def train(self, cube: str, memory_ids: Sequence[str] | str = "all", *, format: str = "lora",
              engine: Any, steps: int | None = None, rank: int | None = None, lr: float | None = None,
              seed: int = 0, metadata: dict[str, Any] | None = None, tags: list[str] | None = None,
              principal: str | None = None) -> Memory:
        """Train a new parametric memory from plaintext memories and commit it (version 1).

        Args:
            memory_ids: plaintext memory ids, or ``"all"`` for every live plaintext memory of the cube.
            format: ``"lora"``, ``"tokmem"`` or ``"pkm"``.
            steps, rank, lr: training overrides (``rank`` applies to LoRA only).
        """
        fmt = _format(format)
        sources = self._sources(cube, memory_ids, principal)
        with span("parametric.train", cube=cube, kind="parametric", items=len(sources)):
            payload = self._build(cube, fmt, sources, engine, steps=steps, rank=rank, lr=lr, seed=seed)
            item = new_memory(describe(fmt, sources), metadata, tags)
            mem = NewMemory(item.text, {"format": fmt, "facts": len(sources), **item.metadata}, item.tags, None,
                            None, kind="parametric", payload=payload,
                            derived_from=tuple(DerivedFrom(id=m.id, version=m.version) for m in sources),
                            source="train")
            return self.kernel.add_many(cube, [mem], principal=principal, op="train_adapter")[0]

    def retrain(self, cube: str, memory_id: str, *, engine: Any, memory_ids: Sequence[str] | str | None = None,
                format: str | None = None, steps: int | None = None, rank: int | None = None,
                lr: float | None = None, seed: int = 0, principal: str | None = None) -> Memory:
        """Train again and write the result as a new version of ``memory_id``.

        By default the sources are the same memories at their latest versions (so an updated fact is
        re-learnt) and the format is unchanged.
        """
        current = self.kernel.get(cube, memory_id, principal=principal)
        if current.kind != "parametric" or current.payload is None:
            raise InvalidInput(f"memory {memory_id!r} is {current.kind}, not a parametric memory", field="id")
        fmt = _format(format) if format is not None else current.payload.format
        if memory_ids is None:
            # The latest version of each source; a memory migrated to parametric is its own source,
            # at the plaintext version it was migrated from.
            refs = (current.payload.model_extra or {}).get("sources", [])
            found = [self.kernel.get(cube, r["id"], version=r["version"] if r["id"] == memory_id else None,
                                     principal=principal) for r in refs]
            # A deleted (archived) or expired fact is forgotten by retraining.
            sources = [m for m in found if m.effective_state() in SEARCHABLE_STATES]
            if not sources:
                raise InvalidInput(f"every source of {memory_id!r} is deleted or expired", field="memory_ids")
            _check_plaintext(sources)
        else:
            sources = self._sources(cube, memory_ids, principal)
        with span("parametric.retrain", cube=cube, kind="parametric", items=len(sources)):
            payload = self._build(cube, fmt, sources, engine, steps=steps, rank=rank, lr=lr, seed=seed)
            out = self.kernel.migrate_kind(cube, memory_id, "parametric", payload, principal=principal,
                                           detail={"retrain": True, "sources": payload["sources"]})
            # A generated description follows its facts; a text of the caller's (a migrated memory's) stays.
            generated = current.text == describe(current.payload.format, self.sources(cube, current, principal=principal))
            text = describe(fmt, sources) if generated else current.text
            if text != out.text:
                # Without a kernel call that writes payload and text together this is a second
                # version; the payload's `sources` is what ties the weights to their facts.
                out = self.kernel.update(cube, memory_id, text=text, principal=principal)
            return out

    def migrate(self, cube: str, memory_id: str, to: str, engine: Any | None, *, format: str = "lora",
                steps: int | None = None, principal: str | None = None) -> Memory:
        """plaintext -> parametric: a new version of the same memory (text kept) carrying weights
        trained on its text, its previous version as the source; parametric -> plaintext: see
        :meth:`to_plaintext`."""
        current = self.kernel.get(cube, memory_id, principal=principal)
        if to == "plaintext" and current.kind == "parametric":
            return self.to_plaintext(cube, memory_id, principal=principal)
        if to != "parametric" or current.kind != "plaintext":
            raise InvalidInput(f"cannot migrate {current.kind} to {to!r} here", field="to")
        if engine is None:
            raise InvalidInput("migration to parametric needs an engine", field="engine")
        with span("parametric.migrate", cube=cube, kind="parametric", items=1):
            payload = self._build(cube, _format(format), [current], engine, steps=steps, rank=None, lr=None, seed=0)
            return self.kernel.migrate_kind(cube, memory_id, "parametric", payload, principal=principal)

    def to_plaintext(self, cube: str, memory_id: str, *, principal: str | None = None) -> Memory:
        """A new version of kind plaintext (payload dropped, description and history kept)."""
        return self.kernel.migrate_kind(cube, memory_id, "plaintext", None, principal=principal)

    def sources(self, cube: str, memory: Memory, *, principal: str | None = None) -> list[Memory]:
        """The plaintext memory versions ``memory``'s weights were trained from."""
        if memory.payload is None:
            raise InvalidInput(f"memory {memory.id!r} has no parametric payload", field="id")
        refs = (memory.payload.model_extra or {}).get("sources", [])
        return [self.kernel.get(cube, r["id"], version=r["version"], principal=principal) for r in refs]

    def _sources(self, cube: str, memory_ids: Sequence[str] | str, principal: str | None) -> list[Memory]:
        if memory_ids == "all":
            # In the order they were written (creation time, then id): training order is deterministic.
            found = sorted((m for m in self.kernel.list_memories(cube, limit=10_000, principal=principal)
                            if m.kind == "plaintext"), key=lambda m: (m.created_at, m.id))
        elif isinstance(memory_ids, str) or not memory_ids:
            raise InvalidInput("memory_ids must be a non-empty list of ids or 'all'", field="memory_ids")
        else:
            found = [self.kernel.get(cube, mid, principal=principal) for mid in dict.fromkeys(memory_ids)]
            _check_plaintext(found)
        if not found:
            raise InvalidInput(f"cube {cube!r} has no plaintext memories to train on", field="memory_ids")
        return found

    def _build(self, cube: str, fmt: str, sources: list[Memory], engine: Any, *, steps: int | None,
               rank: int | None, lr: float | None, seed: int) -> dict[str, Any]:
        """Train, write the artifact into the blob store, return the payload."""
        refs = [{"id": m.id, "version": m.version} for m in sources]
        facts = [m.text for m in sources]
        artifact = self._train_artifact(fmt, facts, refs, engine, steps=steps, rank=rank, lr=lr, seed=seed)
        fd, tmp = tempfile.mkstemp(suffix=".param.safetensors")
        os.close(fd)
        try:
            write_artifact(tmp, artifact)
            blob = self.kernel.blobs.put_file(cube, tmp)
        finally:
            os.unlink(tmp)
        training = artifact.manifest.get("training", {})
        return {"format": fmt, "uri": blob["uri"], "bytes": blob["bytes"], "sha256": blob["sha256"],
                "model": fingerprint_dict(engine), "engine": engine.name, "sources": refs,
                "training": {k: training[k] for k in ("steps", "seconds", "final_loss") if k in training}}

    def _train_artifact(self, fmt: str, facts: list[str], refs: list[dict[str, Any]], engine: Any, *,
                        steps: int | None, rank: int | None, lr: float | None, seed: int) -> Artifact:
        import dataclasses

        if rank is not None and fmt != "peft-lora":
            raise InvalidInput(f"rank applies to LoRA adapters, not {fmt}", field="rank")
        changes: dict[str, Any] = {k: v for k, v in {"steps": steps, "lr": lr, "rank": rank}.items() if v is not None}
        if rank is not None:
            changes["alpha"] = 2.0 * rank  # keep alpha / rank, the update's scale, as in the defaults
        settings = dataclasses.replace(self.defaults[fmt], seed=seed, **changes)
        if fmt == "peft-lora":
            from memos.parametric.lora import LoraTrainer

            return LoraTrainer(engine, settings).train(facts, sources=refs)
        with self._lock:
            model = self._frozen_model(engine)
            if fmt == "tokmem":
                from memos.parametric.tokmem import train_tokmem

                names = [r["id"] for r in refs]
                return train_tokmem(engine, facts, names, sources=refs, settings=settings, model=model).to_artifact()
            from memos.parametric.pkm import PKMAdapter

            return PKMAdapter(engine, settings, model=model).train(facts, sources=refs).to_artifact()

    def _frozen_model(self, engine: Any) -> Any:
        from memos.parametric.distill import load_frozen_copy

        key = id(engine)
        if key not in self._frozen:
            self._frozen[key] = load_frozen_copy(engine)
        return self._frozen[key]

    # ------------------------------------------------------------------------------- reading
    def resolve(self, cube: str, memory: Memory, engine: Any) -> Path:
        """The peft adapter folder of a stored LoRA memory, for ``engine.generate(adapters=[...])``.

        Raises:
            InvalidInput: not a parametric memory, or not a LoRA.
            ModelMismatch: trained on another base model than ``engine``'s.
            CorruptPayload: the blob is missing, altered or unreadable.
        """
        from memos.parametric.lora import FORMAT, materialize_lora

        payload = self._payload(memory, FORMAT, engine)
        folder = self.cache_dir / payload.sha256
        with span("parametric.resolve", cube=cube, kind="parametric"):
            return materialize_lora(self.kernel.blobs.local_path(payload.uri), folder, engine,
                                    sha256=payload.sha256)

    def load(self, cube: str, memory: Memory, engine: Any) -> Any:
        """A LoRA as its adapter folder, TokMem as :class:`TokMem`, PKM as :class:`PKMAdapter`."""
        if memory.payload is not None and memory.payload.format == "peft-lora":
            return self.resolve(cube, memory, engine)
        payload = self._payload(memory, None, engine)
        key = (cube, payload.sha256, id(engine))
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            from memos.parametric.artifact import read_artifact

            path = self.kernel.blobs.local_path(payload.uri)
            artifact = read_artifact(path, expected_format=payload.format, sha256=payload.sha256, model=engine)
            model = self._frozen_model(engine)
            if payload.format == "tokmem":
                from memos.parametric.tokmem import TokMem

                obj: Any = TokMem.from_artifact(artifact, engine, model=model)
            else:
                from memos.parametric.pkm import PKMAdapter

                obj = PKMAdapter.from_artifact(artifact, engine, model=model)
            self._loaded[key] = obj
            while len(self._loaded) > _LOADED_MAX:
                self._loaded.popitem(last=False)
            return obj

    def generate(self, cube: str, memory: Memory, engine: Any, prompt: str, *, max_tokens: int = 64) -> str:
        """Answer ``prompt`` (a chat user turn) with one parametric memory, greedily; the text."""
        return self.generate_with(cube, memory, engine, prompt, max_tokens=max_tokens).text

    def generate_with(self, cube: str, memory: Memory, engine: Any, prompt: str, *,
                      max_tokens: int = 64) -> Generation:
        """Answer ``prompt`` with one parametric memory: a LoRA through the engine, a TokMem or PKM
        memory on the shared frozen model copy (one call at a time). ``used`` names the memory, and
        for TokMem the procedure token the query was routed to."""
        import time

        from memos.engines.base import Generation

        obj = self.load(cube, memory, engine)
        if isinstance(obj, Path):
            return engine.generate(prompt, adapters=[obj], max_tokens=max_tokens, chat=True)  # type: ignore[no-any-return]
        started = time.perf_counter()
        used: dict[str, Any] = {"engine": engine.name, "adapters": [memory.id],
                                "format": memory.payload.format if memory.payload else None}
        with self._lock, span("parametric.generate", cube=cube, kind="parametric"):
            if memory.payload is not None and memory.payload.format == "tokmem":
                routed = obj.generate(prompt, max_tokens=max_tokens)
                text, used["routed_to"] = routed.text, routed.name
            else:
                text = obj.generate(prompt, max_tokens=max_tokens)
        ms = (time.perf_counter() - started) * 1000
        tokens = len(engine.tokenizer.encode(text, add_special_tokens=False))
        # Greedy decoding on the frozen copy does not time its first token apart from the rest.
        return Generation(text=str(text), ttft_ms=ms, total_ms=ms, tokens=tokens, used=used)

    @staticmethod
    def _payload(memory: Memory, fmt: str | None, engine: Any) -> Any:
        if memory.kind != "parametric" or memory.payload is None:
            raise InvalidInput(f"memory {memory.id!r} is {memory.kind}, not a parametric memory", field="adapters")
        if fmt is not None and memory.payload.format != fmt:
            raise InvalidInput(f"memory {memory.id!r} is a {memory.payload.format} memory, not {fmt}",
                               field="adapters")
        # Cheap check first, from the payload alone; the artifact's own manifest is checked on read.
        check_model(engine, {"model": memory.payload.model}, what=f"parametric memory {memory.id}")
        return memory.payload


def _check_plaintext(memories: Sequence[Memory]) -> None:
    wrong = [m.id for m in memories if m.kind != "plaintext"]
    if wrong:
        raise InvalidInput(f"only plaintext memories can be distilled: {', '.join(wrong)}", field="memory_ids")


def _format(name: str) -> str:
    if name in FORMATS:
        return FORMATS[name]
    if name in FORMATS.values():
        return name
    raise InvalidInput(f"unknown parametric format {name!r}: use lora, tokmem or pkm", field="format")


def describe(fmt: str, sources: Sequence[Memory]) -> str:
    """The text of a parametric memory: what it is and the facts it was trained on."""
    lines = "\n".join(f"- {' '.join(m.text.split())}" for m in sources)
    return f"Parametric memory ({fmt}) trained on {len(sources)} memories:\n{lines}"
