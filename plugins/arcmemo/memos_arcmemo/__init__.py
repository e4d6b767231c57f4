"""ArcMemo for memos (Ho et al. 2025, "ArcMemo: Abstract Reasoning Composition with Lifelong LLM Memory").

Concept-level memory distilled from solution traces: open-ended lessons (situation -> suggestion) or
program-synthesis concepts (typed structures and routines with parameters, cues and implementation
notes), each a versioned plaintext memory of a MemCube. ``ArcMemo(chat, cube, domain=ArcDomain())``
solves problems by writing a Python ``transform`` that runs in a sandbox, and learns from what it solves.
"""

from memos_arcmemo.agent import ArcMemo
from memos_arcmemo.arc import ArcDomain, iter_tasks, load_file, load_task
from memos_arcmemo.concepts import Concept, Lesson, Parameter
from memos_arcmemo.domain import Domain, Example, JsonDomain, Problem, render_problem
from memos_arcmemo.memory import ConceptMemory, StoredEntry, WriteOutcome
from memos_arcmemo.read import Selection, select
from memos_arcmemo.sandbox import CallResult, ProgramRun, run_program
from memos_arcmemo.solver import Attempt, SolveConfig, Solver, SolveResult
from memos_arcmemo.write import MemoryWriter, WriteResult

__all__ = ["ArcDomain", "ArcMemo", "Attempt", "CallResult", "Concept", "ConceptMemory", "Domain", "Example",
           "JsonDomain", "Lesson", "MemoryWriter", "Parameter", "Problem", "ProgramRun", "Selection",
           "SolveConfig", "SolveResult", "Solver", "StoredEntry", "WriteOutcome", "WriteResult", "iter_tasks",
           "load_file", "load_task", "render_problem", "run_program", "select"]
