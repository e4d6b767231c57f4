"""Parametric memory: weights that carry memories (LoRA adapters, TokMem tokens, product-key memory).

Trained from plaintext memories, stored as one safetensors blob each (:mod:`.artifact`), committed as
memories of kind ``parametric`` by :class:`~memos.parametric.store.ParametricMemory`. Importing this
package is cheap: torch, transformers and peft load when something is trained or loaded.

Modules: :mod:`.distill` (memories -> training pairs, shared training plumbing), :mod:`.lora`,
:mod:`.tokmem`, :mod:`.pkm`, :mod:`.artifact`, :mod:`.store`.
"""

from memos.parametric.artifact import FORMATS, Artifact, read_artifact, write_artifact
from memos.parametric.store import ParametricMemory

__all__ = ["FORMATS", "Artifact", "ParametricMemory", "read_artifact", "write_artifact"]
