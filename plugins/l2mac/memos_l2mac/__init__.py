"""L2MAC for memos (Holt et al. 2024): an LLM automatic computer for long code generation.

``L2MAC(chat, cube).run("task")``; the control unit is a LangGraph graph (``build_graph(checkpointer)``)
that can be embedded and resumed. Files are versioned memories of the cube (:mod:`.files`).
"""

from memos_l2mac.config import L2MACConfig
from memos_l2mac.control import L2MAC, TOOLS, RunState, estimate_tokens, parse_instructions, replay
from memos_l2mac.files import CubeFiles
from memos_l2mac.sandbox import RunResult, check, run_in_sandbox, run_tests

__all__ = ["L2MAC", "TOOLS", "CubeFiles", "L2MACConfig", "RunResult", "RunState", "check", "estimate_tokens",
           "parse_instructions", "replay", "run_in_sandbox", "run_tests"]
