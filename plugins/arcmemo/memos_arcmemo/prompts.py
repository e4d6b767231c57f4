"""The prompts of ArcMemo's steps, and the parsers of what models answer to them.

Paraphrased from the method as the paper describes it (not copied from its code): the write side turns
a solution into pseudocode, then abstracts the pseudocode with the current memory in view so that
existing concepts are reused and revised; the read side either lets the model pick concepts from the
whole list, or writes a description of the problem to search the memory with.
"""

from __future__ import annotations

import re
from typing import Any

from memos.llm import loads_tolerant

PSEUDOCODE = """You turn the worked solution of a puzzle into short, high-level pseudocode.
Keep the steps that carry the idea: what is looked for in the input, which choices the solution makes
(these become parameters), and what is produced. Leave out variable names, library calls and bookkeeping.
Answer with the pseudocode only."""

ABSTRACT_PS = """You maintain a library of reusable concepts for solving puzzles by writing programs.
From the pseudocode of a solved puzzle, write the concepts it uses as a JSON list of objects:
  {"name": short snake_case name,
   "kind": "structure" (a kind of object or pattern found in inputs) or "routine" (an operation),
   "description": one sentence, general (no puzzle-specific colours or sizes unless they are parameters),
   "parameters": [{"name", "type", "description"}] (routines; a parameter may itself be a routine),
   "output": what a routine returns,
   "cues": [what in a new puzzle suggests this concept],
   "notes": [how to implement it]}
Reuse the library: when a concept below already covers an idea, write it with exactly its name and only
what is new (more cues, parameters or notes); never add a near-duplicate under another name.
Answer with the JSON list only."""

ABSTRACT_OE = """You keep a list of lessons for solving puzzles, each a situation and a suggestion.
From the solution of a solved puzzle, write the lessons it teaches as a JSON list of objects
{"situation": when the lesson applies, in general words, "suggestion": what to do then}.
When a lesson below already covers a situation, repeat its situation word for word and give only the new
suggestion. Answer with the JSON list only."""

SELECT = """You pick, from a library of concepts, the ones that help solve a new puzzle.
Look at what changes between the example inputs and outputs, go through the concepts and their cues,
and check which ones would explain the examples. Answer with a JSON list of at most {k} concept names
(exactly as written in the library), most useful first; [] if none applies."""

DESCRIBE = """Describe the puzzle below in two or three sentences: which objects or patterns the inputs
contain and how each output is made from its input. General words; no code."""

SOLVE = """You solve puzzles given by input/output examples by writing a Python program.
Write {signature}. It must turn every example input into its output, and will then be run on the test
inputs. The standard library and numpy (as np) are available; there is no file or network access.
Answer with the complete program in one ```python block."""

RETRY = """Your program does not reproduce the examples:
{failures}
Find the mistake, then answer with the complete corrected program in one ```python block."""

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def fenced(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block (an unclosed last block counts)."""
    return [(lang.lower(), body) for lang, body in _FENCE.findall(text or "")]


def parse_list(text: str) -> list[Any] | None:
    """The JSON list a model answered (fenced or bare; an object holding one list is unwrapped); a single
    object becomes a one-item list; ``None`` when nothing parses."""
    candidates = [body for lang, body in fenced(text) if lang in ("", "json")] + [text or ""]
    for chunk in candidates:
        start, end = chunk.find("["), chunk.rfind("]")
        found = loads_tolerant(chunk[start:end + 1]) if 0 <= start < end else None
        if found is None:
            start, end = chunk.find("{"), chunk.rfind("}")
            found = loads_tolerant(chunk[start:end + 1]) if 0 <= start < end else None
        if isinstance(found, dict):
            lists = [v for v in found.values() if isinstance(v, list)]
            found = lists[0] if len(lists) == 1 else [found]
        if isinstance(found, list):
            return found
    return None


def extract_code(text: str, entry: str) -> str | None:
    """The program in a reply: the last fenced block defining ``entry``, else the reply itself if it does."""
    pattern = re.compile(rf"^\s*def\s+{re.escape(entry)}\s*\(", re.MULTILINE)
    blocks = [body for _, body in fenced(text) if pattern.search(body)]
    if blocks:
        return blocks[-1].strip() + "\n"
    if pattern.search(text or ""):
        return text.strip() + "\n"
    return None


def strip_fences(text: str) -> str:
    """A reply without its code fences (pseudocode, descriptions)."""
    blocks = fenced(text)
    return "\n".join(body.strip() for _, body in blocks) if blocks else (text or "").strip()
