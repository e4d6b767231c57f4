"""LangGraph integration: MemosStore (BaseStore) and MemosCheckpointSaver (checkpoints = memory versions)."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from memos import MemOS
from memos.integrations.langgraph import MemosCheckpointSaver, MemosStore, cube_name_for


@pytest.fixture
def mos(tmp_path):
    m = MemOS.open(tmp_path / "home")
    yield m
    m.close()


# ------------------------------------------------------------------------------------------- store
def test_cube_names_are_sanitised():
    assert cube_name_for("lg", "Users") == "lg-users"
    assert cube_name_for("lg", "a b/c!") == "lg-a-b-c"
    assert len(cube_name_for("lg", "x" * 200)) <= 64


def test_store_put_get_update_delete(mos):
    store = MemosStore(mos)
    ns = ("users", "u1", "prefs")
    store.put(ns, "food", {"text": "I like pizza", "n": 1})
    item = store.get(ns, "food")
    assert item.value == {"text": "I like pizza", "n": 1}
    assert item.namespace == ns and item.key == "food"
    created = item.created_at
    assert store.get(ns, "nope") is None and store.get(("nobody",), "food") is None

    store.put(ns, "food", {"text": "I like sushi", "n": 2})
    item = store.get(ns, "food")
    assert item.value["text"] == "I like sushi"
    assert item.created_at == created and item.updated_at >= created

    cube = mos.cube("lg-users")
    mem = next(m for m in cube.list() if m.metadata["lg_key"] == "food")
    assert mem.metadata["lg_ns"] == "users/u1/prefs"
    assert [v.version for v in cube.history(mem.id)] == [1, 2]  # an update is a new version

    store.delete(ns, "food")
    assert store.get(ns, "food") is None
    assert cube.history(mem.id)[-1].state.value == "archived"  # delete archives, history stays
    store.put(ns, "food", {"text": "back again"})
    assert store.get(ns, "food").value == {"text": "back again"}


def test_store_search_and_namespaces(mos):
    store = MemosStore(mos)
    store.put(("users", "u1", "facts"), "a", {"text": "Alice likes grilled sardines", "n": 1})
    store.put(("users", "u1", "facts"), "b", {"text": "Alice has a border collie called Pixel", "n": 2})
    store.put(("users", "u2", "facts"), "c", {"text": "Bob plays the cello", "n": 3})
    store.put(("docs",), "d", {"content": "release notes for version two"})

    hits = store.search(("users",), query="what pet does alice have?", limit=2)
    assert hits[0].key == "b" and hits[0].score is not None
    # the namespace prefix filters the retrieval
    assert {h.key for h in store.search(("users", "u2"), query="alice dog")} == {"c"}
    assert [h.key for h in store.search(("docs",), query="release")] == ["d"]
    # without a query: prefix + value filter (with operators), offset/limit
    assert {h.key for h in store.search(("users",))} == {"a", "b", "c"}
    assert [h.key for h in store.search(("users",), filter={"n": {"$gte": 2}})] == ["b", "c"]
    assert [h.key for h in store.search(("users",), filter={"n": 1})] == ["a"]
    assert len(store.search(("users",), limit=1, offset=1)) == 1
    assert {h.key for h in store.search(())} == {"a", "b", "c", "d"}

    assert store.list_namespaces() == [("docs",), ("users", "u1", "facts"), ("users", "u2", "facts")]
    assert store.list_namespaces(prefix=("users",), max_depth=2) == [("users", "u1"), ("users", "u2")]
    assert store.list_namespaces(suffix=("facts",)) == [("users", "u1", "facts"), ("users", "u2", "facts")]
    assert store.list_namespaces(prefix=("users", "*", "facts"), limit=1) == [("users", "u1", "facts")]


def test_store_ttl_expires(mos):
    store = MemosStore(mos)
    assert store.supports_ttl
    store.put(("tmp",), "k", {"x": 1}, ttl=1)
    mem = mos.cube("lg-tmp").list()[0]
    assert mem.expires_at is not None and mem.metadata["lg_ttl"] == 1.0
    store.put(("tmp",), "gone", {"x": 2}, ttl=1e-6)  # expires at once
    assert store.get(("tmp",), "gone") is None
    assert store.get(("tmp",), "k").value == {"x": 1}


def test_store_async(mos):
    store = MemosStore(mos)

    async def go():
        await store.aput(("a",), "k", {"text": "hello async"})
        item = await store.aget(("a",), "k")
        hits = await store.asearch(("a",), query="hello")
        return item, hits

    item, hits = asyncio.run(go())
    assert item.value == {"text": "hello async"} and hits[0].key == "k"


def test_store_inside_a_graph_across_threads(mos):
    """A node remembers into the injected store on one thread and recalls it on another."""

    class S(TypedDict):
        user: str
        msg: str
        reply: str

    def node(state: S, *, store: BaseStore) -> dict:
        ns = ("memories", state["user"])
        msg = state["msg"]
        if msg.startswith("remember "):
            fact = msg.removeprefix("remember ")
            store.put(ns, str(len(store.search(ns, limit=100))), {"text": fact})
            return {"reply": "ok"}
        hits = store.search(ns, query=msg, limit=1)
        return {"reply": hits[0].value["text"] if hits else "I don't know"}

    g = StateGraph(S)
    g.add_node("agent", node)
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    store = MemosStore(mos)
    graph = g.compile(store=store, checkpointer=MemosCheckpointSaver(mos))
    graph.invoke({"user": "ann", "msg": "remember my cat is called Miso", "reply": ""},
                 {"configurable": {"thread_id": "t1"}})
    graph.invoke({"user": "ann", "msg": "remember I work as a pilot", "reply": ""},
                 {"configurable": {"thread_id": "t1"}})
    out = graph.invoke({"user": "ann", "msg": "what is my cat called?", "reply": ""},
                       {"configurable": {"thread_id": "t2"}})
    assert out["reply"] == "my cat is called Miso"
    out = graph.invoke({"user": "ben", "msg": "what is my cat called?", "reply": ""},
                       {"configurable": {"thread_id": "t3"}})
    assert out["reply"] == "I don't know"
    assert store.list_namespaces(prefix=("memories",)) == [("memories", "ann")]


# ------------------------------------------------------------------------------------- checkpoints
class Count(TypedDict):
    log: Annotated[list[str], operator.add]
    n: int


def _counter_graph(saver):
    def step(state: Count) -> dict:
        return {"log": [f"step{state['n']}"], "n": state["n"] + 1}

    g = StateGraph(Count)
    g.add_node("step", step)
    g.add_edge(START, "step")
    g.add_edge("step", END)
    return g.compile(checkpointer=saver)


def test_checkpointer_resumes_history_and_time_travel(mos):
    saver = MemosCheckpointSaver(mos)
    graph = _counter_graph(saver)
    cfg = {"configurable": {"thread_id": "th-1"}}
    graph.invoke({"log": ["start"], "n": 0}, cfg)
    out = graph.invoke({"log": ["again"]}, cfg)  # resumes: sees the first run's state
    assert out["log"] == ["start", "step0", "again", "step1"] and out["n"] == 2
    assert graph.get_state(cfg).values["n"] == 2

    history = list(graph.get_state_history(cfg))
    ids = [s.config["configurable"]["checkpoint_id"] for s in history]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 4  # newest first
    assert history[0].values["n"] == 2
    assert [s.metadata["step"] for s in history] == sorted((s.metadata["step"] for s in history), reverse=True)
    assert len(list(graph.get_state_history(cfg, limit=2))) == 2
    assert next(iter(saver.list(cfg, before=history[1].config))).config == history[2].config
    assert all(t.metadata["source"] == "input" for t in saver.list(cfg, filter={"source": "input"}))

    # checkpoints are versions of one memory
    mem = saver.thread_memory("th-1")
    versions = saver.cube.history(mem.id)
    assert [v.metadata["checkpoint_id"] for v in versions] == list(reversed(ids))
    assert [v.version for v in versions] == list(range(1, len(ids) + 1))

    # time travel: replay from the checkpoint after the first run
    first_done = next(s for s in history if s.values.get("n") == 1 and not s.next)
    old = graph.get_state(first_done.config)
    assert old.values["log"] == ["start", "step0"]
    forked = graph.invoke({"log": ["fork"]}, first_done.config)
    assert forked["log"] == ["start", "step0", "fork", "step1"] and forked["n"] == 2
    assert graph.get_state(cfg).values["log"] == forked["log"]  # the fork is now the thread's head
    assert len(saver.cube.history(mem.id)) > len(ids)

    # another thread is independent; delete_thread forgets one thread only
    other = {"configurable": {"thread_id": "th-2"}}
    graph.invoke({"log": [], "n": 10}, other)
    saver.delete_thread("th-1")
    assert saver.get_tuple(cfg) is None and list(saver.list(cfg)) == []
    assert graph.get_state(other).values["n"] == 11
    assert graph.invoke({"log": ["new"], "n": 0}, cfg)["log"] == ["new", "step0"]


def test_checkpointer_pending_writes_and_interrupt(mos):
    from langgraph.types import Command, interrupt

    class S(TypedDict):
        answer: str

    def ask(state: S) -> dict:
        return {"answer": interrupt("name?")}

    g = StateGraph(S)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    saver = MemosCheckpointSaver(mos)
    graph = g.compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "hitl"}}
    graph.invoke({"answer": ""}, cfg)
    state = graph.get_state(cfg)
    assert state.next == ("ask",) and state.tasks[0].interrupts[0].value == "name?"
    tup = saver.get_tuple(cfg)
    assert tup.pending_writes  # the interrupt is a pending write, stored as its own memory
    writes = [m for m in saver.cube.list() if m.metadata.get("lg_kind") == "writes"]
    assert writes and {"thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"} <= set(writes[0].metadata)
    assert graph.invoke(Command(resume="Zoe"), cfg)["answer"] == "Zoe"


def test_checkpointer_serde_has_no_pickle(mos):
    saver = MemosCheckpointSaver(mos)
    assert getattr(saver.serde, "pickle_fallback", False) is False


def test_checkpointer_async(mos):
    saver = MemosCheckpointSaver(mos)
    graph = _counter_graph(saver)
    cfg = {"configurable": {"thread_id": "async"}}

    async def go():
        await graph.ainvoke({"log": [], "n": 0}, cfg)
        out = await graph.ainvoke({"log": []}, cfg)
        states = [s async for s in graph.aget_state_history(cfg)]
        tup = await saver.aget_tuple(cfg)
        await saver.adelete_thread("async")
        return out, states, tup, await saver.aget_tuple(cfg)

    out, states, tup, gone = asyncio.run(go())
    assert out["n"] == 2 and states[0].values["n"] == 2 and tup.checkpoint["id"] and gone is None
