"""The frozen answerer of the Mem-alpha reward (Wang et al. 2025, r_1): a fixed LLM that answers
each question from the built memory only. As in the authors' release it sees the whole core paragraph
and, of each list, the ``top_k`` items BM25 ranks highest for the question (20 there). It is never
trained: with the local engine it is ``LocalChat(engine)``, whose model the GRPO policy does not touch.
"""

from __future__ import annotations

from memos.llm import ChatBackend
from memos_mem_alpha.memory import LISTS, MemAlphaMemory
from memos_mem_alpha.policy import strip_thinking

ANSWER_PROMPT = """You answer questions from a structured memory. Use only what the memory says.

Core memory (always shown):
{core}

{lists}

Answer the user's question briefly: just the answer, no explanation."""


class MemoryAnswerer:
    def __init__(self, chat: ChatBackend, *, top_k: int = 20, max_tokens: int = 48,
                 query_prompt: str | None = None) -> None:
        """
        Args:
            chat: the frozen answering model.
            top_k: items shown from each list, by BM25 rank for the question.
            max_tokens: longest answer.
            query_prompt: an instruction put before each question (the authors use one per dataset).
        """
        self.chat = chat
        self.top_k = top_k
        self.max_tokens = max_tokens
        self.query_prompt = query_prompt

    def context(self, memory: MemAlphaMemory, question: str) -> str:
        blocks = []
        for t in LISTS:
            hits = memory.search(t, question, top_k=self.top_k)
            body = "\n".join(f"{n}. {item.content}" for n, (item, _) in enumerate(hits, 1)) or "(nothing relevant)"
            blocks.append(f"{t.capitalize()} memory (most relevant items):\n{body}")
        return ANSWER_PROMPT.format(core=memory.core or "(empty)", lists="\n\n".join(blocks))

    def answer(self, memory: MemAlphaMemory, question: str) -> str:
        prompt = f"{self.query_prompt}\n\n{question}" if self.query_prompt else question
        reply = self.chat.chat([{"role": "system", "content": self.context(memory, question)},
                                {"role": "user", "content": prompt}], temperature=0.0, max_tokens=self.max_tokens)
        return strip_thinking(reply.content).strip()


__all__ = ["ANSWER_PROMPT", "MemoryAnswerer"]
