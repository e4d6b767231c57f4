"""``mos.generate``: answer a prompt with a cube's memories.

Assembly, in order: the activation memory (a KV prefix reused copy-on-read), then the plaintext memories
retrieved for the prompt (as a context block in the user turn), then the prompt. ``used`` reports what
went in: the KV memory ids, retrieved memory ids, adapters, and token counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memos.errors import InvalidInput
from memos.models import check_text
from memos.telemetry import span

if TYPE_CHECKING:
    from memos.activation.store import ActivationMemory
    from memos.engines.base import Generation
    from memos.kernel import Kernel

MAX_NEW_TOKENS = 1024


def build_prompt(prompt: str, memories: Sequence[str]) -> str:
    if not memories:
        return prompt
    lines = "\n".join(f"- {m}" for m in memories)
    return f"Relevant memories:\n{lines}\n\n{prompt}"


def generate(kernel: Kernel, activation: ActivationMemory, engine: Any, cube: str, prompt: str, *,
             kv: Sequence[str] = (), adapters: Sequence[str] = (), retrieve: bool = True, top_k: int = 5,
             max_tokens: int = 64, principal: str | None = None) -> Generation:
    check_text(prompt, "prompt")
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_NEW_TOKENS:
        raise InvalidInput(f"max_tokens must be an integer in 1..{MAX_NEW_TOKENS}", field="max_tokens")
    if len(kv) > 1:
        raise InvalidInput("one activation memory per request: build one KV prefix over several memories "
                           "with migrate(..., to='activation') on a list of ids", field="kv")
    with span("generate", cube=cube, kv=len(kv), adapters=len(adapters)):
        kernel.get_cube(cube, principal=principal)
        caches, kv_used = [], []
        for mid in kv:
            mem = kernel.get(cube, mid, principal=principal)
            caches.append(activation.load(cube, mem, engine))
            kv_used.append({"id": mem.id, "version": mem.version})
        adapter_paths = []
        for mid in adapters:
            mem = kernel.get(cube, mid, principal=principal)
            if mem.kind != "parametric" or mem.payload is None:
                raise InvalidInput(f"memory {mid!r} is {mem.kind}, not a parametric memory", field="adapters")
            adapter_paths.append(kernel.blobs.local_path(mem.payload.uri))
        retrieved = []
        if retrieve:
            hits = kernel.search(cube, prompt, top_k=top_k, filters=None, principal=principal)
            retrieved = [h.memory for h in hits if h.memory.kind == "plaintext"]
        full = build_prompt(prompt, [m.text for m in retrieved])
        out = engine.generate(full, kv=caches or None, adapters=adapter_paths or None, max_tokens=max_tokens,
                              chat=True)
        used = {**out.used, "kv": kv_used, "retrieved": [{"id": m.id, "version": m.version} for m in retrieved],
                "adapters": list(adapters)}
        return out.model_copy(update={"used": used})
