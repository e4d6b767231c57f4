"""TokMem: procedures stored as trainable memory tokens over a frozen model (format ``tokmem``).

After Wu et al. 2025, "TokMem: Tokenized Procedural Memory for Large Language Models". Each procedure
(a named skill given by ``(query, response)`` examples) is ONE new token: an embedding vector that is
both an input vector (placed after the query, it conditions the response) and, because SmolLM2 ties
its input and output embeddings, an output vector (its logit after the query says how well the
procedure fits). The backbone never changes.

* ``add_procedure(name, examples)`` adds a token and trains **only its embedding**: the backbone and
  every older token are frozen (older tokens stay bit-identical). The loss is the routing loss (cross
  entropy over the memory tokens' logits at the end of the query, for the new examples and, as
  negatives for the new token, the stored examples of older procedures) plus the LM loss of the
  response after the token.
* Norm rescaling (the paper's fix for new tokens crowding out old ones): the new embedding starts at,
  and after every step is projected back to, the average norm of the existing memory tokens (for the
  first token, the average norm of the vocabulary's embeddings). Routing then compares directions,
  not magnitudes, so recently trained tokens cannot win by growing.
* ``route(query)``: the memory token with the highest logit after the query (the model "picks" it).
* ``generate(query)``: routes, then decodes greedily after query + memory token.

Prompts use the engine's chat template (a user turn and the assistant header); the memory token sits
where the assistant's reply begins. Because the backbone is frozen, the query's hidden states do not
depend on any memory token: they are computed once per example, which makes training cheap (only the
token and the response are run at each step).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from memos.errors import InvalidInput
from memos.parametric.artifact import Artifact, fingerprint_dict, read_artifact
from memos.parametric.distill import (
    cache_kwarg,
    end_of_turn,
    examples_from_facts,
    greedy_decode,
    load_frozen_copy,
    render_chat,
    seeded,
)

if TYPE_CHECKING:
    import torch

FORMAT = "tokmem"


@dataclass(frozen=True)
class TokMemSettings:
    """How each new memory token is trained."""

    steps: int = 20
    """Optimizer steps per added procedure (each step sees all its examples)."""
    lr: float = 2e-2
    """Adam learning rate on the single new embedding."""
    route_weight: float = 1.0
    """Weight of the routing loss against the response LM loss."""
    seed: int = 0


@dataclass(frozen=True)
class Routed:
    """The result of :meth:`TokMem.generate`: the procedure picked and the text produced after it."""

    name: str
    text: str


@dataclass
class _Prefix:
    """A query's frozen-backbone state: its final hidden vector and its per-layer KV."""

    hidden: torch.Tensor
    kv: list[tuple[torch.Tensor, torch.Tensor]]


class TokMem:
    """Memory tokens for ``engine``'s model (a private frozen copy is loaded; ``engine.model`` is not used)."""

    def __init__(self, engine: Any, settings: TokMemSettings | None = None, *, model: Any = None) -> None:
        self.engine = engine
        self.settings = settings or TokMemSettings()
        self.model = model if model is not None else load_frozen_copy(engine)
        self.names: list[str] = []
        self.examples: dict[str, list[tuple[str, str]]] = {}
        self.sources: list[dict[str, Any]] = []
        self._embeddings: list[torch.Tensor] = []  # one frozen [dim] vector per token, in order
        self._hidden: dict[str, torch.Tensor] = {}  # query -> final hidden vector (the backbone is frozen)
        self.training: dict[str, Any] = {"steps": 0, "seconds": 0.0, "final_loss": None}
        """Totals over every :meth:`add_procedure` call (stored in the artifact's manifest)."""

    # ---------------------------------------------------------------------------------- state
    @property
    def embeddings(self) -> torch.Tensor:
        """``[tokens, dim]``: every memory token's embedding, in the order added."""
        import torch

        if not self._embeddings:
            return torch.empty(0, self.model.config.hidden_size)
        return torch.stack(self._embeddings)

    def target_norm(self) -> float:
        """Norm given to a new token: mean norm of the memory tokens, or of the vocabulary if none."""
        if self._embeddings:
            return float(self.embeddings.norm(dim=-1).mean())
        return float(self.model.get_input_embeddings().weight.norm(dim=-1).mean())

    # ------------------------------------------------------------------------------- training
    def add_procedure(self, name: str, examples: Sequence[tuple[str, str]], *, steps: int | None = None,
                      lr: float | None = None) -> None:
        """Add a memory token for procedure ``name`` and train its embedding on ``examples``."""
        import torch
        import torch.nn.functional as F

        if not isinstance(name, str) or not name or name in self.examples:
            raise InvalidInput(f"procedure name {name!r} is empty or already used", field="name")
        if not examples or not all(isinstance(q, str) and q and isinstance(r, str) and r for q, r in examples):
            raise InvalidInput("a procedure needs (query, response) examples of non-empty strings",
                               field="examples")
        cfg = self.settings
        if (steps or cfg.steps) < 1 or not (lr or cfg.lr) > 0:
            raise InvalidInput("steps must be >= 1 and lr > 0", field="steps")
        tok = self.engine.tokenizer
        new = [(q, r) for q, r in examples]
        prefixes = [self._prefix(q) for q, _ in new]
        responses = [torch.tensor(tok.encode(r + end_of_turn(tok), add_special_tokens=False)) for _, r in new]
        # Routing targets: the new examples point at the new token, every older example at its own.
        route_h = [p.hidden for p in prefixes]
        route_y = [len(self.names)] * len(new)
        for idx, old in enumerate(self.names):
            for q, _ in self.examples[old]:
                route_h.append(self._query_hidden(q))
                route_y.append(idx)
        route_hidden = torch.stack(route_h)
        route_target = torch.tensor(route_y)
        frozen = self.embeddings
        norm = self.target_norm()
        with seeded(cfg.seed):
            param = torch.nn.Parameter(self._initial(name, norm))
        opt = torch.optim.Adam([param], lr=lr or cfg.lr)
        embed = self.model.get_input_embeddings()
        head = self.model.get_output_embeddings()
        decoder = self.model.get_decoder()
        started = time.perf_counter()
        for _ in range(steps or cfg.steps):
            table = torch.cat([frozen, param[None]])
            route = F.cross_entropy(route_hidden @ table.T, route_target)
            lm = torch.zeros(())
            for prefix, resp in zip(prefixes, responses):
                inputs = torch.cat([param[None], embed(resp[:-1])])[None]
                hidden = decoder(inputs_embeds=inputs, use_cache=True,
                                 **{cache_kwarg(decoder): self._cache(prefix)}).last_hidden_state[0]
                lm = lm + F.cross_entropy(head(hidden).float(), resp)
            loss = cfg.route_weight * route + lm / len(prefixes)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():  # norm rescaling, applied as a projection after every step
                param.mul_(norm / param.norm())
        self.names.append(name)
        self.examples[name] = new
        self._embeddings.append(param.detach().clone())
        self.training = {"steps": self.training["steps"] + (steps or cfg.steps),
                         "seconds": self.training["seconds"] + time.perf_counter() - started,
                         "final_loss": float(loss.detach())}

    def _initial(self, name: str, norm: float) -> torch.Tensor:
        """Start from the mean embedding of the name's own tokens (deterministic), at the target norm."""
        import torch

        weight = self.model.get_input_embeddings().weight
        ids = self.engine.tokenizer.encode(name.replace("_", " "), add_special_tokens=False)
        start = weight[ids].mean(0) if ids else weight.mean(0)
        start = start + 1e-3 * torch.randn_like(start)  # break ties between equal names' starts
        return (start * (norm / start.norm())).detach().clone()

    # ------------------------------------------------------------------------------- inference
    def scores(self, query: str) -> dict[str, float]:
        """Each memory token's logit at the end of ``query``."""
        if not self.names:
            raise InvalidInput("no procedures: add one first", field="name")
        logits = self.embeddings @ self._query_hidden(query)
        return {name: float(v) for name, v in zip(self.names, logits)}

    def route(self, query: str) -> str:
        """The procedure whose memory token the model rates highest after ``query``."""
        s = self.scores(query)
        return max(s, key=lambda n: s[n])

    def generate(self, query: str, *, max_tokens: int = 64, name: str | None = None) -> Routed:
        """Route ``query`` (or use ``name``) and decode greedily after query + memory token."""
        tok = self.engine.tokenizer
        picked = name if name is not None else self.route(query)
        if picked not in self.examples:
            raise InvalidInput(f"no procedure {picked!r}", field="name")
        vec = self._embeddings[self.names.index(picked)]
        out = greedy_decode(self.model, self._ids(query), max_tokens, {tok.eos_token_id}, then_embeds=vec[None])
        return Routed(picked, str(tok.decode(out, skip_special_tokens=True)))

    # -------------------------------------------------------------------------------- internals
    def _ids(self, query: str) -> list[int]:
        tok = self.engine.tokenizer
        return list(tok.encode(render_chat(tok, query), add_special_tokens=False))

    def _prefix(self, query: str) -> _Prefix:
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        decoder = self.model.get_decoder()
        with torch.no_grad():
            out = decoder(input_ids=torch.tensor([self._ids(query)]), use_cache=True,
                          **{cache_kwarg(decoder): cache})
        hidden = out.last_hidden_state[0, -1].clone()
        self._hidden[query] = hidden
        return _Prefix(hidden, [(layer.keys, layer.values) for layer in cache.layers])

    def _query_hidden(self, query: str) -> torch.Tensor:
        if query not in self._hidden:
            self._prefix(query)
        return self._hidden[query]

    def _cache(self, prefix: _Prefix) -> Any:
        """A fresh cache holding a copy of the prefix KV (a forward appends to the cache it is given)."""
        from transformers import DynamicCache

        layers = [(k.clone(), v.clone()) for k, v in prefix.kv]
        return DynamicCache(ddp_cache_data=layers, config=self.model.config)

    # ------------------------------------------------------------------------------ persistence
    def to_artifact(self) -> Artifact:
        """The tokens as an artifact: tensor ``embeddings [tokens, dim]``; names and examples in JSON."""
        manifest = {"model": fingerprint_dict(self.engine), "sources": self.sources,
                    "config": {"names": list(self.names),
                               "examples": {n: [list(e) for e in self.examples[n]] for n in self.names},
                               "settings": asdict(self.settings)},
                    "training": dict(self.training)}
        return Artifact(FORMAT, {"embeddings": self.embeddings.clone()}, manifest)

    @classmethod
    def from_artifact(cls, artifact: Artifact, engine: Any, *, model: Any = None) -> TokMem:
        """Rebuild from an artifact (the caller checked the fingerprint, see :func:`load_tokmem`);
        ``model``: a frozen copy of the engine's model to share, else one is loaded."""
        config = artifact.config
        mem = cls(engine, TokMemSettings(**config.get("settings", {})), model=model)
        table = artifact.tensors["embeddings"]
        names = list(config["names"])
        if table.shape[0] != len(names):
            raise InvalidInput(f"{table.shape[0]} embeddings for {len(names)} names", field="tokmem")
        mem.names = names
        mem.examples = {n: [(q, r) for q, r in config["examples"][n]] for n in names}
        mem._embeddings = [row.clone() for row in table]
        mem.sources = artifact.sources
        mem.training = {**mem.training, **artifact.manifest.get("training", {})}
        return mem


def load_tokmem(path: str, engine: Any, *, sha256: str | None = None) -> TokMem:
    """Load a ``tokmem`` artifact for ``engine`` (``ModelMismatch`` if trained on another base model)."""
    return TokMem.from_artifact(read_artifact(path, expected_format=FORMAT, sha256=sha256, model=engine), engine)


def train_tokmem(engine: Any, facts: Sequence[str], names: Sequence[str], *,
                 sources: Sequence[dict[str, Any]] = (), settings: TokMemSettings | None = None,
                 model: Any = None) -> TokMem:
    """One memory token per fact (named by ``names``, e.g. memory ids), trained on its chat examples:
    routing a question to a token says which memory answers it; generating after it recalls the fact."""
    if len(facts) != len(names) or not facts:
        raise InvalidInput("one name per fact, and at least one fact", field="memory_ids")
    mem = TokMem(engine, settings, model=model)
    by_fact: list[list[tuple[str, str]]] = [[] for _ in facts]
    for ex in examples_from_facts(facts):
        if ex.chat:
            by_fact[ex.source].append((ex.prompt, ex.answer))
    for i, examples in enumerate(by_fact):
        if not examples:
            # no subject/verb split and no named entity ("buy milk and eggs"): ask for the note by its opening
            # words, so every memory gets a token (routing still has the note's own words to go on)
            statement = " ".join(facts[i].split())
            if not statement:
                raise InvalidInput(f"memory {names[i]!r} has no text to train a memory token on", field="memory_ids")
            head = " ".join(statement.split(" ")[:4])
            examples.append((f'What was the note "{head}"?', statement))
    for name, examples in zip(names, by_fact):
        mem.add_procedure(name, examples)
    mem.sources = [dict(s) for s in sources]
    return mem
