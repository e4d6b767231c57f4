"""Activation memory: KV caches of a real model for a text prefix, stored as safetensors.

Importing this package is cheap (no torch); tensors are handled only when a cache is built,
saved or loaded.
"""

from memos.activation.kvcache import (
    FORMAT,
    KVCache,
    ModelFingerprint,
    load_kv,
    save_kv,
    token_ids_sha256,
)

__all__ = [
    "FORMAT",
    "KVCache",
    "ModelFingerprint",
    "load_kv",
    "save_kv",
    "token_ids_sha256",
]
