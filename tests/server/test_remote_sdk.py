"""The SDK contract (tests/sdk/test_sdk_contract.py) through the REST server, plus remote-only behaviour.

One real uvicorn server per module, on a free loopback port, serving an embedded home. The contract
tests run unchanged: the ``mos`` fixture below is a :class:`memos.client.RemoteMemOS` whose
``as_principal(p)`` connects with an API key for ``p`` (a remote handle's principal is its key's).
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

from memos.client import RemoteCube, RemoteMemOS
from memos.errors import AccessDenied, BackendError, CubeNotFound, InvalidInput, MemoryNotFound
from tests.sdk import test_sdk_contract as contract
from tests.server.harness import live_server

# The contract's fixture and tests, collected here with this module's ``mos`` (the REST mode).
cube = contract.cube
test_versions_search_time_travel = contract.test_versions_search_time_travel
test_typed_errors = contract.test_typed_errors
test_async_twin = contract.test_async_twin


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, server-side MemOS): an insecure-local server, so a keyless handle is the local admin."""
    from memos import MemOS
    from memos.server import create_app

    mos = MemOS.open(tmp_path_factory.mktemp("rest") / "home")
    with live_server(create_app(mos, insecure_local=True)) as url:
        yield url, mos
    mos.close()


class KeyedRemote(RemoteMemOS):
    """Test harness: ``as_principal(p)`` = a remote handle holding an API key minted for ``p``."""

    def __init__(self, url: str, server_mos, api_key: str | None = None) -> None:
        super().__init__(url, api_key=api_key)
        self._server_mos = server_mos

    def as_principal(self, principal):
        from memos.server.auth import create_key

        return KeyedRemote(self.url, self._server_mos, create_key(self._server_mos, principal))


@pytest.fixture
def mos(server):
    url, server_mos = server
    handle = KeyedRemote(url, server_mos)
    yield handle
    handle.close()


@pytest.fixture
def key_for(server):
    from memos.server.auth import create_key

    return lambda principal: create_key(server[1], principal)


# ------------------------------------------------------------------------------ remote-only checks
def test_same_public_api_as_the_sdk():
    from memos.sdk import Cube, MemOS

    def public(cls):
        return {n for n, _ in inspect.getmembers(cls) if not n.startswith("_")}

    # open/connect build handles; checkpoint/home and the background task queue (tasks, submit,
    # register_task_handlers) belong to the server's own kernel and are not exposed over REST.
    assert public(MemOS) - public(RemoteMemOS) <= {"open", "connect", "checkpoint", "home", "tasks", "submit",
                                                   "register_task_handlers", "asubmit"}
    assert public(Cube) - public(RemoteCube) == set()
    for name in public(Cube) & public(RemoteCube):
        sdk, remote = getattr(Cube, name), getattr(RemoteCube, name)
        if callable(sdk) and not name.startswith("a"):
            assert list(inspect.signature(sdk).parameters) == list(inspect.signature(remote).parameters), name


def test_models_errors_and_context(mos, cube):
    from memos.models import Hit, LogEntry, MemCube, Memory

    m = cube.add("Alice keeps bees", metadata={"hive": 2}, tags=["hobby"], event_time="2024-04-01")
    assert isinstance(m, Memory) and m.metadata == {"hive": 2} and m.event_time.year == 2024
    assert isinstance(cube.info(), MemCube) and cube.head == 1
    hits = cube.search("bees", top_k=3)
    assert isinstance(hits[0], Hit) and hits[0].memory == cube.get(m.id)
    assert isinstance(cube.log()[0], LogEntry)
    assert [c.name for c in mos.list_cubes()] == [cube.name]
    with pytest.raises(MemoryNotFound) as info:
        cube.get("ghost")
    assert (info.value.cube, info.value.memory_id, info.value.status_code) == (cube.name, "ghost", 404)
    with pytest.raises(CubeNotFound):
        mos.cube("ghost-cube")
    with pytest.raises(InvalidInput):
        cube.at(1).add("views are read-only")
    with pytest.raises(InvalidInput):
        cube.search("bees", top_k=0)
    deleted = cube.delete(m.id, purge=True)
    assert deleted.id == m.id
    with pytest.raises(MemoryNotFound):
        cube.get(m.id)


def test_history_reads_every_page(mos, cube, monkeypatch):
    import memos.client

    monkeypatch.setattr(memos.client, "_PAGE", 2)
    m = cube.add("v1")
    for i in range(2, 6):
        cube.update(m.id, f"v{i}")
    assert [v.text for v in cube.history(m.id)] == ["v1", "v2", "v3", "v4", "v5"]
    assert [v.version for v in cube.at(3).history(m.id)] == [1, 2, 3]
    assert [x.text for x in cube.list(offset=0, limit=10)] == ["v5"]


def test_keys_and_principals(server, key_for, cube):
    url, _ = server
    with RemoteMemOS(url, api_key=key_for("mallory")) as mallory:
        assert mallory.principal == "mallory"
        with pytest.raises(AccessDenied):
            mallory.cube(cube.name)
        with pytest.raises(InvalidInput):
            mallory.as_principal("alice")
    with RemoteMemOS(url, api_key="mk_0000000000000000_" + "x" * 43) as bad, \
            pytest.raises(Exception) as info:
        bad.list_cubes()
    assert type(info.value).__name__ == "Unauthenticated" and info.value.status_code == 401


def test_connect_returns_a_remote_handle(server):
    from memos import MemOS

    handle = MemOS.connect(server[0])
    try:
        assert isinstance(handle, RemoteMemOS) and handle.status()["mode"] == "embedded"
    finally:
        handle.close()


def test_async_twins_of_the_handle(mos, cube):
    async def run():
        made = await cube.aadd("async add")
        cubes = await mos.alist_cubes()
        return made, cubes, await cube.aget(made.id)

    made, cubes, got = asyncio.run(run())
    assert got == made and cube.name in [c.name for c in cubes]


def test_unreachable_server_is_a_backend_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RemoteMemOS(f"http://127.0.0.1:{port}", retries=1) as handle, pytest.raises(BackendError):
        handle.list_cubes()


def test_retried_write_is_applied_once(server, cube):
    """A write whose response is lost is re-sent with the same Idempotency-Key and applied once."""
    import httpx

    url, _ = server
    real = httpx.HTTPTransport()
    state = {"dropped": 0}

    class DropFirstResponse(httpx.BaseTransport):
        def handle_request(self, request):
            response = real.handle_request(request)
            if request.method == "POST" and not state["dropped"]:
                state["dropped"] += 1
                response.read()
                raise httpx.RemoteProtocolError("connection reset after the write", request=request)
            return response

    head = cube.head
    with RemoteMemOS(url, transport=DropFirstResponse()) as flaky:
        m = flaky.cube(cube.name).add("exactly once")
    assert state["dropped"] == 1 and cube.head == head + 1 and cube.get(m.id).text == "exactly once"


def test_reading_and_consolidation_over_rest(mos):
    cube = mos.create_cube("talks")
    report = cube.add_messages([{"speaker": "Alice", "text": "I moved to Porto last month."},
                                {"speaker": "Bob", "text": "Nice, I started the guitar."}],
                               session=1, event_time="2025-01-02")
    assert len(report.turns) == 2 and report.failures == []  # no llm: the turns are the memories
    assert {m.id for m in cube.list()} == set(report.turns)
    stale = cube.add("old news", expires_at="2020-01-01")
    done = cube.consolidate()
    assert stale.id in done.expired and cube.get(stale.id).state.value == "expired"
    with pytest.raises(InvalidInput):
        cube.add_messages([{"speaker": "A", "text": "x"}], reconcile="merge-everything")
    with pytest.raises(InvalidInput):
        cube.train_adapter([stale.id], format="dense")  # refused by the schema before any model loads
