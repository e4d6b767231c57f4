"""Language-model engines behind the kernel.

``memos.engines.base`` (the protocol and value objects) is light and imported eagerly;
implementations import torch/transformers, so they load on first attribute access:
``from memos.engines import LocalEngine`` works, ``import memos.engines`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memos.engines.base import AdapterRef, Engine, Generation

if TYPE_CHECKING:
    from memos.engines.local import LocalEngine
    from memos.engines.vllm import VLLMEngine

__all__ = ["AdapterRef", "Engine", "Generation", "LocalEngine", "VLLMEngine"]

_LAZY = {"LocalEngine": "memos.engines.local", "VLLMEngine": "memos.engines.vllm"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
