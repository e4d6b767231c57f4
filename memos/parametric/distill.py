"""Turning plaintext memories into training data, and the training plumbing every parametric format shares.

A memory is a short statement ("Zorblax's pet is a purple llama named Quimby."). From it we build,
deterministically, a handful of (prompt, answer) pairs:

* ``statement``: the raw text, continued from its subject ("Zorblax's pet is" -> " a purple llama ..."),
  so the fact is stored as language, not only as a chat reply;
* ``ask``: "What is Zorblax's pet?" -> the statement, when the statement has a copula ("X is Y");
* ``about``: "What do you know about Zorblax?" -> the statement (the entity is the first proper noun);
* ``tell``: "Tell me about Zorblax's pet." -> the statement.

Chat forms are rendered with the engine's chat template (default system turn included), exactly as
``engine.generate(prompt, chat=True)`` renders a request, so what is trained is what is asked. The
loss is taken on the answer tokens only (plus the end-of-turn token, so the model learns to stop).

The heuristics are deliberately simple and template-based: they are not paraphrase generation, and a
question phrased very differently from every template is recalled less reliably (the benchmark reports
held-out phrasings separately).

Also here, shared by the trainers: *anchors* (everyday prompts with the base model's own answers,
trained alongside so an adapter does not leak its facts into unrelated answers), batching with the
answer-only loss, running only the upper layers from cached lower-layer states, frozen model copies and
greedy decoding for the formats the engine cannot apply itself.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Split point between subject and predicate: the first copula (or a few common verbs) surrounded by spaces.
_COPULA = re.compile(r"\s(is|are|was|were)\s")
_VERB = re.compile(r"\s(is|are|was|were|has|have|had|lives|lived|works|worked|likes|liked|loves|owns|"
                   r"prefers|wants|uses|keeps|moved|speaks|plays|drives|drinks|eats)\s")
_ENTITY = re.compile(r"\b([A-Z][\w-]*(?:\s+[A-Z][\w-]*)*)")
_SENTENCE_START = frozenset({"the", "a", "an", "my", "our", "your", "his", "her", "their", "its", "this", "that",
                             "these", "those", "in", "on", "at", "for", "from", "to", "of", "by", "with",
                             "when", "where", "after", "before"})
IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One training pair. ``chat``: the prompt is a user message rendered with the chat template."""

    prompt: str
    answer: str
    chat: bool
    form: str
    source: int = 0
    """Index of the memory it was built from (in the order given to :func:`examples_from_facts`)."""


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def split_subject(statement: str) -> tuple[str, str] | None:
    """``("Zorblax's pet", "is a purple llama named Quimby.")`` or None if no verb is found."""
    m = _VERB.search(statement)
    if m is None or m.start() == 0:
        return None
    return statement[: m.start()], statement[m.start() + 1 :]


def entity_of(statement: str) -> str | None:
    """The first run of capitalised words, without a possessive ("Zorblax's pet" -> "Zorblax").

    A capitalised function word that only starts the sentence ("The", "My") is skipped."""
    for m in _ENTITY.finditer(statement):
        words = m.group(1).split()
        if m.start() == 0 and words[0].lower() in _SENTENCE_START:
            words = words[1:]
        if words:
            return re.sub(r"'s$|'$", "", " ".join(words))
    return None


def examples_from_fact(text: str, index: int = 0) -> list[Example]:
    """The deterministic training pairs for one memory (see the module docstring)."""
    statement = _sentence(text)
    out: list[Example] = []
    split = split_subject(statement)
    if split is not None:
        subject, predicate = split
        out.append(Example(subject, " " + predicate, chat=False, form="statement", source=index))
        # Inside a question the subject is mid-sentence: "What is the capital of ...", not "... The ...".
        first = subject.split(" ", 1)[0]
        asked = subject[0].lower() + subject[1:] if first.lower() in _SENTENCE_START else subject
        copula = _COPULA.search(statement)
        if copula is not None and copula.start() == len(subject):
            verb = predicate.split(" ", 1)[0]
            out.append(Example(f"What {verb} {asked}?", statement, chat=True, form="ask", source=index))
        out.append(Example(f"Tell me about {asked}.", statement, chat=True, form="tell", source=index))
    else:
        # No verb: continue from the first few words instead.
        words = statement.split(" ")
        head = " ".join(words[: max(1, min(3, len(words) - 1))])
        out.append(Example(head, statement[len(head):], chat=False, form="statement", source=index))
    entity = entity_of(statement)
    if entity:
        out.append(Example(f"What do you know about {entity}?", statement, chat=True, form="about", source=index))
    return out


def examples_from_facts(texts: Sequence[str]) -> list[Example]:
    """All pairs for several memories, in memory order (shuffling is the trainer's, with its seed)."""
    return [ex for i, t in enumerate(texts) for ex in examples_from_fact(t, i)]


# ------------------------------------------------------------------------------------ tokenising
def render_chat(tokenizer: Any, user: str) -> str:
    """The chat template applied to one user turn plus the assistant header (as the engine does)."""
    messages = [{"role": "user", "content": user}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def end_of_turn(tokenizer: Any) -> str:
    """The text that ends an assistant turn ("<|im_end|>" for SmolLM2)."""
    return str(tokenizer.eos_token or "")


def encode_example(tokenizer: Any, ex: Example) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids), tokenised separately as the engine tokenises a request."""
    prompt = render_chat(tokenizer, ex.prompt) if ex.chat else ex.prompt
    answer = ex.answer + (end_of_turn(tokenizer) if ex.chat else "")
    return (list(tokenizer.encode(prompt, add_special_tokens=False)),
            list(tokenizer.encode(answer, add_special_tokens=False)))


@dataclass(frozen=True)
class Batch:
    """Right-padded ids and next-token labels (``IGNORE`` outside answers). No attention mask is
    needed: with right padding and a causal model, real tokens never see the padding.

    ``inputs_embeds``, when set, replaces the ids as the input of the first layer that runs (see
    :func:`layer_inputs`)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    inputs_embeds: torch.Tensor | None = None
    anchor_rows: int = 0
    """The last ``anchor_rows`` rows are anchors (see :func:`anchor_pairs`), weighted separately."""


Encoded = tuple[list[int], list[int]]


def make_batch(pairs: Sequence[Encoded], pad_id: int, hidden: Sequence[torch.Tensor] | None = None,
               anchor_rows: int = 0) -> Batch:
    """Pad ``pairs`` (prompt ids, answer ids) into a batch; ``hidden``: per pair ``[tokens, dim]``."""
    import torch

    width = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    for row, (p, a) in enumerate(pairs):
        seq = p + a
        ids[row, : len(seq)] = torch.tensor(seq)
        # labels[t] is the token to predict at position t, i.e. seq[t + 1], for answer tokens only.
        labels[row, len(p) - 1 : len(seq) - 1] = torch.tensor(a)
    embeds = None
    if hidden is not None:
        embeds = torch.zeros(len(pairs), width, hidden[0].shape[-1], dtype=hidden[0].dtype)
        for row, h in enumerate(hidden):
            embeds[row, : h.shape[0]] = h
    return Batch(ids, labels, embeds, anchor_rows)


class _Epochs:
    """Indices of ``n`` items in seeded epochs: every item once per epoch, reshuffled each time."""

    def __init__(self, n: int, rng: random.Random) -> None:
        self.n, self.rng, self.order = n, rng, list[int]()

    def take(self, k: int) -> list[int]:
        while len(self.order) < k:
            epoch = list(range(self.n))
            self.rng.shuffle(epoch)
            self.order.extend(epoch)
        out, self.order = self.order[:k], self.order[k:]
        return out


def batches(encoded: Sequence[Encoded], batch_size: int, steps: int, seed: int, pad_id: int,
            hidden: Sequence[torch.Tensor] | None = None, *, anchors: Sequence[Encoded] = (),
            anchor_hidden: Sequence[torch.Tensor] | None = None, anchors_per_step: int = 0) -> Iterator[Batch]:
    """``steps`` batches of ``batch_size`` examples (plus ``anchors_per_step`` anchors), seeded."""
    rng = random.Random(seed)
    facts = _Epochs(len(encoded), rng)
    extra = _Epochs(len(anchors), rng) if anchors and anchors_per_step else None
    for _ in range(steps):
        take = facts.take(batch_size)
        pairs = [encoded[i] for i in take]
        rows = [hidden[i] for i in take] if hidden else None
        n_anchor = 0
        if extra is not None:
            picked = extra.take(min(anchors_per_step, len(anchors)))
            n_anchor = len(picked)
            pairs += [anchors[i] for i in picked]
            if rows is not None and anchor_hidden is not None:
                rows += [anchor_hidden[i] for i in picked]
        yield make_batch(pairs, pad_id, rows, n_anchor)


def answer_loss(model: Any, batch: Batch, anchor_weight: float = 1.0) -> torch.Tensor:
    """Mean cross-entropy over answer tokens (plus ``anchor_weight`` times that of the anchor rows).

    The vocabulary projection is applied to answer positions only: on a 49k vocabulary it is a fifth
    of the forward pass."""
    import torch.nn.functional as F

    decoder = model.get_decoder()
    if batch.inputs_embeds is None:
        hidden = decoder(input_ids=batch.input_ids, use_cache=False).last_hidden_state
    else:
        hidden = decoder(inputs_embeds=batch.inputs_embeds, use_cache=False).last_hidden_state
    keep = batch.labels != IGNORE
    logits = model.get_output_embeddings()(hidden[keep])
    losses = F.cross_entropy(logits.float(), batch.labels[keep], reduction="none")
    if not batch.anchor_rows:
        return losses.mean()
    rows = keep.nonzero()[:, 0]
    is_anchor = rows >= batch.input_ids.shape[0] - batch.anchor_rows
    return losses[~is_anchor].mean() + anchor_weight * losses[is_anchor].mean()


# -------------------------------------------------------------------------------------- anchors
#: Everyday requests whose base-model answers training keeps (disjoint from the benchmark's prompts).
ANCHOR_PROMPTS = (
    "What is the capital of Japan?", "Explain what a noun is.", "How many continents are there?",
    "Give me a tip for staying focused.", "What is 7 plus 8?", "Who painted the Mona Lisa?",
    "Describe the color blue.", "What do plants need to grow?", "Tell me a fun fact about cats.",
    "What is the freezing point of water?", "Write one sentence about the sea.", "What is a verb?",
    "Name a fruit that is yellow.", "How many hours are in a day?", "What is gravity?",
    "Recommend a book for children.", "What language is spoken in Brazil?", "What is a triangle?",
    "How do I boil an egg?", "Why is the sky blue?", "What is the tallest animal?",
    "Say something kind.", "What is the chemical symbol for gold?", "What is a computer?",
)
_ANCHOR_CACHE: dict[tuple[str, int, int], list[Encoded]] = {}


def anchor_pairs(engine: Any, count: int, max_tokens: int) -> list[Encoded]:
    """(chat prompt ids, the base model's own greedy answer ids) for ``count`` everyday prompts.

    Trained alongside the memories with the same loss, they pin the adapter's behaviour on unrelated
    requests to the base model's (self-distillation): without them, every answer drifts towards the
    short "X's Y is Z." style of the facts. Computed once per process and model.
    """
    key = (engine.fingerprint().to_json(), count, max_tokens)
    if key not in _ANCHOR_CACHE:
        tok = engine.tokenizer
        pairs: list[Encoded] = []
        for prompt in ANCHOR_PROMPTS[:count]:
            ids = list(tok.encode(render_chat(tok, prompt), add_special_tokens=False))
            pairs.append((ids, list(engine.generate_ids(ids, max_tokens=max_tokens).token_ids)))
        _ANCHOR_CACHE[key] = pairs
    return _ANCHOR_CACHE[key]


# ------------------------------------------------------------------ training only the upper layers
class _Captured(Exception):
    """Raised by the capture hook to stop a forward pass once the wanted input is seen."""


def layer_inputs(model: Any, start: int, encoded: Sequence[Encoded], batch_size: int = 16) -> list[torch.Tensor]:
    """The hidden state entering decoder layer ``start`` for each pair, ``[tokens, dim]`` each.

    When only layers ``start..`` have trainable parameters, everything below is a constant function
    of the input ids: computing it once, instead of at every step, roughly halves training time for
    ``start`` at mid-depth. Used with :func:`only_layers_from`.
    """
    import torch

    layers = model.get_decoder().layers
    seen: list[torch.Tensor] = []

    def capture(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.append(args[0] if args else kwargs["hidden_states"])
        raise _Captured

    handle = layers[start].register_forward_pre_hook(capture, with_kwargs=True)
    out: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for i in range(0, len(encoded), batch_size):
                chunk = encoded[i : i + batch_size]
                batch = make_batch(chunk, pad_id=0)
                seen.clear()
                try:
                    model.get_decoder()(input_ids=batch.input_ids, use_cache=False)
                except _Captured:
                    pass  # expected: the hook stopped the pass at layer ``start``
                hidden = seen[0]
                out.extend(hidden[row, : len(p) + len(a)].clone() for row, (p, a) in enumerate(chunk))
    finally:
        handle.remove()
    return out


@contextlib.contextmanager
def only_layers_from(model: Any, start: int) -> Iterator[None]:
    """Run the decoder from layer ``start`` (its input given as ``inputs_embeds``), then restore it.

    The decoder runs ``self.layers`` in order after embedding; swapping in the upper slice is enough
    (rotary positions and the causal mask depend only on shapes). Module names are restored before
    anything is saved, so peft state-dict keys keep their true layer indices.
    """
    import torch

    decoder = model.get_decoder()
    full = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(full)[start:])
    try:
        yield
    finally:
        decoder.layers = full


# ------------------------------------------------------------------------------- frozen models
def load_frozen_copy(engine: Any) -> Any:
    """A private copy of the engine's model, loaded from its folder, with every weight frozen.

    Trainers never touch ``engine.model``: it may already carry peft adapter layers and serves
    generations concurrently. Loading the converted folder again costs a fraction of a second.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from memos.engines.convert import quiet_progress

    with quiet_progress():
        model = AutoModelForCausalLM.from_pretrained(engine.model_path, local_files_only=True,
                                                     dtype=torch.float32)
    model.eval()  # no dropout: training is deterministic for a seed
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG (used by module initialisers) without disturbing the caller's."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------------------------ decoding
def cache_kwarg(model: Any) -> str:
    import inspect

    # transformers 5 renamed the forward's `past_key_values` argument to `cache` (as in the engine).
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def greedy_decode(model: Any, ids: Sequence[int], max_tokens: int, stop_ids: set[int], *,
                  then_embeds: torch.Tensor | None = None) -> list[int]:
    """Greedy tokens after ``ids`` (and after ``then_embeds [n, dim]``, input vectors fed after the
    ids, e.g. a TokMem memory token). Stops after a stop token (included) or ``max_tokens``."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    kw = {cache_kwarg(model): cache, "use_cache": True, "logits_to_keep": 1}
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([list(ids)], dtype=torch.long), **kw).logits
        if then_embeds is not None:
            logits = model(inputs_embeds=then_embeds[None].to(model.dtype), **kw).logits
        out: list[int] = []
        while len(out) < max_tokens:
            token = int(torch.argmax(logits[0, -1]))
            out.append(token)
            if token in stop_ids:
                break
            logits = model(input_ids=torch.tensor([[token]], dtype=torch.long), **kw).logits
    return out
