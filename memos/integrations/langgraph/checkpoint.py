"""MemosCheckpointSaver: LangGraph checkpoints as versions of memos memories."""

from memos.integrations.langgraph._common import *
from memos.integrations.langgraph._common import _CubeCache


# ====================================================================================== checkpoints
def _b64(typed: tuple[str, bytes]) -> list[str]:
    return [typed[0], base64.b64encode(typed[1]).decode("ascii")]


def _unb64(pair: Sequence[str]) -> tuple[str, bytes]:
    return pair[0], base64.b64decode(pair[1])


class MemosCheckpointSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer storing each ``(thread_id, checkpoint_ns)`` as one versioned memory.

    Checkpoint ``n`` of a thread is version ``n`` of its memory (``cube.history(id)`` lists them); pending
    writes are separate memories tagged ``thread_id``/``checkpoint_ns``/``checkpoint_id``/``task_id``/``idx``.
    ``delete_thread`` archives the thread's memories (their history stays; a reused thread id starts anew).
    """

    def __init__(self, mos: Any, *, cube: str = "lg-checkpoints", owner: str | None = None,
                 serde: Any = None) -> None:
        super().__init__(serde=serde or JsonPlusSerializer(pickle_fallback=False))
        self.mos = mos
        self.cube_name = cube
        self.owner = owner
        self._lock = threading.RLock()
        self._cube_handle: Any = None
        self._cache = _CubeCache()
        self._history: dict[str, list[Memory]] = {}

    # ------------------------------------------------------------------------------- plumbing
    @property
    def cube(self) -> Any:
        """The cube holding checkpoints (created on first use)."""
        if self._cube_handle is None:
            try:
                self._cube_handle = self.mos.cube(self.cube_name)
            except CubeNotFound:
                try:
                    self._cube_handle = self.mos.create_cube(
                        self.cube_name, owner=self.owner, description="LangGraph checkpoints (memos.integrations)")
                except CubeExists:
                    self._cube_handle = self.mos.cube(self.cube_name)
        return self._cube_handle

    def _refresh(self) -> None:
        head = self._cache.head
        self._cache.refresh(self.cube)
        if self._cache.head != head:
            self._history = {k: v for k, v in self._history.items()
                             if k in self._cache.memories and self._cache.memories[k].version == v[-1].version}

    def _live_memories(self, kind: str) -> Iterator[Memory]:
        for m in self._cache.memories.values():
            if m.metadata.get("lg_kind") == kind and m.state in (State.activated, State.generated):
                yield m

    def thread_memory(self, thread_id: str, checkpoint_ns: str = "") -> Memory | None:
        """The live memory whose versions are this thread's checkpoints (None if none yet)."""
        with self._lock:
            self._refresh()
            return self._thread_memory(thread_id, checkpoint_ns)

    def _thread_memory(self, thread_id: str, checkpoint_ns: str) -> Memory | None:
        for m in self._live_memories("checkpoint"):
            if m.metadata.get("thread_id") == thread_id and m.metadata.get("checkpoint_ns") == checkpoint_ns:
                return m
        return None

    def _versions(self, m: Memory) -> list[Memory]:
        cached = self._history.get(m.id)
        if cached is None or cached[-1].version != m.version:
            cached = [v for v in self.cube.history(m.id) if v.metadata.get("lg_kind") == "checkpoint"]
            self._history[m.id] = cached
        return cached

    def _writes_for(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> list[Memory]:
        out = [m for m in self._live_memories("writes")
               if m.metadata.get("thread_id") == thread_id and m.metadata.get("checkpoint_ns") == checkpoint_ns
               and m.metadata.get("checkpoint_id") == checkpoint_id]
        out.sort(key=lambda m: writes_sort_key(m.metadata.get("task_path", ""), m.metadata["task_id"],
                                               m.metadata["idx"]))
        return out

    def _tuple(self, v: Memory) -> CheckpointTuple:
        body = json.loads(v.text)
        md = v.metadata
        thread_id, ns, cid = md["thread_id"], md["checkpoint_ns"], md["checkpoint_id"]
        writes = self._writes_for(thread_id, ns, cid)
        pending = []
        for w in writes:
            wb = json.loads(w.text)
            pending.append((w.metadata["task_id"], wb["channel"], self.serde.loads_typed(_unb64(wb["value"]))))
        parent = body.get("parent_checkpoint_id")
        return CheckpointTuple(
            config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}},
            checkpoint=self.serde.loads_typed(_unb64(body["checkpoint"])),
            metadata=self.serde.loads_typed(_unb64(body["metadata"])),
            parent_config=({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                             "checkpoint_id": parent}} if parent else None),
            pending_writes=pending,
        )

    # ---------------------------------------------------------------------------------- API
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        with self._lock:
            self._refresh()
            m = self._thread_memory(thread_id, ns)
            if m is None:
                return None
            cid = get_checkpoint_id(config)
            if not cid:
                return self._tuple(m)
            for v in reversed(self._versions(m)):
                if v.metadata.get("checkpoint_id") == cid:
                    return self._tuple(v)
            return None

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        with self._lock:
            self._refresh()
            conf = (config or {}).get("configurable", {})
            thread_id = conf.get("thread_id")
            ns = conf.get("checkpoint_ns")
            cid = get_checkpoint_id(config) if config else None
            before_id = get_checkpoint_id(before) if before else None
            threads = [m for m in self._live_memories("checkpoint")
                       if (thread_id is None or m.metadata.get("thread_id") == str(thread_id))
                       and (ns is None or m.metadata.get("checkpoint_ns") == ns)]
            threads.sort(key=lambda m: (m.metadata.get("thread_id", ""), m.metadata.get("checkpoint_ns", "")))
            out: list[CheckpointTuple] = []
            for m in threads:
                versions = sorted(self._versions(m), key=lambda v: v.metadata["checkpoint_id"], reverse=True)
                for v in versions:
                    vid = v.metadata["checkpoint_id"]
                    if cid and vid != cid:
                        continue
                    if before_id and vid >= before_id:
                        continue
                    if limit is not None and len(out) >= limit:
                        break
                    tup = self._tuple(v)
                    if filter and not all(tup.metadata.get(k) == val for k, val in filter.items()):
                        continue
                    out.append(tup)
        yield from out

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        body = {
            "thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": conf.get("checkpoint_id"),
            "checkpoint": _b64(self.serde.dumps_typed(checkpoint)),
            "metadata": _b64(self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))),
        }
        md = {"lg_kind": "checkpoint", "thread_id": thread_id, "checkpoint_ns": ns,
              "checkpoint_id": checkpoint["id"], "parent_checkpoint_id": conf.get("checkpoint_id"),
              "step": metadata.get("step") if isinstance(metadata, dict) else None}
        text = json.dumps(body)
        with self._lock:
            self._refresh()
            m = self._thread_memory(thread_id, ns)
            if m is None:
                new = self.cube.add(text, metadata=md)
                self._history[new.id] = [new]
            else:
                versions = self._versions(m)
                new = self.cube.update(m.id, text, metadata=md)
                self._history[new.id] = [*versions, new]
            self._cache.wrote([new])
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        cid = conf["checkpoint_id"]
        with self._lock:
            self._refresh()
            existing = {(m.metadata["task_id"], m.metadata["idx"]): m for m in self._writes_for(thread_id, ns, cid)}
            adds: list[dict[str, Any]] = []
            for i, (channel, value) in enumerate(writes):
                idx = WRITES_IDX_MAP.get(channel, i)
                old = existing.get((task_id, idx))
                if old is not None and idx >= 0:
                    continue
                text = json.dumps({"channel": channel, "value": _b64(self.serde.dumps_typed(value))})
                md = {"lg_kind": "writes", "thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid,
                      "task_id": task_id, "idx": idx, "task_path": task_path, "channel": channel}
                if old is not None:
                    self._cache.wrote([self.cube.update(old.id, text, metadata=md)])
                else:
                    adds.append({"text": text, "metadata": md})
            if adds:
                self._cache.wrote(self.cube.add_many(adds))

    def delete_thread(self, thread_id: str) -> None:
        with self._lock:
            self._refresh()
            ids = [m.id for m in self._cache.memories.values()
                   if m.metadata.get("thread_id") == str(thread_id) and m.metadata.get("lg_kind")
                   and m.state in (State.activated, State.generated)]
            if ids:
                self._cache.wrote(self.cube.archive(ids))
                for i in ids:
                    self._history.pop(i, None)

    # ------------------------------------------------------------------------------- async
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in items:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)
