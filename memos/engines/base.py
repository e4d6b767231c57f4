"""The engine interface: what the kernel needs from a language model.

An engine turns a prompt (plus optional activation and parametric memory) into text, computes
KV caches for activation memory, and names the model it runs by a fingerprint so caches are never
fed to the wrong model. Implementations: ``local`` (transformers on CPU); ``vllm`` and ``openai``
follow the same protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from memos.engines.kv import KVCache, ModelFingerprint

AdapterRef = str | os.PathLike[str]
"""A parametric-memory adapter as the engine receives it: the folder of a saved peft adapter."""


class Generation(BaseModel):
    """The result of one generation request."""

    model_config = ConfigDict(frozen=True)

    text: str
    """Generated text, special tokens removed, prompt not included."""
    ttft_ms: float
    """Milliseconds from the call to the first generated token: tokenising, copying any KV cache
    into a working cache, prefill and picking the token. Reading a cache from disk is not inside
    (it happens before the call; see ``load_kv``)."""
    tokens: int
    """Number of generated tokens (a stop token counts, and is not in ``text``)."""
    token_ids: tuple[int, ...] = ()
    """The generated token ids."""
    total_ms: float = 0.0
    """Milliseconds for the whole call."""
    used: dict[str, Any] = Field(default_factory=dict)
    """What the engine actually used: ``engine``, ``model``, ``prefix_tokens``, ``prompt_tokens``,
    ``kv`` (tokens_sha256 of each cache), ``adapters``, ``chat``, ``stop`` (``"eos"`` or
    ``"max_tokens"``)."""


@runtime_checkable
class Engine(Protocol):
    """A language model behind the kernel. One engine instance serves one model."""

    name: str
    """Registry name, e.g. ``"local"``."""

    def generate(
        self,
        prompt: str,
        *,
        kv: Sequence[KVCache] | None = None,
        adapters: Sequence[AdapterRef] | None = None,
        max_tokens: int = 64,
        temperature: float = 0.0,
        chat: bool = False,
    ) -> Generation:
        """Continue ``prompt`` (after the KV prefix, if given) for up to ``max_tokens`` tokens.

        ``temperature == 0`` is greedy and deterministic. ``chat=True`` wraps the prompt in the
        model's chat template as a user turn; otherwise the prompt is continued as raw text.
        Raises ``ModelMismatch`` for a cache from another model.
        """
        ...

    def build_kv(self, text: str, *, chat: bool = False) -> KVCache:
        """Compute the KV cache of ``text`` (as a system turn if ``chat``) for use as a prefix."""
        ...

    def fingerprint(self) -> ModelFingerprint:
        """The fingerprint every cache this engine builds carries and every cache it uses needs."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is on its own (no special tokens added)."""
        ...
