"""A LangGraph agent whose long-term memory is a memos store and whose threads are memos checkpoints.

No LLM: a deterministic node pulls "my name is X" / "I like Y" out of each message into the store and
answers "what do you know about me" from it, so what is said on one thread is known on another.

    python examples/langgraph_agent.py       # uses $MEMOS_HOME, or a temporary home
"""

from __future__ import annotations

import operator
import os
import re
import tempfile
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

import memos
from memos.integrations.langgraph import MemosCheckpointSaver, MemosStore


class Chat(TypedDict):
    user: str
    messages: Annotated[list[str], operator.add]


NAME = re.compile(r"\bmy name is (\w+)", re.IGNORECASE)
LIKE = re.compile(r"\bi like ([^.,!?]+)", re.IGNORECASE)


def agent(state: Chat, *, store: BaseStore) -> dict:
    ns = ("users", state["user"], "facts")
    msg = state["messages"][-1]
    if "what do you know about me" in msg.lower():
        facts = [item.value["text"] for item in store.search(ns, limit=20)]
        return {"messages": ["bot: " + ("; ".join(sorted(facts)) if facts else "nothing yet")]}
    learned = []
    if m := NAME.search(msg):
        store.put(ns, "name", {"text": f"your name is {m.group(1)}"})  # a new name is a new version
        learned.append("name")
    for like in LIKE.findall(msg):
        key = "likes-" + re.sub(r"\W+", "-", like.strip().lower())
        store.put(ns, key, {"text": f"you like {like.strip()}"})
        learned.append(key)
    return {"messages": [f"bot: noted {', '.join(learned)}" if learned else "bot: ok"]}


def build(mos: memos.MemOS):  # type: ignore[no-untyped-def]
    g = StateGraph(Chat)
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    store, saver = MemosStore(mos), MemosCheckpointSaver(mos)
    return g.compile(store=store, checkpointer=saver), store, saver


def main(home: str) -> None:
    with memos.MemOS.open(home) as mos:
        graph, store, saver = build(mos)

        def say(thread: str, text: str) -> str:
            out = graph.invoke({"user": "alice", "messages": [f"alice: {text}"]},
                               {"configurable": {"thread_id": thread}})
            reply = out["messages"][-1]
            print(f"[{thread}] alice: {text}\n[{thread}] {reply}")
            return reply

        say("monday", "Hi, my name is Alice and I like hiking.")
        say("monday", "I like grilled sardines!")
        say("tuesday", "What do you know about me?")  # another thread: long-term memory via the store

        ns = ("users", "alice", "facts")
        print("remembered:", sorted(item.value["text"] for item in store.search(ns)))
        print("search 'food':", store.search(ns, query="favourite food", limit=1)[0].value["text"])

        monday = {"configurable": {"thread_id": "monday"}}
        print("monday thread messages:", len(graph.get_state(monday).values["messages"]))
        mem = saver.thread_memory("monday")
        print(f"monday checkpoints = versions of memory {mem.id}: {len(saver.cube.history(mem.id))}")
        first = list(graph.get_state_history(monday))[-1]
        print("oldest checkpoint step:", first.metadata["step"])


if __name__ == "__main__":
    home = os.environ.get("MEMOS_HOME")
    if home:
        main(home)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
