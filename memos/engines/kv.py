"""KV cache value objects: :class:`ModelFingerprint` and :class:`KVCache`.

They live with the engines (which build and consume caches); :mod:`memos.activation.kvcache` adds
their on-disk format. Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch


class ModelFingerprint(BaseModel):
    """What makes a KV cache valid for a model: equal fingerprints mean interchangeable caches.

    Stored in every activation payload (``payload["model"]``) and compared field by field on load.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str
    """Stable model name, e.g. ``"smollm2-135m-instruct"``."""
    dtype: str
    """Dtype of the cached tensors as torch names it without the prefix, e.g. ``"float32"``."""
    n_layers: int
    """Decoder layers, one key and one value tensor each."""
    n_kv_heads: int
    """Key/value heads per layer (fewer than query heads under grouped-query attention)."""
    head_dim: int
    """Width of one attention head."""
    tokenizer_sha256: str
    """Hash of the tokenizer's vocabulary, merges and added tokens (see the engine)."""
    weights_sha256: str = ""
    """Hash of the weights' source (for the local engine: the GGUF file); empty if unknown."""

    def to_json(self) -> str:
        """Compact, key-sorted JSON, the form stored in payload metadata."""
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))


def token_ids_sha256(token_ids: Sequence[int]) -> str:
    """Hash of a token id sequence: sha256 of the ids as decimal text joined by commas."""
    return hashlib.sha256(",".join(str(int(t)) for t in token_ids).encode("ascii")).hexdigest()


@dataclass(frozen=True, eq=False)
class KVCache:
    """The key/value state of a model for a token prefix. Treat as immutable: engines copy it
    before generating (copy-on-read), so one cache can serve many requests and stay byte-equal.

    Attributes:
        layers: per decoder layer a ``(keys, values)`` pair, each ``[n_kv_heads, tokens, head_dim]``.
        token_ids: the prefix tokens the state was computed for.
        fingerprint: the model that computed it.
    """

    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    token_ids: tuple[int, ...]
    fingerprint: ModelFingerprint
    tokens_sha256: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_ids", tuple(int(t) for t in self.token_ids))
        if not self.tokens_sha256:
            object.__setattr__(self, "tokens_sha256", token_ids_sha256(self.token_ids))
        problem = _shape_problem(self.layers, self.fingerprint, len(self.token_ids))
        if problem:
            raise ValueError(f"inconsistent KVCache: {problem}")

    @property
    def tokens(self) -> int:
        """Number of prefix tokens."""
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        """Bytes held by the key/value tensors."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)


def _shape_problem(layers: Sequence[Any], fp: ModelFingerprint, n_tokens: int) -> str | None:
    if len(layers) != fp.n_layers:
        return f"{len(layers)} layers, fingerprint says {fp.n_layers}"
    want = (fp.n_kv_heads, n_tokens, fp.head_dim)
    for i, (k, v) in enumerate(layers):
        for name, t in (("keys", k), ("values", v)):
            if tuple(t.shape) != want:
                return f"layer {i} {name} shape {tuple(t.shape)}, expected {want}"
            if str(t.dtype).removeprefix("torch.") != fp.dtype:
                return f"layer {i} {name} dtype {t.dtype}, fingerprint says {fp.dtype}"
    return None
