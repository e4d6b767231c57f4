"""Settings of one L2MAC run (pydantic v2; every default works offline on CPU)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class L2MACConfig(BaseModel):
    max_instructions: int = Field(8, ge=1)
    """Most instructions kept from the prompt program the LLM writes."""
    max_llm_calls: int = Field(40, ge=1)
    """Most LLM calls inside steps for the whole run (the plan and summaries not counted)."""
    max_turns_per_step: int = Field(12, ge=1)
    """Most LLM calls for one instruction (across restarts) before the run stops."""
    context_budget_tokens: int = Field(6000, ge=64)
    """Token budget of a step's context (estimated, see :func:`memos_l2mac.control.estimate_tokens`);
    over it the control unit summarises the step and restarts it."""
    max_restarts: int = Field(2, ge=0)
    """Most summarise-and-restart cycles of one step."""
    time_limit_s: float = Field(20.0, gt=0)
    """Wall-clock limit of each sandboxed python / pytest run."""
    max_tokens: int = Field(768, ge=16)
    """Most tokens the LLM may write per reply."""
    check_after_write: bool = True
    """Run the checker (py_compile + pytest) after every write and feed its result back."""
    output_chars: int = Field(3000, ge=200)
    """Tool and checker output longer than this is cut (keeping its end) before it reaches the LLM."""
