"""Product-key memory layers as a post-hoc residual adapter (format ``pkm``).

The layer is the one of Lample et al. 2019, "Large Memory Layers with Product Keys", in the gated form
of Berges et al. 2024, "Memory Layers at Scale": a query ``q = W_q x`` is split in two halves, each
half is scored against its own table of ``n`` sub-keys, and the ``k`` best of each half give ``k*k``
candidate slots whose score is the sum of the two half-scores. The ``k`` best candidates are exactly
the ``k`` best of all ``n*n`` product keys (a slot outside the per-half top-k is beaten by ``k``
candidates that share its other half), at ``O(n)`` instead of ``O(n^2)`` cost. Their value rows are
summed with softmax weights, gated by ``silu(W_g x)`` and projected back by ``W_o``.

**What this adaptation is, honestly.** In both papers the memory layer is part of the architecture
from the start of *pretraining*: keys, values and the surrounding network are learned together over
billions of tokens, and the network learns to route through the memory. Here the backbone is frozen
and already trained, and the layer is bolted on *afterwards* as a residual branch next to one decoder
layer's MLP, with ``W_o`` zero-initialised so the model is unchanged until trained, then trained on a
few dozen statements. That implies:

* it is a sparse, key-addressed **adapter**, closer to LoRA than to the papers' models: only the
  slots the training statements hit are ever updated, and nothing is learned about how to use a
  memory in general;
* capacity and recall figures from the papers (scaling with ``n*n``) do not transfer; with a frozen
  network, one insertion point and little data, recall of held-out phrasings is weaker than LoRA's;
* the O(n) lookup, the main reason for the architecture, matters only at sizes far beyond a cube
  (here the default is 4096 slots); we keep it because it is what makes the layer cheap to grow;
* query keys are trained from random initialisation on tiny data, so which slots a query hits is
  far less meaningful than in a pretrained memory layer; two artifacts are not composable.

It is offered as the third parametric format for experiments and comparisons, not as a better one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from memos.errors import InvalidInput
from memos.parametric.artifact import Artifact, fingerprint_dict, read_artifact
from memos.parametric.distill import (
    answer_loss,
    batches,
    encode_example,
    examples_from_facts,
    greedy_decode,
    layer_inputs,
    load_frozen_copy,
    only_layers_from,
    render_chat,
    seeded,
)

if TYPE_CHECKING:
    import torch

FORMAT = "pkm"


@dataclass(frozen=True)
class PKMSettings:
    """Shape and training of a product-key memory adapter."""

    n_keys: int = 64
    """Sub-keys per half: the memory has ``n_keys**2`` value slots."""
    topk: int = 8
    """Slots read per query (and per-half candidates kept)."""
    key_dim: int = 64
    """Query width; each half is ``key_dim // 2``."""
    heads: int = 1
    """Independent queries (their reads are summed)."""
    value_dim: int = 0
    """Width of a value row; 0 means the model's hidden size."""
    gated: bool = True
    """Multiply the read by ``silu(W_g x)`` (Berges et al.)."""
    layer: float = 0.66
    """Insertion point: a decoder index, or a fraction of the depth when below 1."""
    steps: int = 60
    lr: float = 1e-2
    batch_size: int = 16
    seed: int = 0

    def layer_index(self, n_layers: int) -> int:
        idx = int(self.layer * n_layers) if 0 < self.layer < 1 else int(self.layer)
        if not 0 <= idx < n_layers:
            raise InvalidInput(f"layer {self.layer} outside 0..{n_layers - 1}", field="layer")
        return idx


def _module_class() -> type:
    """Defined lazily so importing this module does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ProductKeyMemory(nn.Module):
        """``x [..., dim] -> [..., dim]``; zero at initialisation (``W_o = 0``)."""

        def __init__(self, dim: int, n_keys: int, topk: int, key_dim: int, heads: int, value_dim: int,
                     gated: bool) -> None:
            super().__init__()
            if key_dim % 2 or topk > n_keys:
                raise InvalidInput("key_dim must be even and topk <= n_keys", field="pkm")
            self.n_keys, self.topk, self.heads, self.key_dim = n_keys, topk, heads, key_dim
            self.query = nn.Linear(dim, heads * key_dim, bias=False)
            half = key_dim // 2
            self.sub_keys = nn.Parameter(torch.randn(heads, 2, n_keys, half) / half**0.5)
            self.values = nn.Parameter(torch.randn(n_keys * n_keys, value_dim) / value_dim**0.5)
            self.gate = nn.Linear(dim, value_dim, bias=False) if gated else None
            self.out = nn.Linear(value_dim, dim, bias=False)
            nn.init.zeros_(self.out.weight)  # the adapter is a no-op until trained

        def lookup(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(scores, slot indices), each ``[..., heads, topk]``, best first."""
            q = self.query(x).unflatten(-1, (self.heads, 2, self.key_dim // 2))
            # s[..., h, half, n]: every query half against its own sub-key table.
            s = torch.einsum("...hcd,hcnd->...hcn", q, self.sub_keys)
            s1, i1 = s[..., 0, :].topk(self.topk, dim=-1)
            s2, i2 = s[..., 1, :].topk(self.topk, dim=-1)
            cand = (s1.unsqueeze(-1) + s2.unsqueeze(-2)).flatten(-2)  # [..., h, k*k]
            best, pos = cand.topk(self.topk, dim=-1)
            rows = torch.gather(i1, -1, pos // self.topk)
            cols = torch.gather(i2, -1, pos % self.topk)
            return best, rows * self.n_keys + cols

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scores, idx = self.lookup(x)
            weights = F.softmax(scores.float(), dim=-1).to(x.dtype)
            flat_idx = idx.flatten(-2).reshape(-1, self.heads * self.topk)
            flat_w = weights.flatten(-2).reshape(-1, self.heads * self.topk)
            read = F.embedding_bag(flat_idx, self.values, per_sample_weights=flat_w, mode="sum")
            read = read.reshape(*x.shape[:-1], -1)
            if self.gate is not None:
                read = read * F.silu(self.gate(x))
            return self.out(read)

    return ProductKeyMemory


def product_key_memory(dim: int, settings: PKMSettings) -> Any:
    """A new :class:`ProductKeyMemory` module for hidden size ``dim``."""
    value_dim = settings.value_dim or dim
    return _module_class()(dim, settings.n_keys, settings.topk, settings.key_dim, settings.heads, value_dim,
                           settings.gated)


def brute_force_topk(module: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference lookup over all ``n*n`` product keys (tests and checks only)."""
    import torch

    q = module.query(x).unflatten(-1, (module.heads, 2, module.key_dim // 2))
    s = torch.einsum("...hcd,hcnd->...hcn", q, module.sub_keys)
    full = (s[..., 0, :].unsqueeze(-1) + s[..., 1, :].unsqueeze(-2)).flatten(-2)  # slot = i * n + j
    return full.topk(module.topk, dim=-1)


@contextlib.contextmanager
def attached(model: Any, memory: Any, layer: int) -> Iterator[None]:
    """Add ``memory(mlp_input)`` to the output of decoder layer ``layer``'s MLP while inside.

    A forward hook rather than a wrapper module: the model's module tree (and so its state-dict
    names) never changes, and leaving the block removes every trace of the adapter.
    """
    mlp = model.get_decoder().layers[layer].mlp

    def add_memory(_module: Any, args: tuple[Any, ...], output: Any) -> Any:
        return output + memory(args[0])

    handle = mlp.register_forward_hook(add_memory)
    try:
        yield
    finally:
        handle.remove()


class PKMAdapter:
    """A product-key memory attached to a private frozen copy of an engine's model."""

    def __init__(self, engine: Any, settings: PKMSettings | None = None, *, model: Any = None) -> None:
        self.engine = engine
        self.settings = settings or PKMSettings()
        self.model = model if model is not None else load_frozen_copy(engine)
        self.layer = self.settings.layer_index(self.model.config.num_hidden_layers)
        with seeded(self.settings.seed):
            self.memory = product_key_memory(self.model.config.hidden_size, self.settings)
        self.sources: list[dict[str, Any]] = []
        self.training: dict[str, Any] = {}

    def attached(self) -> contextlib.AbstractContextManager[None]:
        """The memory attached to :attr:`model` for the duration."""
        return attached(self.model, self.memory, self.layer)

    def train(self, facts: Sequence[str], *, sources: Sequence[dict[str, Any]] = ()) -> PKMAdapter:
        """Train the memory's parameters (only those) on ``facts`` with the answer-token LM loss."""
        import torch

        if not facts:
            raise InvalidInput("no memories to train a memory layer on", field="memory_ids")
        cfg = self.settings
        if cfg.steps < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
            raise InvalidInput("steps and batch_size must be >= 1 and lr > 0", field="steps")
        tok = self.engine.tokenizer
        encoded = [encode_example(tok, ex) for ex in examples_from_facts(facts)]
        started = time.perf_counter()
        # Layers below the insertion point are frozen and see no memory: run them once.
        hidden = layer_inputs(self.model, self.layer, encoded) if self.layer > 0 else None
        params = list(self.memory.parameters())
        opt = torch.optim.Adam(params, lr=cfg.lr)
        losses: list[float] = []
        self.memory.train()
        with self.attached(), only_layers_from(self.model, self.layer):
            for batch in batches(encoded, min(cfg.batch_size, len(encoded)), cfg.steps, cfg.seed,
                                 tok.pad_token_id, hidden):
                loss = answer_loss(self.model, batch)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
        self.memory.eval()
        self.sources = [dict(s) for s in sources]
        self.training = {"steps": cfg.steps, "examples": len(encoded), "seconds": time.perf_counter() - started,
                         "first_loss": losses[0], "final_loss": losses[-1]}
        return self

    def generate(self, prompt: str, *, max_tokens: int = 64, chat: bool = True) -> str:
        """Greedy continuation of ``prompt`` (a user turn when ``chat``) with the memory attached."""
        tok = self.engine.tokenizer
        ids = list(tok.encode(render_chat(tok, prompt) if chat else prompt, add_special_tokens=False))
        with self.attached():
            out = greedy_decode(self.model, ids, max_tokens, stop_ids={tok.eos_token_id})
        return str(tok.decode(out, skip_special_tokens=True))

    def to_artifact(self) -> Artifact:
        tensors = {k: v.detach().clone() for k, v in self.memory.state_dict().items()}
        manifest = {"model": fingerprint_dict(self.engine), "sources": self.sources,
                    "config": {"settings": asdict(self.settings), "layer": self.layer},
                    "training": self.training}
        return Artifact(FORMAT, tensors, manifest)

    @classmethod
    def from_artifact(cls, artifact: Artifact, engine: Any, *, model: Any = None) -> PKMAdapter:
        """Rebuild an adapter for ``engine`` (the caller checked the fingerprint, see :func:`load_pkm`);
        ``model``: a frozen copy of the engine's model to share, else one is loaded."""
        settings = PKMSettings(**artifact.config["settings"])
        adapter = cls(engine, settings, model=model)
        adapter.memory.load_state_dict(artifact.tensors, strict=True)
        adapter.memory.eval()
        adapter.sources = artifact.sources
        adapter.training = dict(artifact.manifest.get("training", {}))
        return adapter


def load_pkm(path: str, engine: Any, *, sha256: str | None = None) -> PKMAdapter:
    """Load a ``pkm`` artifact for ``engine`` (``ModelMismatch`` if trained on another base model)."""
    return PKMAdapter.from_artifact(read_artifact(path, expected_format=FORMAT, sha256=sha256, model=engine),
                                    engine)
