"""MemosStore: a LangGraph BaseStore over a MemOS handle."""

from memos.integrations.langgraph._common import *
from memos.integrations.langgraph._common import _MAX_TOP_K, _CubeCache, _live, _ns_key, _prefix_keys, _utcnow


# ============================================================================================ store
def _compare_values(item_value: Any, filter_value: Any) -> bool:
    """JSONB-like comparison, as LangGraph's InMemoryStore does (``$eq $ne $gt $gte $lt $lte``)."""
    if isinstance(filter_value, dict):
        if any(k.startswith("$") for k in filter_value):
            return all(_apply_operator(item_value, k, v) for k, v in filter_value.items())
        if not isinstance(item_value, dict):
            return False
        return all(_compare_values(item_value.get(k), v) for k, v in filter_value.items())
    if isinstance(filter_value, (list, tuple)):
        return (isinstance(item_value, (list, tuple)) and len(item_value) == len(filter_value)
                and all(_compare_values(a, b) for a, b in zip(item_value, filter_value)))
    return item_value == filter_value


def _apply_operator(value: Any, operator: str, op_value: Any) -> bool:
    if operator == "$eq":
        return value == op_value
    if operator == "$ne":
        return value != op_value
    if value is None:
        return False
    if operator == "$gt":
        return float(value) > float(op_value)
    if operator == "$gte":
        return float(value) >= float(op_value)
    if operator == "$lt":
        return float(value) < float(op_value)
    if operator == "$lte":
        return float(value) <= float(op_value)
    raise ValueError(f"Unsupported operator: {operator}")


def _does_match(cond: MatchCondition, ns: tuple[str, ...]) -> bool:
    path = tuple(cond.path)
    if len(ns) < len(path):
        return False
    pairs = zip(ns, path) if cond.match_type == "prefix" else zip(reversed(ns), reversed(path))
    if cond.match_type not in ("prefix", "suffix"):
        raise ValueError(f"Unsupported match type: {cond.match_type}")
    return all(p == "*" or k == p for k, p in pairs)


class MemosStore(BaseStore):
    """A LangGraph ``BaseStore`` over a :class:`memos.MemOS` handle (embedded, REST or cluster SDK).

    ``cube_prefix``: cubes are named ``f"{cube_prefix}-{namespace[0]}"``. ``index_fields``: the value fields
    indexed for search when a put does not say (default: ``text`` or ``content``, else the whole JSON).
    ``owner``: owner of the cubes this store creates (default: the handle's principal).
    """

    supports_ttl = True

    def __init__(self, mos: Any, *, cube_prefix: str = "lg", index_fields: Sequence[str] | None = None,
                 owner: str | None = None, ttl_config: dict[str, Any] | None = None) -> None:
        self.mos = mos
        self.cube_prefix = cube_prefix
        self.index_fields = list(index_fields) if index_fields else None
        self.owner = owner
        self.ttl_config = ttl_config  # type: ignore[assignment]
        self._caches: dict[str, _CubeCache] = {}
        self._cubes: dict[str, Any] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------- plumbing
    def _cube(self, name: str, create: bool = False) -> Any | None:
        cube = self._cubes.get(name)
        if cube is not None:
            return cube
        try:
            cube = self.mos.cube(name)
        except CubeNotFound:
            if not create:
                return None
            try:
                cube = self.mos.create_cube(name, owner=self.owner,
                                            description="LangGraph store namespace (memos.integrations)")
            except CubeExists:  # created concurrently
                cube = self.mos.cube(name)
        self._cubes[name] = cube
        return cube

    def _store_cubes(self) -> list[str]:
        start = f"{cube_name_for(self.cube_prefix, 'x')[:-1]}"
        return sorted(c.name for c in self.mos.list_cubes() if c.name.startswith(start))

    def _cache(self, name: str) -> _CubeCache | None:
        cube = self._cube(name)
        if cube is None:
            return None
        cache = self._caches.setdefault(name, _CubeCache())
        cache.refresh(cube)
        return cache

    def _find(self, cache: _CubeCache, namespace: tuple[str, ...], key: str) -> Memory | None:
        ns = _ns_key(namespace)
        for m in cache.memories.values():
            md = m.metadata
            if md.get("lg_key") == key and md.get("lg_ns_json") == ns:
                return m
        return None

    @staticmethod
    def _item(m: Memory, cls: type = Item, score: float | None = None) -> Any:
        md = m.metadata
        kw: dict[str, Any] = {"value": json.loads(m.text), "key": md["lg_key"],
                              "namespace": tuple(json.loads(md["lg_ns_json"])),
                              "created_at": m.created_at, "updated_at": m.updated_at}
        if cls is SearchItem:
            kw["score"] = score
        return cls(**kw)

    def _index_text(self, value: dict[str, Any], index: Any) -> str:
        if index is False:
            return ""
        fields = list(index) if isinstance(index, (list, tuple)) else self.index_fields
        if fields is None:
            for f in ("text", "content"):
                if isinstance(value.get(f), str) and value[f].strip():
                    return value[f]
            return ""  # the JSON body itself is what gets embedded
        texts: list[str] = []
        for f in fields:
            texts.extend(t for t in get_text_at_path(value, tokenize_path(f)) if t)
        return "\n".join(texts)

    # ---------------------------------------------------------------------------------- batch
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        with self._lock:
            for op in ops:
                validate_op_namespace(op)
                if isinstance(op, GetOp):
                    results.append(self._get(op))
                elif isinstance(op, SearchOp):
                    results.append(self._search(op))
                elif isinstance(op, ListNamespacesOp):
                    results.append(self._list_namespaces(op))
                elif isinstance(op, PutOp):
                    self._put(op)
                    results.append(None)
                else:
                    raise TypeError(f"Unknown operation type: {type(op)}")
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))

    # --------------------------------------------------------------------------------- ops
    def _refresh_ttl(self, name: str, m: Memory) -> Memory:
        ttl = m.metadata.get("lg_ttl")
        if not ttl or m.expires_at is None:
            return m
        now = _utcnow()
        new_exp = now + timedelta(minutes=float(ttl))
        if (new_exp - m.expires_at).total_seconds() < max(1.0, float(ttl) * 0.6):  # refreshed a moment ago
            return m
        cube = self._cube(name)
        out = cube.update(m.id, expires_at=new_exp)
        self._caches[name].wrote([out])
        return out

    def _get(self, op: GetOp) -> Item | None:
        if not op.namespace:
            return None
        name = cube_name_for(self.cube_prefix, op.namespace[0])
        cache = self._cache(name)
        if cache is None:
            return None
        m = self._find(cache, tuple(op.namespace), op.key)
        if m is None or not _live(m, _utcnow()):
            return None
        if op.refresh_ttl:
            m = self._refresh_ttl(name, m)
        return self._item(m)

    def _put(self, op: PutOp) -> None:
        namespace = tuple(op.namespace)
        if not namespace:
            raise ValueError("namespace cannot be empty")
        name = cube_name_for(self.cube_prefix, namespace[0])
        if op.value is None:
            cache = self._cache(name)
            m = self._find(cache, namespace, op.key) if cache is not None else None
            if m is not None and m.state not in (State.archived,):
                cache.wrote([self._cube(name).delete(m.id)])  # archived: history kept
            return
        cube = self._cube(name, create=True)
        cache = self._caches.setdefault(name, _CubeCache())
        cache.refresh(cube)
        value = dict(op.value)
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        context = self._index_text(value, op.index)
        ttl = getattr(op, "ttl", None)
        expires = _utcnow() + timedelta(minutes=float(ttl)) if ttl is not None else None
        old = self._find(cache, namespace, op.key)
        metadata = {"lg_ns": "/".join(namespace), "lg_ns_json": _ns_key(namespace), "lg_key": op.key,
                    "lg_prefixes": _prefix_keys(namespace), "lg_depth": len(namespace)}
        if ttl is not None:
            metadata["lg_ttl"] = float(ttl)
        if old is None:
            m = cube.add(text, metadata=metadata, expires_at=expires, context=context or None)
        else:
            m = cube.update(old.id, text, metadata=metadata, context=context, expires_at=expires)
        cache.wrote([m])

    def _candidates(self, prefix: tuple[str, ...]) -> list[str]:
        if prefix:
            return [cube_name_for(self.cube_prefix, prefix[0])]
        return self._store_cubes()

    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = tuple(op.namespace_prefix)
        now = _utcnow()
        want = max(op.offset, 0) + max(op.limit, 0)
        if want <= 0:
            return []

        def keep(m: Memory) -> bool:
            md = m.metadata
            if "lg_ns_json" not in md:
                return False
            ns = tuple(json.loads(md["lg_ns_json"]))
            if ns[:len(prefix)] != prefix:
                return False
            if op.filter:
                value = json.loads(m.text)
                return all(_compare_values(value.get(k), v) for k, v in op.filter.items())
            return True

        scored: list[tuple[float | None, Memory, str]] = []
        if op.query:
            filters = {"lg_prefixes": _ns_key(prefix)} if prefix else None
            top_k = min(_MAX_TOP_K, want * (4 if op.filter else 1) + (10 if op.filter else 0))
            for name in self._candidates(prefix):
                cube = self._cube(name)
                if cube is None:
                    continue
                for hit in cube.search(op.query, top_k=top_k, filters=filters):
                    if keep(hit.memory):
                        scored.append((hit.score, hit.memory, name))
            scored.sort(key=lambda t: -(t[0] or 0.0))
        else:
            for name in self._candidates(prefix):
                cache = self._cache(name)
                if cache is None:
                    continue
                ms = [m for m in cache.memories.values() if _live(m, now) and keep(m)]
                ms.sort(key=lambda m: (m.metadata.get("lg_ns_json", ""), m.metadata.get("lg_key", "")))
                scored.extend((None, m, name) for m in ms)
        page = scored[op.offset:op.offset + op.limit]
        out = []
        for score, m, name in page:
            if op.refresh_ttl:
                self._cache(name)
                m = self._refresh_ttl(name, m)
            out.append(self._item(m, SearchItem, score))
        return out

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conds = list(op.match_conditions or ())
        first = [c.path[0] for c in conds if c.match_type == "prefix" and c.path and c.path[0] != "*"]
        names = [cube_name_for(self.cube_prefix, first[0])] if first else self._store_cubes()
        now = _utcnow()
        found: set[tuple[str, ...]] = set()
        for name in names:
            cache = self._cache(name)
            if cache is None:
                continue
            for m in cache.memories.values():
                if "lg_ns_json" in m.metadata and _live(m, now):
                    found.add(tuple(json.loads(m.metadata["lg_ns_json"])))
        nss = [ns for ns in found if all(_does_match(c, ns) for c in conds)]
        if op.max_depth is not None:
            nss = list({ns[:op.max_depth] for ns in nss})
        nss.sort()
        return nss[op.offset:op.offset + op.limit]


