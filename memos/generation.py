"""``mos.generate``: answer a prompt with a cube's memories.

Assembly, in order: the activation memory (a KV prefix reused copy-on-read), then the plaintext memories
retrieved for the prompt (as a context block in the user turn), then the prompt. Parametric memories:
LoRA adapters (any number, with or without a KV prefix) are unpacked from the blob store and applied by
the engine; a TokMem or product-key memory answers on its own (it carries its own frozen model copy). ``used`` reports what
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
    from memos.parametric.store import ParametricMemory

MAX_NEW_TOKENS = 1024


def build_prompt(prompt: str, memories: Sequence[str]) -> str:
    if not memories:
        return prompt
    lines = "\n".join(f"- {m}" for m in memories)
    return f"Relevant memories:\n{lines}\n\n{prompt}"


def generate(kernel: Kernel, activation: ActivationMemory, engine: Any, cube: str, prompt: str, *,
             kv: Sequence[str] = (), adapters: Sequence[str] = (), retrieve: bool = True, top_k: int = 5,
             max_tokens: int = 64, principal: str | None = None,
             parametric: ParametricMemory | None = None) -> Generation:
    check_text(prompt, "prompt")
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_NEW_TOKENS:
        raise InvalidInput(f"max_tokens must be an integer in 1..{MAX_NEW_TOKENS}", field="max_tokens")
    if len(kv) > 1:
        raise InvalidInput("one activation memory per request: build one KV prefix over several memories "
                           "with migrate(..., to='activation') on a list of ids", field="kv")
    if adapters and parametric is None:
        from memos.parametric.store import ParametricMemory

        parametric = ParametricMemory(kernel)
    with span("generate", cube=cube, kv=len(kv), adapters=len(adapters)):
        kernel.get_cube(cube, principal=principal)
        caches, kv_used = [], []
        for mid in kv:
            mem = kernel.get(cube, mid, principal=principal)
            caches.append(activation.load(cube, mem, engine))
            kv_used.append({"id": mem.id, "version": mem.version})
        adapter_mems = [kernel.get(cube, mid, principal=principal) for mid in adapters]
        for mem in adapter_mems:
            if mem.kind != "parametric" or mem.payload is None:
                raise InvalidInput(f"memory {mem.id!r} is {mem.kind}, not a parametric memory", field="adapters")
        own = [m for m in adapter_mems if m.payload is not None and m.payload.format != "peft-lora"]
        if own and (len(adapter_mems) > 1 or caches):
            raise InvalidInput("a TokMem or product-key memory runs alone: no KV prefix, no other adapter",
                               field="adapters")
        adapter_paths = [parametric.resolve(cube, m, engine) for m in adapter_mems if not own]
        retrieved = []
        if retrieve:
            hits = kernel.search(cube, prompt, top_k=top_k, filters=None, principal=principal)
            retrieved = [h.memory for h in hits if h.memory.kind == "plaintext"]
        full = build_prompt(prompt, [m.text for m in retrieved])
        if own:
            out = parametric.generate_with(cube, own[0], engine, full, max_tokens=max_tokens)
        else:
            out = engine.generate(full, kv=caches or None, adapters=adapter_paths or None, max_tokens=max_tokens,
                                  chat=True)
        used = {**out.used, "kv": kv_used, "retrieved": [{"id": m.id, "version": m.version} for m in retrieved],
                "adapters": list(adapters)}
        return out.model_copy(update={"used": used})
