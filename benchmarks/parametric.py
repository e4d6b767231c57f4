"""Distilling nonce facts into a LoRA adapter: recall, side effects, swap latency (DESIGN §8).

    python benchmarks/parametric.py --facts 20 --json
    -> {"facts", "recalled", "swap_ms", "train_s_per_memory", "adapter_bytes", "unrelated_unchanged", ...}

N nonce facts ("Feltre's pet is a purple llama named Wimorl.") that no model can know are added to a
cube as plaintext memories and distilled into one adapter with ``cube.train_adapter(format="lora")``,
which commits a ``parametric`` memory; the adapter is then resolved from the blob store into a peft
folder and used by the local engine.

* ``recalled``: fraction of facts whose key word appears in the greedy chat answer to the fact's
  question ("What is Feltre's pet?", a question form the trainer builds) with the adapter loaded.
  ``heldout_recalled``: the same for a paraphrase no template produces ("What pet does Feltre have?").
  ``base_recalled``: the same questions without the adapter (should be 0: the facts are nonce).
* ``unrelated_unchanged``: fraction of 20 unrelated prompts whose greedy answer (``--max-tokens``
  tokens) is identical, token for token, with the adapter loaded and without it (a strict measure:
  one flipped token anywhere counts as changed). ``unrelated_same_prefix_tokens``: mean number of
  leading tokens that agree; ``unrelated_leaks``: fraction of unrelated answers that mention a
  nonce key (the failure anchors prevent: "The capital of France is Tavmby.").
* ``swap_ms``: median extra time to first token when consecutive requests alternate between two
  loaded adapters, compared with repeating the same adapter (the cost of switching, not of running
  an adapter); ``ttft_ms_adapter`` is the median TTFT with an adapter.
* ``train_s_per_memory``: training seconds (examples, cached lower layers, steps) divided by N.
* ``adapter_bytes``: size of the stored blob.

On a shared CPU, wall-clock figures depend on the load; ``--threads 1`` is often faster under contention.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time

SYLLABLES = ["zor", "blax", "qui", "mby", "tre", "vok", "lum", "pax", "dra", "nix", "fel", "gor", "wim",
             "zul", "kra", "bix", "mol", "tav", "yun", "sep", "orl", "quen", "vash", "ith"]
# (statement, question asked for recall, held-out paraphrase)
RELATIONS = [
    ("{x}'s pet is a purple llama named {y}.", "What is {x}'s pet?", "What pet does {x} have?"),
    ("{x}'s hometown is {y}.", "What is {x}'s hometown?", "Where is {x} from?"),
    ("{x}'s secret password is {y}.", "What is {x}'s secret password?", "Which password does {x} use?"),
    ("{x}'s best friend is {y}.", "What is {x}'s best friend?", "Who is {x}'s closest friend?"),
    ("{x}'s favourite drink is {y} tea.", "What is {x}'s favourite drink?", "What does {x} like to drink?"),
]
UNRELATED = [
    "What is the capital of France?", "Name three primary colors.", "How many legs does a spider have?",
    "What is 12 times 12?", "Who wrote Romeo and Juliet?", "What is the boiling point of water?",
    "Give me a synonym for happy.", "What is photosynthesis?", "Translate 'hello' into Spanish.",
    "What is the largest planet in the solar system?", "Write a haiku about autumn.",
    "What does a thermometer measure?", "How many days are in a leap year?", "What is an adjective?",
    "Name a famous painting by Leonardo da Vinci.", "What gas do humans exhale?",
    "What is the opposite of cold?", "How do bees make honey?", "What is the square root of 81?",
    "Suggest a name for a pet goldfish.",
]


def nonce_facts(n: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    used: set[str] = set()

    def name() -> str:
        while True:
            word = "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()
            if word not in used:
                used.add(word)
                return word

    facts = []
    for i in range(n):
        x, y = name(), name()
        text, question, heldout = RELATIONS[i % len(RELATIONS)]
        facts.append({"text": text.format(x=x, y=y), "question": question.format(x=x),
                      "heldout": heldout.format(x=x), "key": y})
    return facts


def _hit(engine, question: str, key: str, adapters, max_tokens: int) -> bool:  # type: ignore[no-untyped-def]
    out = engine.generate(question, adapters=adapters, chat=True, max_tokens=max_tokens)
    return key.lower() in out.text.lower()


def _swap_ms(engine, a: str, b: str, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(median of paired [alternating - same-adapter] TTFT differences, median same-adapter TTFT)."""
    prompt = "Hello"
    for folder in (a, b):  # load both adapters first: swapping, not loading, is measured
        engine.generate(prompt, adapters=[folder], chat=True, max_tokens=1)
    diffs, same = [], []
    for _ in range(repeats):
        engine.generate(prompt, adapters=[a], chat=True, max_tokens=1)
        kept = engine.generate(prompt, adapters=[a], chat=True, max_tokens=1).ttft_ms  # no switch
        switched = engine.generate(prompt, adapters=[b], chat=True, max_tokens=1).ttft_ms  # a -> b
        diffs.append(switched - kept)
        same.append(kept)
    return statistics.median(diffs), statistics.median(same)


def run(n: int, steps: int, max_tokens: int, repeats: int) -> dict:
    from memos import MemOS

    facts = nonce_facts(n)
    with tempfile.TemporaryDirectory(prefix="memos-param-") as home, MemOS.open(home) as mos:
        engine = mos.engine("local")
        cube = mos.create_cube("bench")
        mems = cube.add_many([f["text"] for f in facts])
        service = mos._parametric()
        started = time.perf_counter()
        ad = cube.train_adapter([m.id for m in mems], format="lora", steps=steps)
        train_s = time.perf_counter() - started
        folder = str(service.resolve("bench", ad, engine))
        recalled = sum(_hit(engine, f["question"], f["key"], [folder], max_tokens) for f in facts)
        heldout = sum(_hit(engine, f["heldout"], f["key"], [folder], max_tokens) for f in facts)
        base = sum(_hit(engine, f["question"], f["key"], None, max_tokens) for f in facts)
        unchanged = leaks = same_prefix = 0
        keys = [f["key"].lower() for f in facts]
        for prompt in UNRELATED:
            base_ids = engine.generate(prompt, chat=True, max_tokens=max_tokens).token_ids
            out = engine.generate(prompt, adapters=[folder], chat=True, max_tokens=max_tokens)
            unchanged += out.token_ids == base_ids
            leaks += any(k in out.text.lower() for k in keys)
            same_prefix += next((i for i, (x, y) in enumerate(zip(base_ids, out.token_ids)) if x != y),
                                min(len(base_ids), len(out.token_ids)))
        other = cube.train_adapter([mems[0].id], format="lora", steps=2)
        swap, ttft = _swap_ms(engine, folder, str(service.resolve("bench", other, engine)), repeats)
        return {
            "facts": n,
            "recalled": round(recalled / n, 4),
            "swap_ms": round(swap, 3),
            "train_s_per_memory": round(train_s / n, 3),
            "adapter_bytes": ad.payload.bytes,
            "unrelated_unchanged": round(unchanged / len(UNRELATED), 4),
            "unrelated_leaks": round(leaks / len(UNRELATED), 4),
            "unrelated_same_prefix_tokens": round(same_prefix / len(UNRELATED), 2),
            "heldout_recalled": round(heldout / n, 4),
            "base_recalled": round(base / n, 4),
            "ttft_ms_adapter": round(ttft, 3),
            "train_s": round(train_s, 2),
            "steps": ad.payload.model_extra["training"]["steps"],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--facts", type=int, default=20, help="number of nonce facts (N)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the trainer's)")
    parser.add_argument("--max-tokens", type=int, default=24, help="greedy tokens per answer")
    parser.add_argument("--repeats", type=int, default=20, help="swap measurements")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = run(args.facts, args.steps, args.max_tokens, args.repeats)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
