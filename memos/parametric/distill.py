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
_SENTENCE_START = frozenset("the a an my our your his her their its this that these those in on at "
                            "for from to of by with when where after before".split())
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
    needed: with right padding and a causal model, real tokens never see the padding."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def make_batch(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    import torch

    width = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    for row, (p, a) in enumerate(pairs):
        seq = p + a
        ids[row, : len(seq)] = torch.tensor(seq)
        # labels[t] is the token to predict at position t, i.e. seq[t + 1], for answer tokens only.
        labels[row, len(p) - 1 : len(seq) - 1] = torch.tensor(a)
    return Batch(ids, labels)


def batches(encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, steps: int, seed: int,
            pad_id: int) -> Iterator[Batch]:
    """``steps`` batches drawn by epochs in a seeded order: every example once per epoch."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            epoch = list(range(len(encoded)))
            rng.shuffle(epoch)
            order.extend(epoch)
        take, order = order[:batch_size], order[batch_size:]
        yield make_batch([encoded[i] for i in take], pad_id)


def answer_loss(model: Any, batch: Batch, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over answer tokens. The vocabulary projection is applied to answer
    positions only: on a 49k vocabulary it is a fifth of the forward pass."""
    import torch.nn.functional as F

    decoder = model.get_decoder()
    if inputs_embeds is None:
        hidden = decoder(input_ids=batch.input_ids, use_cache=False).last_hidden_state
    else:
        hidden = decoder(inputs_embeds=inputs_embeds, use_cache=False).last_hidden_state
    keep = batch.labels != IGNORE
    logits = model.get_output_embeddings()(hidden[keep])
    return F.cross_entropy(logits.float(), batch.labels[keep])


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
