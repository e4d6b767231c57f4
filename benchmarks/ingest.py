"""Memory reading on LoCoMo conversations: facts per turn, duplicate rate, ingest time per turn.

    python benchmarks/ingest.py --llm scripted --json
    python benchmarks/ingest.py --llm local --turns 24 --json
    -> {"llm", "policy", "conversations", "turns", "facts", "facts_per_turn", "duplicate_rate",
        "residual_duplicate_rate", "ingest_ms_per_turn", "turns_only_ms_per_turn", "llm_ms_per_call", ...}

Each LoCoMo session goes through ``cube.add_messages`` (the data is read in place from
``../shared/data/locomo/``). ``--llm none`` stores turns only (the path ``memos eval locomo`` uses);
``--llm scripted`` replaces the model by a deterministic sentence splitter (each sentence of four or more
words becomes a fact, first person rewritten to the speaker), so the figures measure the pipeline
(storage, embedding, neighbour search, deduplication, reconciliation), not a model's extraction quality;
``--llm local`` runs SmolLM2-135M on the CPU (slow: keep ``--turns`` small).

* ``facts_per_turn``: live facts after ingest / turns;
* ``duplicate_rate``: extracted facts merged as near-duplicates (within a window or into an existing
  fact) / extracted facts;
* ``residual_duplicate_rate``: live facts that still duplicate an earlier live fact (same detector, all
  pairs), i.e. what deduplication at ingest missed (with ``--no-dedup``: the duplicates there are);
* ``ingest_ms_per_turn``: wall time of ``add_messages`` per turn, everything included;
  ``turns_only_ms_per_turn``: the same turns without an LLM; ``llm_ms_per_call``: mean model call.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo_dev.json"
_TURN = re.compile(r"^\[(\d+)\] ([^:]+): (.*)$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def first_person(speaker: str, sentence: str) -> str:
    s = re.sub(r"\bI'm\b", f"{speaker} is", sentence)
    s = re.sub(r"\bI've\b", f"{speaker} has", s)
    s = re.sub(r"\b(I|me)\b", speaker, s)
    return re.sub(r"\b(my|My)\b", f"{speaker}'s", s)


def scripted_reply(messages: list[dict[str, str]]) -> str:
    """A deterministic stand-in for the model: extraction by sentence splitting, decisions always ADD."""
    if "EXISTING:" in messages[-1]["content"]:
        return '{"op": "ADD"}'
    if "summary" in messages[0]["content"]:
        return json.dumps({"summary": " ".join(line[2:] for line in messages[-1]["content"].splitlines())})
    facts = []
    for line in messages[-1]["content"].splitlines():
        m = _TURN.match(line)
        if not m:
            continue
        n, speaker, text = int(m.group(1)), m.group(2), re.sub(r"\[shares [^\]]*\]", "", m.group(3))
        for sentence in _SENTENCE.split(text):
            sentence = sentence.strip()
            if len(sentence.split()) >= 4 and not sentence.endswith("?"):
                facts.append({"text": first_person(speaker, sentence), "turns": [n]})
    return json.dumps({"facts": facts})


class EndlessScript:
    """The scripted model for any number of calls, timed like the others."""

    name = "scripted"

    def chat(self, messages: Any, **kwargs: Any) -> Any:
        from memos.llm import ScriptedChat

        return ScriptedChat([scripted_reply]).chat(messages, **kwargs)


class Timed:
    """Wraps a chat backend and adds up the time spent in it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.calls, self.seconds = inner, inner.name, 0, 0.0

    def chat(self, messages: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner.chat(messages, **kwargs)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - t0


def sessions(conv: Any, max_turns: int | None) -> list[tuple[int, Any, list[dict[str, Any]]]]:
    turns = conv.turns[:max_turns] if max_turns else conv.turns
    out: list[tuple[int, Any, list[dict[str, Any]]]] = []
    for t in turns:
        text = t.text[len(t.speaker) + 2:] if t.text.startswith(f"{t.speaker}: ") else t.text
        msg = {"speaker": t.speaker, "text": text, "dia_id": t.dia_id}
        if out and out[-1][0] == t.session:
            out[-1][2].append(msg)
        else:
            out.append((t.session, t.when, [msg]))
    return out


def run(data: str, conversations: list[int], llm_kind: str, policy: str, max_turns: int | None, window: int,
        models_dir: str | None, dedup: bool = True) -> dict[str, Any]:
    from memos import MemOS
    from memos.eval.locomo import load_locomo
    from memos.llm import LocalChat
    from memos.reading import duplicate_rate

    convs = load_locomo(data)
    totals = {"turns": 0, "extracted": 0, "merged": 0, "failures": 0, "repaired": 0, "ingest_s": 0.0,
              "turns_only_s": 0.0, "facts": 0, "residual": 0}
    llm: Timed | None = None
    with tempfile.TemporaryDirectory(prefix="memos-ingest-") as home, \
            MemOS.open(home, **({"models_dir": models_dir} if models_dir else {})) as mos:
        if llm_kind == "scripted":
            llm = Timed(EndlessScript())
        elif llm_kind == "local":
            llm = Timed(LocalChat(mos.engine("local")))
        warm = mos.create_cube("warm-up")
        warm.add_messages(["warm-up turn"])  # loads the embedder outside the timings
        warm.search("warm-up", top_k=1)
        for ci in conversations:
            conv = convs[ci]
            plan = sessions(conv, max_turns)
            base = mos.create_cube(f"turns-{ci}")
            t0 = time.perf_counter()
            for session, when, msgs in plan:
                base.add_messages(msgs, session=session, event_time=when)
            totals["turns_only_s"] += time.perf_counter() - t0
            if llm is None:
                totals["turns"] += sum(len(m) for _, _, m in plan)
                continue
            cube = mos.create_cube(f"read-{ci}", policy={"reconcile": policy})
            for session, when, msgs in plan:
                t0 = time.perf_counter()
                r = cube.add_messages(msgs, session=session, event_time=when, llm=llm, window=window, dedup=dedup)
                totals["ingest_s"] += time.perf_counter() - t0
                totals["turns"] += len(msgs)
                totals["extracted"] += r.extracted
                totals["merged"] += r.merged_in_batch + len(r.duplicates)
                totals["failures"] += len(r.failures)
                totals["repaired"] += r.repaired
            dup = duplicate_rate(mos._kernel, cube.name)
            totals["facts"] += dup["facts"]
            totals["residual"] += dup["duplicates"]
    n = max(totals["turns"], 1)
    out: dict[str, Any] = {
        "llm": llm_kind, "policy": policy if llm else None, "window": window, "dedup": dedup,
        "conversations": [convs[c].sample_id for c in conversations], "turns": totals["turns"],
        "turns_only_ms_per_turn": round(1000 * totals["turns_only_s"] / n, 3),
    }
    if llm is not None:
        out.update({
            "facts": totals["facts"], "extracted": totals["extracted"],
            "facts_per_turn": round(totals["facts"] / n, 4),
            "duplicate_rate": round(totals["merged"] / max(totals["extracted"], 1), 4),
            "residual_duplicate_rate": round(totals["residual"] / max(totals["facts"], 1), 4),
            "ingest_ms_per_turn": round(1000 * totals["ingest_s"] / n, 3),
            "llm_calls": llm.calls, "llm_ms_per_call": round(1000 * llm.seconds / max(llm.calls, 1), 3),
            "pipeline_ms_per_turn": round(1000 * (totals["ingest_s"] - llm.seconds) / n, 3),
            "failures": totals["failures"], "repaired": totals["repaired"],
        })
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="LoCoMo JSON (read in place).")
    ap.add_argument("--conversations", default="0", help="Comma-separated conversation indices.")
    ap.add_argument("--llm", choices=["none", "scripted", "local"], default="scripted")
    ap.add_argument("--policy", default="accumulate", help="accumulate | update | invalidate")
    ap.add_argument("--turns", type=int, default=None, help="At most this many turns per conversation "
                                                             "(default: all; 24 with --llm local).")
    ap.add_argument("--window", type=int, default=6, help="Turns per extraction call.")
    ap.add_argument("--no-dedup", action="store_true", help="Keep near-duplicates (the residual rate then "
                                                            "measures how many the facts hold).")
    ap.add_argument("--models-dir", default=None, help="Where the local model is converted/cached.")
    ap.add_argument("--json", action="store_true", help="Print one JSON object (the default output anyway).")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.llm == "local":
        import torch

        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    turns = args.turns if args.turns is not None else (24 if args.llm == "local" else None)
    convs = [int(c) for c in args.conversations.split(",") if c.strip()]
    result = run(args.data, convs, args.llm, args.policy, turns, args.window, args.models_dir, not args.no_dedup)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
